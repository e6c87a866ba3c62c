package router

import (
	"context"

	"github.com/braidq/braid/engine"
)

// Results of the operator's job operations.
type (
	// CancelResult says what JobCancel or JobDiscard did: Cancelled is false when the job had
	// already finished and was left alone, Previous the state it was (or is) in.
	CancelResult = engine.CancelResult
	// RetryResult says what JobRetry did: Retried is false when a live job holds the job's
	// unique key (HeldBy).
	RetryResult = engine.RetryResult
)

// ErrNotRetryable is wrapped by JobRetry for a job that is neither failed nor cancelled (or
// does not exist: a shard cannot tell the two apart in one step).
var ErrNotRetryable = engine.ErrNotRetryable

// JobCancel cancels a job in any live state, on the shard its id names (engine.ShardOf), never
// through the queue's current placement: a queue that moved leaves its jobs where they were
// made. A scheduled or retryable job leaves its schedule, an available one is skipped by every
// claim, and a running attempt ends as cancelled while its worker is notified
// (engine.CancelChannel) to stop the handler. A job that already finished is left alone
// (Cancelled false, Previous its state).
//
// Errors, as for JobDiscard, JobRetry and JobGet: an unknown id, or a finished job that was
// pruned, wraps ErrNotFound; an id of a shard this client does not have wraps
// *ShardNotConfiguredError and ErrNotFound; an id that names no shard is a *ValidationError;
// a shard that is down or whose breaker is open gives a *ShardUnavailableError naming it.
func (c *Client) JobCancel(ctx context.Context, id int64) (CancelResult, error) {
	return onJobShard(ctx, c, id, func(ctx context.Context, e *engine.Engine) (CancelResult, error) {
		return e.Cancel(ctx, id)
	})
}

// JobDiscard moves a job in any live state to the dead letters of the shard its id names, as
// JobCancel does to cancelled: for a job an operator wants kept for inspection (DeadLetters)
// and perhaps retried later (DeadLetterRetry), rather than run now. Errors as JobCancel's.
func (c *Client) JobDiscard(ctx context.Context, id int64) (CancelResult, error) {
	return onJobShard(ctx, c, id, func(ctx context.Context, e *engine.Engine) (CancelResult, error) {
		return e.Discard(ctx, id)
	})
}

// JobRetry makes a failed or cancelled job available again, on the shard its id names, with
// its attempts reset (same job id). When a live job took its unique key meanwhile it stays as
// it is: Retried is false and HeldBy names the holder. Dead letters come back with
// DeadLetterRetry. A job in another state, or an unknown one, wraps ErrNotRetryable; other
// errors as JobCancel's.
func (c *Client) JobRetry(ctx context.Context, id int64) (RetryResult, error) {
	return onJobShard(ctx, c, id, func(ctx context.Context, e *engine.Engine) (RetryResult, error) {
		return e.Retry(ctx, id)
	})
}
