package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"time"
	"unicode/utf8"

	"github.com/cespare/xxhash/v2"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Job is one job to enqueue.
type Job struct {
	Queue       string          // [A-Za-z0-9_.:-], 1..128 characters
	Kind        string          // the worker kind, 1..255 characters
	Args        json.RawMessage // valid JSON, at most Config.MaxArgsBytes; nil means {}
	Metadata    json.RawMessage // optional JSON object
	Priority    int             // 1 (highest) .. 4; 0 means 1
	MaxAttempts int             // 0 means the queue's setting; otherwise >= 1
	RunAt       time.Time       // zero or past: available now; future: scheduled
	OrderingKey string          // jobs with the same key share a lane, so they run in order
	UniqueKey   string          // while a job with this key is live in the queue, another is refused
}

// EnqueueResult is the outcome of one job of an enqueue call.
type EnqueueResult struct {
	JobID     int64 // the new job, or the job that holds the unique key when Duplicate
	Duplicate bool  // refused: the unique key is held by JobID
	Scheduled bool  // RunAt is in the future: the job waits in the deferred table
}

var queueName = regexp.MustCompile(`^[A-Za-z0-9_.:-]{1,128}$`)

// ValidateQueue reports whether name is a valid queue name.
func ValidateQueue(name string) error {
	if !queueName.MatchString(name) {
		return &ValidationError{Field: "queue", Value: name, Problem: "must be 1..128 characters of [A-Za-z0-9_.:-]"}
	}
	return nil
}

const maxKeyLen = 512

// validate checks one job and returns every problem, each naming the field (prefix + name).
func (j *Job) validate(prefix string, maxBytes int) error {
	var errs []error
	bad := func(field string, value any, problem string) {
		errs = append(errs, &ValidationError{Field: prefix + field, Value: value, Problem: problem})
	}
	if err := ValidateQueue(j.Queue); err != nil {
		bad("queue", j.Queue, "must be 1..128 characters of [A-Za-z0-9_.:-]")
	}
	if j.Kind == "" || len(j.Kind) > 255 || !utf8.ValidString(j.Kind) {
		bad("kind", j.Kind, "must be 1..255 bytes of UTF-8")
	}
	if len(j.Args) > maxBytes {
		bad("args", fmt.Sprintf("%d bytes", len(j.Args)), fmt.Sprintf("must be at most %d bytes", maxBytes))
	} else if len(j.Args) > 0 && !json.Valid(j.Args) {
		bad("args", string(j.Args), "must be valid JSON")
	}
	if len(j.Metadata) > maxBytes {
		bad("metadata", fmt.Sprintf("%d bytes", len(j.Metadata)), fmt.Sprintf("must be at most %d bytes", maxBytes))
	} else if len(j.Metadata) > 0 && !isJSONObject(j.Metadata) {
		bad("metadata", string(j.Metadata), "must be a JSON object")
	}
	if j.Priority < 0 || j.Priority > 4 {
		bad("priority", j.Priority, "must be 1..4 (0 means 1)")
	}
	if j.MaxAttempts < 0 {
		bad("max_attempts", j.MaxAttempts, "must be >= 1 (0 means the queue's setting)")
	}
	if len(j.OrderingKey) > maxKeyLen {
		bad("ordering_key", j.OrderingKey, fmt.Sprintf("must be at most %d bytes", maxKeyLen))
	}
	if len(j.UniqueKey) > maxKeyLen || !utf8.ValidString(j.UniqueKey) {
		bad("unique_key", j.UniqueKey, fmt.Sprintf("must be at most %d bytes of UTF-8", maxKeyLen))
	}
	return errors.Join(errs...)
}

func isJSONObject(b []byte) bool {
	var m map[string]json.RawMessage
	return json.Unmarshal(b, &m) == nil
}

// laneSeed keeps ordering-key lane hashing independent of shard placement hashing.
const laneSeed = 0x62726169646c616e // "braidlan"

// LaneHash maps an ordering key to the non-negative hash the enqueue function reduces modulo
// the queue's lane count.
func LaneHash(orderingKey string) int64 {
	d := xxhash.NewWithSeed(laneSeed)
	_, _ = d.WriteString(orderingKey)
	return int64(d.Sum64() >> 1)
}

// Enqueue inserts one job. A unique-key conflict returns *UniqueConflictError carrying the
// job that holds the key; a sealed fence returns *RedirectError.
func (e *Engine) Enqueue(ctx context.Context, job Job) (EnqueueResult, error) {
	res, err := e.enqueue(ctx, e.pool, []Job{job}, "")
	if err != nil {
		return EnqueueResult{}, err
	}
	if res[0].Duplicate {
		return res[0], &UniqueConflictError{Queue: job.Queue, UniqueKey: job.UniqueKey, JobID: res[0].JobID}
	}
	return res[0], nil
}

// EnqueueMany inserts jobs (of one or several queues) in one transaction and one round trip.
// Invalid input refuses the whole call before any write, naming jobs[i].field. A job whose
// unique key is held is reported Duplicate; the others are inserted.
func (e *Engine) EnqueueMany(ctx context.Context, jobs []Job) ([]EnqueueResult, error) {
	return e.enqueue(ctx, e.pool, jobs, "jobs")
}

// EnqueueTx is EnqueueMany inside a transaction the caller holds on this shard's database:
// the jobs commit or roll back with the caller's own writes.
func (e *Engine) EnqueueTx(ctx context.Context, tx pgx.Tx, jobs []Job) ([]EnqueueResult, error) {
	return e.enqueue(ctx, tx, jobs, "jobs")
}

func (e *Engine) enqueue(ctx context.Context, db dbtx, jobs []Job, field string) ([]EnqueueResult, error) {
	if len(jobs) == 0 {
		return nil, nil
	}
	n := len(jobs)
	var (
		queues   = make([]string, n)
		prios    = make([]int16, n)
		hashes   = make([]*int64, n)
		kinds    = make([]string, n)
		args     = make([]string, n)
		meta     = make([]*string, n)
		attempts = make([]*int32, n)
		runAt    = make([]*time.Time, n)
		uniq     = make([]*string, n)
		errs     []error
	)
	for i := range jobs {
		j := &jobs[i]
		prefix := ""
		if field != "" {
			prefix = fmt.Sprintf("%s[%d].", field, i)
		}
		if err := j.validate(prefix, e.cfg.MaxArgsBytes); err != nil {
			errs = append(errs, err)
			continue
		}
		queues[i], kinds[i] = j.Queue, j.Kind
		prios[i] = int16(max(j.Priority, 1))
		args[i] = "{}"
		if len(j.Args) > 0 {
			args[i] = string(j.Args)
		}
		if len(j.Metadata) > 0 {
			meta[i] = ptr(string(j.Metadata))
		}
		if j.OrderingKey != "" {
			hashes[i] = ptr(LaneHash(j.OrderingKey))
		}
		if j.MaxAttempts > 0 {
			attempts[i] = ptr(int32(j.MaxAttempts))
		}
		if !j.RunAt.IsZero() {
			runAt[i] = ptr(j.RunAt)
		}
		if j.UniqueKey != "" {
			uniq[i] = ptr(j.UniqueKey)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	rows, err := db.Query(ctx, e.sql.enqueue, queues, prios, hashes, kinds, args, meta, attempts, runAt, uniq,
		int16(e.cfg.Lanes), !e.cfg.DisableDLQ, int32(e.cfg.MaxAttempts), e.cfg.Deadline, nil)
	if err != nil {
		return nil, e.enqueueError(err)
	}
	out := make([]EnqueueResult, n)
	var (
		ord      int32
		id       int64
		dup      *int64
		deferred bool
	)
	_, err = pgx.ForEachRow(rows, []any{&ord, &id, &dup, &deferred}, func() error {
		out[ord-1] = EnqueueResult{JobID: id, Duplicate: dup != nil, Scheduled: deferred}
		return nil
	})
	if err != nil {
		return nil, e.enqueueError(err)
	}
	return out, nil
}

// enqueueError turns the enqueue function's fence refusal into a *RedirectError.
func (e *Engine) enqueueError(err error) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "BR001" {
		var r struct {
			Queue   string `json:"queue"`
			Epoch   int64  `json:"epoch"`
			State   string `json:"state"`
			MovedTo *int   `json:"moved_to"`
		}
		if json.Unmarshal([]byte(pgErr.Detail), &r) == nil {
			re := &RedirectError{Queue: r.Queue, Epoch: r.Epoch, State: r.State}
			if r.MovedTo != nil {
				re.MovedTo = *r.MovedTo
			}
			return re
		}
	}
	return fmt.Errorf("shard %d: enqueue: %w", e.id.ShardID, err)
}

// QueueSettings are one queue's settings on this shard.
type QueueSettings struct {
	Lanes       int
	DLQ         bool
	MaxAttempts int
	Deadline    time.Duration
}

const queueConfigureSQL = `
INSERT INTO braid.queue (name, lanes, dlq, max_attempts, deadline) VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (name) DO UPDATE
SET lanes = excluded.lanes, dlq = excluded.dlq, max_attempts = excluded.max_attempts, deadline = excluded.deadline`

// ConfigureQueue sets a queue's settings. Fewer lanes than before only stops new jobs from
// using the dropped lanes; their backlog is still claimed.
func (e *Engine) ConfigureQueue(ctx context.Context, queue string, s QueueSettings) error {
	var errs []error
	errs = append(errs, ValidateQueue(queue))
	if s.Lanes < 1 || s.Lanes > 256 {
		errs = append(errs, &ValidationError{Field: "lanes", Value: s.Lanes, Problem: "must be 1..256"})
	}
	if s.MaxAttempts < 1 {
		errs = append(errs, &ValidationError{Field: "max_attempts", Value: s.MaxAttempts, Problem: "must be >= 1"})
	}
	if s.Deadline <= 0 {
		errs = append(errs, &ValidationError{Field: "deadline", Value: s.Deadline, Problem: "must be > 0"})
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if _, err := e.pool.Exec(ctx, e.sql.queueConfigure, queue, int16(s.Lanes), s.DLQ, int32(s.MaxAttempts), s.Deadline); err != nil {
		return fmt.Errorf("shard %d: configure queue %q: %w", e.id.ShardID, queue, err)
	}
	return nil
}

func ptr[T any](v T) *T { return &v }
