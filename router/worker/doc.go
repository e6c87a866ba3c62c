// Package worker is braid's worker runtime below the node (DESIGN.md §2.6, §2.7, §5): the
// River-shaped API users write handlers against, the execution of one claimed attempt, the
// completion batcher and the heartbeats of long attempts.
//
// # The API users meet
//
// Job args are structs with Kind(); a Worker[T] implements Work(ctx, *Job[T]) and Timeout (embed
// WorkerDefaults for the node's default) or is a plain function (WorkFunc); AddWorker registers
// it in a Workers set by kind. A handler's return decides what happens to the job: nil
// completes it, an error retries it with exponential backoff until its attempts run out,
// JobSnooze(d) runs it again later without consuming the attempt, JobCancel(err) cancels it for
// good, JobDiscard(err) dead-letters it now and RetryAfter(d, err) retries it after d. The
// typed errors (*JobSnoozeError, ...) are exported for errors.As, as in River.
//
// # Execution
//
// Workers.Execute runs one engine.Claimed attempt on the caller's goroutine and returns a
// Result whose Action the Acker delivers. One function (classify, in execute.go) turns what the
// handler did into the action; its doc lists the rules in order. The node tells a handler why
// its context ended with a cause: ErrStopping (stop deadline: the attempt is handed back, a
// snooze of 0) or ErrCancelled (an operator cancelled it: nothing to acknowledge).
//
// # Acknowledgements and heartbeats
//
// The Acker batches results per shard (completions, failures, snoozes and give-backs: one
// engine call each per flush; cancels one job per call) and flushes at MaxBatch or MaxDelay.
// While a shard is unavailable it repeats the call with capped, jittered backoff and the
// shard's queue fills until Ack blocks: acknowledgements are never dropped, and never applied
// twice, because the engine ends an attempt at most once (a repeat answers Stale). Stop
// flushes what is queued until its deadline and names what it could not deliver.
//
// The Heartbeater sends each shard one Heartbeat call per interval for the attempts the node
// tracks, follows the new receipt of an attempt maintenance re-homed, and reports attempts
// that ended under their handler (onStale), so the node can cancel those handlers.
//
// # Goroutines
//
// Execute starts none. The Acker owns one flushing goroutine per shard and the Heartbeater one
// loop (and one short-lived call per shard per beat); both start in Start and are waited for
// by Stop, which is idempotent, bounded by its context and safe before Start. Callbacks
// (AckerDeps.OnAcked, onStale) run on those goroutines and must return quickly.
//
// # Must never
//
// worker talks to shards only through shard.Call (so every outcome reaches the shard's
// breaker) and imports engine and shard (and pgx's error types) only: never memberlist, the
// producer client or configs. Claim loops, ownership, concurrency limits, LISTEN for cancels
// and the order of a node's shutdown belong to the node (router/node). It keeps no
// package-level mutable state.
package worker
