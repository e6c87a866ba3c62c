package worker

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/braidq/braid/engine"
)

// JobArgs are a job's arguments: a struct encoded as JSON whose Kind names the worker that runs
// it. It has the shape of router.JobArgs, so the same args type serves producer and worker.
type JobArgs interface {
	Kind() string
}

// JobRow is one claimed attempt of a job, as its worker sees it.
type JobRow struct {
	ID          int64
	Shard       int   // the shard that holds the job
	RunLease    int64 // the attempt: grows by one at every claim of the job, never resets
	Queue       string
	Kind        string
	Attempt     int // 1-based number of this attempt
	MaxAttempts int
	Priority    int
	Lane        int
	UniqueKey   string
	EncodedArgs json.RawMessage
	Metadata    json.RawMessage
	Errors      []AttemptError // errors of earlier attempts, oldest first
	CreatedAt   time.Time
	ScheduledAt time.Time // when the job became due
	DeadlineAt  time.Time // the claim's deadline: maintenance rescues the attempt after it
}

// AttemptError is one earlier attempt's error, as the engine keeps it in the job's history.
type AttemptError struct {
	At      time.Time `json:"at"`
	Attempt int       `json:"attempt"`
	Error   string    `json:"error"`
	Trace   string    `json:"trace,omitempty"`
}

// Job is a claimed attempt with its decoded args.
type Job[T JobArgs] struct {
	*JobRow
	Args T
}

// newJobRow builds the row a worker sees from what the engine claimed.
func newJobRow(c engine.Claimed) (*JobRow, error) {
	row := &JobRow{
		ID:          c.Receipt.JobID,
		Shard:       c.Receipt.ShardID,
		RunLease:    c.Receipt.RunLease,
		Queue:       c.Queue,
		Kind:        c.Kind,
		Attempt:     c.Attempt,
		MaxAttempts: c.MaxAttempts,
		Priority:    c.Priority,
		Lane:        c.LaneNo,
		UniqueKey:   c.UniqueKey,
		EncodedArgs: c.Args,
		Metadata:    c.Metadata,
		CreatedAt:   c.CreatedAt,
		ScheduledAt: c.RunAt,
		DeadlineAt:  c.DeadlineAt,
	}
	if len(c.Errors) > 0 {
		if err := json.Unmarshal(c.Errors, &row.Errors); err != nil {
			return row, fmt.Errorf("job %d: decode error history: %w", row.ID, err)
		}
	}
	return row, nil
}
