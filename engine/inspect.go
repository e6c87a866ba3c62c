package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Counts are the exact numbers of one queue's jobs per state on this shard.
type Counts struct {
	Available    int64
	Running      int64
	Scheduled    int64
	Retryable    int64
	Completed    int64
	Failed       int64
	Cancelled    int64
	DeadLettered int64
}

// Add returns the sum of c and o, state by state (counts of one queue over several shards).
func (c Counts) Add(o Counts) Counts {
	return Counts{
		Available:    c.Available + o.Available,
		Running:      c.Running + o.Running,
		Scheduled:    c.Scheduled + o.Scheduled,
		Retryable:    c.Retryable + o.Retryable,
		Completed:    c.Completed + o.Completed,
		Failed:       c.Failed + o.Failed,
		Cancelled:    c.Cancelled + o.Cancelled,
		DeadLettered: c.DeadLettered + o.DeadLettered,
	}
}

// Counts returns the queue's exact counts. Terminal counts are folded per-bucket counters plus
// the retained evidence not yet folded, so they stay exact across prunes.
func (e *Engine) Counts(ctx context.Context, queue string) (Counts, error) {
	if err := ValidateQueue(queue); err != nil {
		return Counts{}, err
	}
	var c Counts
	err := e.pool.QueryRow(ctx, e.sql.counts, queue).Scan(&c.Available, &c.Running, &c.Scheduled, &c.Retryable,
		&c.Completed, &c.Failed, &c.Cancelled, &c.DeadLettered)
	if err != nil {
		return Counts{}, fmt.Errorf("shard %d: counts %q: %w", e.id.ShardID, queue, err)
	}
	return c, nil
}

// JobState names where a job is in its life.
type JobState string

const (
	StateAvailable    JobState = "available"
	StateRunning      JobState = "running"
	StateScheduled    JobState = "scheduled"
	StateRetryable    JobState = "retryable"
	StateCompleted    JobState = "completed"
	StateFailed       JobState = "failed"
	StateCancelled    JobState = "cancelled"
	StateDeadLettered JobState = "dead_lettered"
)

// JobInfo is what JobGet knows about a job.
type JobInfo struct {
	ID          int64
	State       JobState
	Queue       string
	Priority    int
	LaneNo      int
	Kind        string
	Args        json.RawMessage
	Metadata    json.RawMessage
	Errors      json.RawMessage
	Attempt     int // attempts used (the running one included)
	MaxAttempts int
	RunLease    int64
	UniqueKey   string
	RunAt       time.Time
	CreatedAt   time.Time
	FinishedAt  time.Time // zero unless the job ended
}

// JobGet returns the job's newest state. A job created on another shard, an unknown id, or a
// finished job whose evidence was pruned returns ErrNotFound.
func (e *Engine) JobGet(ctx context.Context, id int64) (JobInfo, error) {
	j := JobInfo{ID: id}
	var (
		state             string
		prio, laneNo      int16
		attempt, maxAtt   int32
		meta, errsJSON    []byte
		uniqueKey         *string
		runAt, finishedAt *time.Time
	)
	err := e.pool.QueryRow(ctx, e.sql.jobGet, id).Scan(&state, &j.Queue, &prio, &laneNo, &j.Kind, &j.Args, &meta,
		&errsJSON, &attempt, &maxAtt, &j.RunLease, &uniqueKey, &runAt, &j.CreatedAt, &finishedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return JobInfo{}, fmt.Errorf("shard %d: job %d: %w", e.id.ShardID, id, ErrNotFound)
	}
	if err != nil {
		return JobInfo{}, fmt.Errorf("shard %d: job %d: %w", e.id.ShardID, id, err)
	}
	j.State = JobState(state)
	j.Priority, j.LaneNo = int(prio), int(laneNo)
	j.Attempt, j.MaxAttempts = int(attempt), int(maxAtt)
	j.Metadata, j.Errors = meta, errsJSON
	if uniqueKey != nil {
		j.UniqueKey = *uniqueKey
	}
	if runAt != nil {
		j.RunAt = *runAt
	}
	if finishedAt != nil {
		j.FinishedAt = *finishedAt
	}
	return j, nil
}
