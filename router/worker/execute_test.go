package worker_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/braidq/braid/engine"
	"github.com/braidq/braid/router/worker"
)

// TaskArgs are the args of the jobs these tests run; Mode picks what the handler does.
type TaskArgs struct {
	Mode string `json:"mode"`
	N    int    `json:"n"`
}

func (TaskArgs) Kind() string { return "task" }

// taskWorker does what a job's Mode says; Timeout is 50ms for mode "slow".
type taskWorker struct{}

func (taskWorker) Timeout(j *worker.Job[TaskArgs]) time.Duration {
	if j.Args.Mode == "slow" {
		return 50 * time.Millisecond
	}
	return 0
}

func (taskWorker) Work(ctx context.Context, j *worker.Job[TaskArgs]) error {
	switch j.Args.Mode {
	case "ok":
		return nil
	case "error":
		return errors.New("smtp: 451 try later")
	case "snooze":
		return worker.JobSnooze(time.Hour)
	case "cancel":
		return worker.JobCancel(errors.New("customer left"))
	case "discard":
		return worker.JobDiscard(errors.New("malformed address"))
	case "retry_after":
		return worker.RetryAfter(2*time.Hour, errors.New("rate limited"))
	case "panic":
		panicInHandler(j.Args.N)
	case "slow", "block":
		<-ctx.Done()
		return ctx.Err()
	}
	return errors.New("unknown mode " + j.Args.Mode)
}

func panicInHandler(n int) { panic("kaboom " + strings.Repeat("!", n)) }

func taskWorkers(t testing.TB) *worker.Workers {
	t.Helper()
	ws := worker.NewWorkers()
	worker.AddWorker(ws, taskWorker{})
	return ws
}

// TestExecuteEveryResultEndToEnd enqueues a job per handler result, claims it from a real
// engine, runs it with Execute, acknowledges it through an Acker and reads the job back: every
// result lands in the state a River user expects, with the attempt, error history and trace.
func TestExecuteEveryResultEndToEnd(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ws := taskWorkers(t)
	acker, rec := startAcker(t, b, worker.AckerConfig{})

	type check func(t *testing.T, res worker.Result, acked worker.Acked, info engine.JobInfo)
	failedWith := func(state engine.JobState, msg string) check {
		return func(t *testing.T, res worker.Result, acked worker.Acked, info engine.JobInfo) {
			require.Equal(t, worker.Fail, res.Action)
			require.Equal(t, state, acked.State)
			require.Equal(t, state, info.State)
			errs := errorsOf(t, info)
			require.Len(t, errs, 1)
			require.Equal(t, 1, errs[0].Attempt)
			require.Contains(t, errs[0].Error, msg)
			require.WithinDuration(t, time.Now(), errs[0].At, time.Minute)
		}
	}
	cases := []struct {
		name        string
		job         engine.Job
		maxAttempts int
		action      worker.Action
		check       check
	}{
		{name: "nil completes the job", job: job(t, "q", TaskArgs{Mode: "ok"}), action: worker.Complete,
			check: func(t *testing.T, res worker.Result, _ worker.Acked, info engine.JobInfo) {
				require.NoError(t, res.Err)
				require.Equal(t, engine.StateCompleted, info.State)
				require.Empty(t, errorsOf(t, info))
			}},
		{name: "an error retries with backoff and joins the history", job: job(t, "q", TaskArgs{Mode: "error"}), action: worker.Fail,
			check: func(t *testing.T, res worker.Result, a worker.Acked, info engine.JobInfo) {
				failedWith(engine.StateRetryable, "smtp: 451 try later")(t, res, a, info)
				require.False(t, res.Failure.Terminal)
				require.WithinDuration(t, time.Now().Add(2*time.Second), info.RunAt, 5*time.Second, "the backoff of attempt 1 is seconds")
			}},
		{name: "an error on the last attempt dead-letters", job: job(t, "q", TaskArgs{Mode: "error"}), maxAttempts: 1, action: worker.Fail,
			check: failedWith(engine.StateDeadLettered, "smtp: 451 try later")},
		{name: "JobSnooze schedules without consuming the attempt", job: job(t, "q", TaskArgs{Mode: "snooze"}), action: worker.Snooze,
			check: func(t *testing.T, res worker.Result, _ worker.Acked, info engine.JobInfo) {
				require.Equal(t, time.Hour, res.Snooze)
				require.Equal(t, engine.StateScheduled, info.State)
				require.Zero(t, info.Attempt, "the attempt was given back")
				require.WithinDuration(t, time.Now().Add(time.Hour), info.RunAt, time.Minute)
				require.Empty(t, errorsOf(t, info))
			}},
		{name: "JobCancel cancels for good", job: job(t, "q", TaskArgs{Mode: "cancel"}), action: worker.Cancel,
			check: func(t *testing.T, res worker.Result, _ worker.Acked, info engine.JobInfo) {
				var ce *worker.JobCancelError
				require.ErrorAs(t, res.Err, &ce)
				require.EqualError(t, ce.Err, "customer left")
				require.Equal(t, engine.StateCancelled, info.State)
			}},
		{name: "JobDiscard dead-letters at once", job: job(t, "q", TaskArgs{Mode: "discard"}), maxAttempts: 5, action: worker.Fail,
			check: func(t *testing.T, res worker.Result, a worker.Acked, info engine.JobInfo) {
				failedWith(engine.StateDeadLettered, "job discarded: malformed address")(t, res, a, info)
				require.True(t, res.Failure.Terminal)
			}},
		{name: "RetryAfter replaces the backoff", job: job(t, "q", TaskArgs{Mode: "retry_after"}), action: worker.Fail,
			check: func(t *testing.T, res worker.Result, a worker.Acked, info engine.JobInfo) {
				failedWith(engine.StateRetryable, "rate limited")(t, res, a, info)
				require.Equal(t, 2*time.Hour, res.Failure.RetryAfter)
				require.WithinDuration(t, time.Now().Add(2*time.Hour), info.RunAt, time.Minute)
			}},
		{name: "a panic is a retried failure whose trace is the stack", job: job(t, "q", TaskArgs{Mode: "panic", N: 3}), action: worker.Fail,
			check: func(t *testing.T, res worker.Result, a worker.Acked, info engine.JobInfo) {
				failedWith(engine.StateRetryable, "panic: kaboom !!!")(t, res, a, info)
				require.True(t, res.Panicked)
				trace := errorsOf(t, info)[0].Trace
				require.Contains(t, trace, "worker_test.panicInHandler", "the stack names the panicking function")
				require.Contains(t, trace, "taskWorker.Work")
			}},
		{name: "the worker's timeout fails the attempt", job: job(t, "q", TaskArgs{Mode: "slow"}), action: worker.Fail,
			check: func(t *testing.T, res worker.Result, a worker.Acked, info engine.JobInfo) {
				failedWith(engine.StateRetryable, "job timed out after 50ms: context deadline exceeded")(t, res, a, info)
				require.GreaterOrEqual(t, res.Duration, 50*time.Millisecond)
			}},
		{name: "an unknown kind dead-letters naming the kind", job: engine.Job{Queue: "q", Kind: "no_such_kind", Args: []byte(`{}`)}, maxAttempts: 5, action: worker.Fail,
			check: func(t *testing.T, res worker.Result, a worker.Acked, info engine.JobInfo) {
				failedWith(engine.StateDeadLettered, `no worker registered for kind "no_such_kind"`)(t, res, a, info)
				var uk *worker.UnknownKindError
				require.ErrorAs(t, res.Err, &uk)
				require.True(t, res.Failure.Terminal)
			}},
		{name: "args that do not decode dead-letter naming the field", job: engine.Job{Queue: "q", Kind: "task", Args: []byte(`{"mode":"ok","n":"seven"}`)}, maxAttempts: 5, action: worker.Fail,
			check: func(t *testing.T, res worker.Result, a worker.Acked, info engine.JobInfo) {
				failedWith(engine.StateDeadLettered, `kind "task": args do not decode into worker_test.TaskArgs`)(t, res, a, info)
				require.Contains(t, res.Failure.Error, "TaskArgs.n")
				require.True(t, res.Failure.Terminal)
			}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.job.MaxAttempts = tc.maxAttempts
			c := b.claim(t, tc.job)[0]
			res := ws.Execute(b.ctx, c, time.Minute)
			require.Equal(t, tc.action, res.Action, "result %+v", res)
			require.NoError(t, acker.Ack(b.ctx, c.Receipt, res))
			got := rec.waitJob(t, c.Receipt.JobID)
			require.Len(t, got, 1)
			require.NoError(t, got[0].Err)
			require.Equal(t, engine.Applied, got[0].Outcome)
			require.Equal(t, tc.action, got[0].Action)
			tc.check(t, res, got[0], b.get(t, c.Receipt.JobID))
		})
	}
}

// TestExecuteNodeCauses: the node ends a handler's context with ErrStopping to hand the attempt
// back (the job runs again with the same attempt number) or with ErrCancelled after an
// operator cancelled it (nothing to acknowledge).
func TestExecuteNodeCauses(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ws := taskWorkers(t)
	acker, rec := startAcker(t, b, worker.AckerConfig{})

	t.Run("ErrStopping gives the attempt back", func(t *testing.T) {
		c := b.claim(t, job(t, "stop", TaskArgs{Mode: "block"}))[0]
		require.Equal(t, 1, c.Attempt)
		ctx, cancel := context.WithCancelCause(b.ctx)
		time.AfterFunc(10*time.Millisecond, func() { cancel(worker.ErrStopping) })
		res := ws.Execute(ctx, c, time.Minute)
		require.Equal(t, worker.GiveBack, res.Action)
		require.ErrorIs(t, res.Err, context.Canceled)
		require.NoError(t, acker.Ack(b.ctx, c.Receipt, res))
		require.Equal(t, engine.Applied, rec.waitJob(t, c.Receipt.JobID)[0].Outcome)

		n, err := b.eng.Promote(b.ctx, 10)
		require.NoError(t, err)
		require.Equal(t, 1, n, "handed back due at once")
		again, err := b.eng.Claim(b.ctx, engine.ClaimRequest{Queue: "stop", LaneNo: -1, Max: 10})
		require.NoError(t, err)
		require.Len(t, again, 1)
		require.Equal(t, c.Receipt.JobID, again[0].Receipt.JobID)
		require.Equal(t, 1, again[0].Attempt, "the attempt was not consumed")
		require.Empty(t, again[0].Errors)
	})

	t.Run("ErrCancelled abandons: the operator's cancel stands", func(t *testing.T) {
		c := b.claim(t, job(t, "cancel", TaskArgs{Mode: "block"}))[0]
		ctx, cancel := context.WithCancelCause(b.ctx)
		time.AfterFunc(10*time.Millisecond, func() {
			_, err := b.eng.Cancel(b.ctx, c.Receipt.JobID)
			if err == nil {
				cancel(worker.ErrCancelled)
			} else {
				cancel(err)
			}
		})
		res := ws.Execute(ctx, c, time.Minute)
		require.Equal(t, worker.Abandon, res.Action, "result %+v", res)
		require.NoError(t, acker.Ack(b.ctx, c.Receipt, res))
		got := rec.waitJob(t, c.Receipt.JobID)
		require.Len(t, got, 1)
		require.Zero(t, got[0].Outcome, "nothing was sent")
		info := b.get(t, c.Receipt.JobID)
		require.Equal(t, engine.StateCancelled, info.State)
		require.Empty(t, errorsOf(t, info))
	})

	t.Run("a handler that finishes despite the stop completes", func(t *testing.T) {
		c := b.claim(t, job(t, "done", TaskArgs{Mode: "ok"}))[0]
		ctx, cancel := context.WithCancelCause(b.ctx)
		cancel(worker.ErrStopping)
		require.Equal(t, worker.Complete, ws.Execute(ctx, c, time.Minute).Action)
	})
}

// TestRetryShowsEarlierAttempts: the second attempt of a job sees the first attempt's error in
// JobRow.Errors, decoded from the engine's history, and every JobRow field from the claim.
func TestRetryShowsEarlierAttempts(t *testing.T) {
	t.Parallel()
	b := setup(t)
	acker, rec := startAcker(t, b, worker.AckerConfig{})
	var seen []*worker.JobRow
	ws := worker.NewWorkers()
	worker.AddWorker(ws, worker.WorkFunc(func(ctx context.Context, j *worker.Job[TaskArgs]) error {
		seen = append(seen, j.JobRow)
		if j.Attempt == 1 {
			return worker.RetryAfter(time.Millisecond, errors.New("first try failed"))
		}
		return nil
	}))
	enq := job(t, "retry", TaskArgs{Mode: "x", N: 7})
	enq.Priority, enq.MaxAttempts, enq.UniqueKey, enq.Metadata = 2, 3, "u-1", []byte(`{"tenant":"a"}`)
	c := b.claim(t, enq)[0]
	require.NoError(t, acker.Ack(b.ctx, c.Receipt, ws.Execute(b.ctx, c, 0)))
	rec.wait(t, 1)
	require.Eventually(t, func() bool {
		n, err := b.eng.Promote(b.ctx, 10)
		return err == nil && n == 1
	}, 10*time.Second, 5*time.Millisecond)
	got, err := b.eng.Claim(b.ctx, engine.ClaimRequest{Queue: "retry", LaneNo: -1, Max: 1})
	require.NoError(t, err)
	require.Len(t, got, 1)
	res := ws.Execute(b.ctx, got[0], 0)
	require.Equal(t, worker.Complete, res.Action)

	require.Len(t, seen, 2)
	first, second := seen[0], seen[1]
	require.Equal(t, c.Receipt.JobID, first.ID)
	require.Equal(t, 1, first.Shard)
	require.Equal(t, "retry", first.Queue)
	require.Equal(t, "task", first.Kind)
	require.Equal(t, 2, first.Priority)
	require.Equal(t, 3, first.MaxAttempts)
	require.Equal(t, "u-1", first.UniqueKey)
	require.JSONEq(t, `{"tenant":"a"}`, string(first.Metadata))
	require.JSONEq(t, `{"mode":"x","n":7}`, string(first.EncodedArgs))
	require.Equal(t, c.Receipt.RunLease, first.RunLease)
	require.Equal(t, 1, first.Attempt)
	require.Empty(t, first.Errors)
	require.True(t, first.DeadlineAt.After(first.CreatedAt))

	require.Equal(t, first.ID, second.ID)
	require.Equal(t, 2, second.Attempt)
	require.Greater(t, second.RunLease, first.RunLease)
	require.Len(t, second.Errors, 1)
	require.Equal(t, 1, second.Errors[0].Attempt)
	require.Equal(t, "retry after 1ms: first try failed", second.Errors[0].Error)
	require.WithinDuration(t, time.Now(), second.Errors[0].At, time.Minute)
}

// TestTruncatesHugeErrors: an error and stack larger than the engine keeps are cut, so the
// failure is still recorded rather than refused.
func TestTruncatesHugeErrors(t *testing.T) {
	t.Parallel()
	b := setup(t)
	acker, rec := startAcker(t, b, worker.AckerConfig{})
	ws := worker.NewWorkers()
	worker.AddWorker(ws, worker.WorkFunc(func(ctx context.Context, j *worker.Job[TaskArgs]) error {
		return errors.New(strings.Repeat("é", 100_000))
	}))
	c := b.claim(t, job(t, "huge", TaskArgs{}))[0]
	res := ws.Execute(b.ctx, c, 0)
	require.Less(t, len(res.Failure.Error), 10_000)
	require.True(t, strings.HasSuffix(res.Failure.Error, "(truncated)"))
	require.NoError(t, acker.Ack(b.ctx, c.Receipt, res))
	require.NoError(t, rec.waitJob(t, c.Receipt.JobID)[0].Err)
	errs := errorsOf(t, b.get(t, c.Receipt.JobID))
	require.Len(t, errs, 1)
	require.NotContains(t, errs[0].Error, "\ufffd", "no character was cut in two")
}
