package engine

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// DeadLetter is one dead-lettered job.
type DeadLetter struct {
	JobID       int64
	Queue       string
	Priority    int
	Kind        string
	Args        json.RawMessage
	Metadata    json.RawMessage
	Errors      json.RawMessage
	Attempt     int
	MaxAttempts int
	RunLease    int64
	UniqueKey   string
	CreatedAt   time.Time
	DeadAt      time.Time
}

// DeadLetterPage asks for a page of a queue's dead letters, newest first. Pass the last letter
// of the previous page as After to get the next one.
type DeadLetterPage struct {
	Queue string
	Limit int // 1..1000
	After *DeadLetter
}

// DeadLetters lists a queue's dead letters, newest first.
func (e *Engine) DeadLetters(ctx context.Context, p DeadLetterPage) ([]DeadLetter, error) {
	if err := ValidateQueue(p.Queue); err != nil {
		return nil, err
	}
	if p.Limit < 1 || p.Limit > 1000 {
		return nil, &ValidationError{Field: "limit", Value: p.Limit, Problem: "must be 1..1000"}
	}
	var beforeAt *time.Time
	var beforeID *int64
	if p.After != nil {
		beforeAt, beforeID = &p.After.DeadAt, &p.After.JobID
	}
	rows, err := e.pool.Query(ctx, e.sql.deadLetterList, p.Queue, int32(p.Limit), beforeAt, beforeID)
	if err != nil {
		return nil, fmt.Errorf("shard %d: dead letters of %q: %w", e.id.ShardID, p.Queue, err)
	}
	var (
		out                  []DeadLetter
		d                    DeadLetter
		prio, laneNo         int16
		attempt, maxAttempts int32
		meta, errs           []byte
		uniqueKey            *string
	)
	_, err = pgx.ForEachRow(rows, []any{&d.JobID, &d.Queue, &prio, &laneNo, &d.RunLease, &attempt, &maxAttempts,
		&d.Kind, &d.Args, &meta, &errs, &uniqueKey, &d.CreatedAt, &d.DeadAt}, func() error {
		d.Priority, d.Attempt, d.MaxAttempts = int(prio), int(attempt), int(maxAttempts)
		d.Metadata, d.Errors = meta, errs
		if uniqueKey != nil {
			d.UniqueKey = *uniqueKey
		}
		out = append(out, d)
		d, meta, errs, uniqueKey = DeadLetter{}, nil, nil, nil
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("shard %d: dead letters of %q: %w", e.id.ShardID, p.Queue, err)
	}
	return out, nil
}

// DeadLetterRetryResult is the outcome for one job of DeadLetterRetry.
type DeadLetterRetryResult struct {
	JobID   int64
	Retried bool  // back to available, attempts reset
	HeldBy  int64 // when not retried: the live job that now holds its unique key
}

// DeadLetterRetry makes dead-lettered jobs available again with their attempt count reset (same
// job id, run lease lineage and error history). Ids that are not dead letters are left out of
// the result.
func (e *Engine) DeadLetterRetry(ctx context.Context, jobIDs []int64) ([]DeadLetterRetryResult, error) {
	rows, err := e.pool.Query(ctx, e.sql.deadLetterRetry, jobIDs, nil)
	if err != nil {
		return nil, fmt.Errorf("shard %d: retry %d dead letters: %w", e.id.ShardID, len(jobIDs), err)
	}
	var (
		out    []DeadLetterRetryResult
		r      DeadLetterRetryResult
		heldBy *int64
	)
	_, err = pgx.ForEachRow(rows, []any{&r.JobID, &r.Retried, &heldBy}, func() error {
		r.HeldBy = 0
		if heldBy != nil {
			r.HeldBy = *heldBy
		}
		out = append(out, r)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("shard %d: retry %d dead letters: %w", e.id.ShardID, len(jobIDs), err)
	}
	return out, nil
}

// DeadLetterPurge deletes dead letters for good and returns the ids it deleted.
func (e *Engine) DeadLetterPurge(ctx context.Context, jobIDs []int64) ([]int64, error) {
	rows, err := e.pool.Query(ctx, e.sql.deadLetterPurge, jobIDs)
	if err != nil {
		return nil, fmt.Errorf("shard %d: purge %d dead letters: %w", e.id.ShardID, len(jobIDs), err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return nil, fmt.Errorf("shard %d: purge %d dead letters: %w", e.id.ShardID, len(jobIDs), err)
	}
	return ids, nil
}

// DeadLetterTrim deletes up to limit dead letters older than retention (default policy: 30 days).
func (e *Engine) DeadLetterTrim(ctx context.Context, retention time.Duration, limit int) (int, error) {
	if retention <= 0 || limit < 1 {
		return 0, &ValidationError{Field: "retention", Value: retention, Problem: "retention must be > 0 and limit >= 1"}
	}
	var n int32
	if err := e.pool.QueryRow(ctx, e.sql.deadLetterTrim, retention, int32(limit), nil).Scan(&n); err != nil {
		return 0, fmt.Errorf("shard %d: trim dead letters: %w", e.id.ShardID, err)
	}
	return int(n), nil
}
