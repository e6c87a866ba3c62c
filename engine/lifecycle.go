package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// receiptArrays splits receipts into the parallel arrays the SQL functions take, refusing
// receipts of another shard.
func (e *Engine) receiptArrays(rs []Receipt) (cslots []int16, batches []int64, idx []int32, leases []int64, err error) {
	n := len(rs)
	cslots, batches, idx, leases = make([]int16, n), make([]int64, n), make([]int32, n), make([]int64, n)
	for i, r := range rs {
		if r.ShardID != e.id.ShardID {
			return nil, nil, nil, nil, &ValidationError{Field: fmt.Sprintf("receipts[%d].shard_id", i), Value: r.ShardID,
				Problem: fmt.Sprintf("receipt belongs to shard %d, this is shard %d", r.ShardID, e.id.ShardID)}
		}
		cslots[i], batches[i], idx[i], leases[i] = r.ClaimSlot, r.BatchID, r.Index, r.RunLease
	}
	return cslots, batches, idx, leases, nil
}

// appliedOrdinals reads a function's SETOF integer of 1-based ordinals into per-receipt outcomes.
func appliedOrdinals(rows pgx.Rows, n int) ([]Outcome, error) {
	out := make([]Outcome, n)
	for i := range out {
		out[i] = Stale
	}
	var ord int32
	_, err := pgx.ForEachRow(rows, []any{&ord}, func() error {
		out[ord-1] = Applied
		return nil
	})
	return out, err
}

// Failure is a handler's error for one claimed attempt.
type Failure struct {
	Receipt    Receipt
	Error      string        // the error message, kept on the job
	Trace      string        // optional stack trace
	RetryAfter time.Duration // > 0: retry after this delay instead of the exponential backoff
	Terminal   bool          // do not retry: dead-letter (or fail) now
}

// FailResult says what a Fail did to one attempt.
type FailResult struct {
	Outcome Outcome  // Applied, or Stale when the attempt had already ended
	State   JobState // when applied: retryable, dead_lettered or failed
}

const maxErrorBytes = 64 << 10

// Fail ends attempts with an error. While attempts remain and the error is not terminal the job
// is retried after min(2^attempt s + jitter, 24 h) (or RetryAfter); otherwise it goes to the
// dead-letter table when the queue has DLQ on, else it is failed. The error joins the job's
// error history.
func (e *Engine) Fail(ctx context.Context, failures []Failure) ([]FailResult, error) {
	if len(failures) == 0 {
		return nil, nil
	}
	rs := make([]Receipt, len(failures))
	errs := make([]string, len(failures))
	after := make([]*time.Duration, len(failures))
	terminal := make([]bool, len(failures))
	var bad []error
	for i, f := range failures {
		rs[i] = f.Receipt
		if f.RetryAfter < 0 {
			bad = append(bad, &ValidationError{Field: fmt.Sprintf("failures[%d].retry_after", i), Value: f.RetryAfter, Problem: "must be >= 0"})
		}
		if len(f.Error)+len(f.Trace) > maxErrorBytes {
			bad = append(bad, &ValidationError{Field: fmt.Sprintf("failures[%d].error", i), Value: fmt.Sprintf("%d bytes", len(f.Error)+len(f.Trace)),
				Problem: fmt.Sprintf("error and trace must be at most %d bytes together", maxErrorBytes)})
		}
		doc := map[string]string{"error": f.Error}
		if f.Trace != "" {
			doc["trace"] = f.Trace
		}
		b, _ := json.Marshal(doc)
		errs[i] = string(b)
		if f.RetryAfter > 0 {
			after[i] = ptr(f.RetryAfter)
		}
		terminal[i] = f.Terminal
	}
	if err := errors.Join(bad...); err != nil {
		return nil, err
	}
	cs, bs, ix, ls, err := e.receiptArrays(rs)
	if err != nil {
		return nil, err
	}
	rows, err := e.pool.Query(ctx, e.sql.fail, cs, bs, ix, ls, errs, after, terminal, nil)
	if err != nil {
		return nil, fmt.Errorf("shard %d: fail %d attempts: %w", e.id.ShardID, len(rs), err)
	}
	out := make([]FailResult, len(rs))
	for i := range out {
		out[i].Outcome = Stale
	}
	var (
		ord   int32
		id    int64
		state string
	)
	if _, err := pgx.ForEachRow(rows, []any{&ord, &id, &state}, func() error {
		out[ord-1] = FailResult{Outcome: Applied, State: JobState(state)}
		return nil
	}); err != nil {
		return nil, fmt.Errorf("shard %d: fail %d attempts: %w", e.id.ShardID, len(rs), err)
	}
	return out, nil
}

// Snooze ends attempts without consuming them: each job is scheduled again after its delay.
func (e *Engine) Snooze(ctx context.Context, receipts []Receipt, delays []time.Duration) ([]Outcome, error) {
	if len(receipts) != len(delays) {
		return nil, &ValidationError{Field: "delays", Value: len(delays), Problem: fmt.Sprintf("must have one delay per receipt (%d)", len(receipts))}
	}
	if len(receipts) == 0 {
		return nil, nil
	}
	for i, d := range delays {
		if d < 0 {
			return nil, &ValidationError{Field: fmt.Sprintf("delays[%d]", i), Value: d, Problem: "must be >= 0"}
		}
	}
	cs, bs, ix, ls, err := e.receiptArrays(receipts)
	if err != nil {
		return nil, err
	}
	rows, err := e.pool.Query(ctx, e.sql.snooze, cs, bs, ix, ls, delays, nil)
	if err != nil {
		return nil, fmt.Errorf("shard %d: snooze %d attempts: %w", e.id.ShardID, len(receipts), err)
	}
	out, err := appliedOrdinals(rows, len(receipts))
	if err != nil {
		return nil, fmt.Errorf("shard %d: snooze %d attempts: %w", e.id.ShardID, len(receipts), err)
	}
	return out, nil
}

// HeartbeatResult is the answer to one receipt's heartbeat.
type HeartbeatResult struct {
	Outcome Outcome // Applied, or Stale when the attempt ended: the worker should stop the handler
	Receipt Receipt // when applied: the receipt to use from now on (it moves when the attempt is re-homed)
}

// Heartbeat records that attempts are alive, with optional progress (a JSON document of at most
// 64 KiB). The answer carries each attempt's current receipt, which differs from the one sent
// when maintenance re-homed the attempt (old receipts keep working, but the new one is cheaper).
func (e *Engine) Heartbeat(ctx context.Context, receipts []Receipt, progress []json.RawMessage) ([]HeartbeatResult, error) {
	if progress != nil && len(progress) != len(receipts) {
		return nil, &ValidationError{Field: "progress", Value: len(progress), Problem: fmt.Sprintf("must be nil or one per receipt (%d)", len(receipts))}
	}
	if len(receipts) == 0 {
		return nil, nil
	}
	prog := make([]*string, len(receipts))
	for i := range progress {
		if len(progress[i]) == 0 {
			continue
		}
		if len(progress[i]) > maxErrorBytes || !json.Valid(progress[i]) {
			return nil, &ValidationError{Field: fmt.Sprintf("progress[%d]", i), Value: string(progress[i]),
				Problem: fmt.Sprintf("must be valid JSON of at most %d bytes", maxErrorBytes)}
		}
		prog[i] = ptr(string(progress[i]))
	}
	cs, bs, ix, ls, err := e.receiptArrays(receipts)
	if err != nil {
		return nil, err
	}
	rows, err := e.pool.Query(ctx, e.sql.heartbeat, cs, bs, ix, ls, prog, nil)
	if err != nil {
		return nil, fmt.Errorf("shard %d: heartbeat %d attempts: %w", e.id.ShardID, len(receipts), err)
	}
	out := make([]HeartbeatResult, len(receipts))
	for i := range out {
		out[i].Outcome = Stale
	}
	var (
		ord, idx int32
		cslot    int16
		batch    int64
	)
	if _, err := pgx.ForEachRow(rows, []any{&ord, &cslot, &batch, &idx}, func() error {
		r := receipts[ord-1]
		r.ClaimSlot, r.BatchID, r.Index = cslot, batch, idx
		out[ord-1] = HeartbeatResult{Outcome: Applied, Receipt: r}
		return nil
	}); err != nil {
		return nil, fmt.Errorf("shard %d: heartbeat %d attempts: %w", e.id.ShardID, len(receipts), err)
	}
	return out, nil
}

// Rehome moves up to limit open attempts claimed more than olderThan ago out of old claim
// slots into the current one, so a long-running attempt never pins the claim ring. The worker's
// receipts keep working; its next heartbeat answer carries the new one. Returns how many moved.
func (e *Engine) Rehome(ctx context.Context, olderThan time.Duration, limit int) (int, error) {
	if olderThan < 0 || limit < 1 {
		return 0, &ValidationError{Field: "older_than", Value: olderThan, Problem: "older_than must be >= 0 and limit >= 1"}
	}
	var n int32
	if err := e.pool.QueryRow(ctx, e.sql.rehome, olderThan, int32(limit), nil).Scan(&n); err != nil {
		return 0, fmt.Errorf("shard %d: rehome: %w", e.id.ShardID, err)
	}
	return int(n), nil
}

// CancelResult says what Cancel did.
type CancelResult struct {
	Cancelled bool     // false: the job had already finished and was left alone
	Previous  JobState // the state the job was in (or is in, when not cancelled)
}

// CancelChannel is the LISTEN channel on which a cancelled running attempt is announced, with
// payload "job_id:run_lease", so the worker running it can cancel the handler's context.
func (e *Engine) CancelChannel() string { return e.cfg.Schema + ".cancel" }

// Cancel cancels a job in any live state: scheduled or retryable (removed from the deferred
// table), available (tombstoned so no claim emits it) or running (the attempt ends as cancelled
// and CancelChannel is notified). Cancelling a finished job changes nothing.
func (e *Engine) Cancel(ctx context.Context, jobID int64) (CancelResult, error) {
	return e.cancel(ctx, jobID, false, "cancel")
}

// Discard moves a job in any live state to the dead-letter table, as Cancel does to cancelled:
// for a job an operator wants kept for inspection rather than run.
func (e *Engine) Discard(ctx context.Context, jobID int64) (CancelResult, error) {
	return e.cancel(ctx, jobID, true, "discard")
}

func (e *Engine) cancel(ctx context.Context, jobID int64, discard bool, op string) (CancelResult, error) {
	if err := e.ownJob(jobID); err != nil {
		return CancelResult{}, err
	}
	var (
		prev      string
		cancelled bool
	)
	err := e.pool.QueryRow(ctx, e.sql.cancel, jobID, discard, nil).Scan(&prev, &cancelled)
	if errors.Is(err, pgx.ErrNoRows) {
		return CancelResult{}, fmt.Errorf("shard %d: %s job %d: %w", e.id.ShardID, op, jobID, ErrNotFound)
	}
	if err != nil {
		return CancelResult{}, fmt.Errorf("shard %d: %s job %d: %w", e.id.ShardID, op, jobID, err)
	}
	return CancelResult{Cancelled: cancelled, Previous: JobState(prev)}, nil
}

func (e *Engine) ownJob(jobID int64) error {
	if ShardOf(jobID) != e.id.ShardID {
		return &ValidationError{Field: "job_id", Value: fmt.Sprint(jobID),
			Problem: fmt.Sprintf("job belongs to shard %d, this is shard %d", ShardOf(jobID), e.id.ShardID)}
	}
	return nil
}

// RetryResult says what Retry did.
type RetryResult struct {
	Retried  bool
	Previous JobState // failed or cancelled
	HeldBy   int64    // when not retried: the live job that now holds its unique key
}

// ErrNotRetryable is returned by Retry for a job that is neither failed nor cancelled.
var ErrNotRetryable = errors.New("job is neither failed nor cancelled")

// Retry makes a failed or cancelled job available again with its attempts reset (same job id;
// its run lease moves on by one; its failed or cancelled count moves back).
func (e *Engine) Retry(ctx context.Context, jobID int64) (RetryResult, error) {
	if err := e.ownJob(jobID); err != nil {
		return RetryResult{}, err
	}
	var (
		res    RetryResult
		prev   string
		heldBy *int64
	)
	err := e.pool.QueryRow(ctx, e.sql.retry, jobID, nil).Scan(&prev, &res.Retried, &heldBy)
	if errors.Is(err, pgx.ErrNoRows) {
		return RetryResult{}, fmt.Errorf("shard %d: retry job %d: %w", e.id.ShardID, jobID, ErrNotRetryable)
	}
	if err != nil {
		return RetryResult{}, fmt.Errorf("shard %d: retry job %d: %w", e.id.ShardID, jobID, err)
	}
	res.Previous = JobState(prev)
	if heldBy != nil {
		res.HeldBy = *heldBy
	}
	return res, nil
}

// Promote makes up to limit due scheduled, retryable and snoozed jobs available (same job id and
// run lease, a new place at the end of their lane). Safe to run concurrently. Returns how many.
func (e *Engine) Promote(ctx context.Context, limit int) (int, error) {
	if limit < 1 {
		return 0, &ValidationError{Field: "limit", Value: limit, Problem: "must be >= 1"}
	}
	var n int32
	if err := e.pool.QueryRow(ctx, e.sql.promote, int32(limit), nil).Scan(&n); err != nil {
		return 0, fmt.Errorf("shard %d: promote: %w", e.id.ShardID, err)
	}
	return int(n), nil
}

// RescueResult counts what one Rescue call did.
type RescueResult struct {
	Retried, DeadLettered, Failed int
}

// Rescue ends up to limit open attempts whose deadline passed or whose heartbeat (or claim
// time) is older than stale, oldest first, and fails them forward: a rescue counts as an
// attempt, so an always-hanging job ends dead-lettered or failed.
func (e *Engine) Rescue(ctx context.Context, stale time.Duration, limit int) (RescueResult, error) {
	var bad []error
	if stale <= 0 {
		bad = append(bad, &ValidationError{Field: "stale", Value: stale, Problem: "must be > 0"})
	}
	if limit < 1 {
		bad = append(bad, &ValidationError{Field: "limit", Value: limit, Problem: "must be >= 1"})
	}
	if err := errors.Join(bad...); err != nil {
		return RescueResult{}, err
	}
	rows, err := e.pool.Query(ctx, e.sql.rescue, stale, int32(limit), nil)
	if err != nil {
		return RescueResult{}, fmt.Errorf("shard %d: rescue: %w", e.id.ShardID, err)
	}
	var (
		res   RescueResult
		ord   int32
		id    int64
		state string
	)
	_, err = pgx.ForEachRow(rows, []any{&ord, &id, &state}, func() error {
		switch JobState(state) {
		case StateRetryable:
			res.Retried++
		case StateDeadLettered:
			res.DeadLettered++
		default:
			res.Failed++
		}
		return nil
	})
	if err != nil {
		return RescueResult{}, fmt.Errorf("shard %d: rescue: %w", e.id.ShardID, err)
	}
	return res, nil
}
