package worker_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/braidq/braid/router/worker"
)

type OtherArgs struct{}

func (OtherArgs) Kind() string { return "other" }

type PtrArgs struct{ Name string }

func (a *PtrArgs) Kind() string { return a.Name } // reads its receiver: nil on the zero value

type EmptyKindArgs struct{}

func (EmptyKindArgs) Kind() string { return "" }

type LongKindArgs struct{}

func (LongKindArgs) Kind() string { return strings.Repeat("k", 256) }

// TestWorkersRegistry: kinds register once each; a duplicate panics with AddWorker and is an
// error with AddWorkerSafely, as in River; bad kinds and nil workers are refused by name.
func TestWorkersRegistry(t *testing.T) {
	t.Parallel()
	ws := worker.NewWorkers()
	worker.AddWorker(ws, taskWorker{})
	worker.AddWorker(ws, worker.WorkFunc(func(context.Context, *worker.Job[OtherArgs]) error { return nil }))
	require.Equal(t, []string{"other", "task"}, ws.Kinds())

	require.PanicsWithError(t, `add worker for worker_test.TaskArgs: a worker for kind "task" is already registered`, func() {
		worker.AddWorker(ws, worker.WorkFunc(func(context.Context, *worker.Job[TaskArgs]) error { return nil }))
	})
	require.ErrorContains(t, worker.AddWorkerSafely(ws, worker.WorkFunc(func(context.Context, *worker.Job[OtherArgs]) error { return nil })),
		`kind "other" is already registered`)
	require.ErrorContains(t, worker.AddWorkerSafely(ws, worker.WorkFunc(func(context.Context, *worker.Job[*PtrArgs]) error { return nil })),
		"add worker for *worker_test.PtrArgs: Kind() panicked on the zero value")
	require.ErrorContains(t, worker.AddWorkerSafely(ws, worker.WorkFunc(func(context.Context, *worker.Job[EmptyKindArgs]) error { return nil })),
		`kind "" must be 1..255 bytes`)
	require.ErrorContains(t, worker.AddWorkerSafely(ws, worker.WorkFunc(func(context.Context, *worker.Job[LongKindArgs]) error { return nil })),
		"must be 1..255 bytes")
	require.ErrorContains(t, worker.AddWorkerSafely[TaskArgs](ws, nil), "worker is nil")
	var nilWorker *timeoutWorker
	require.ErrorContains(t, worker.AddWorkerSafely[TaskArgs](ws, nilWorker), "worker is nil")
	require.Equal(t, []string{"other", "task"}, ws.Kinds(), "nothing refused was added")
}

type timeoutWorker struct {
	worker.WorkerDefaults[TaskArgs]
}

func (*timeoutWorker) Work(context.Context, *worker.Job[TaskArgs]) error { return nil }

// TestTypedErrors: the result errors wrap their cause for errors.Is/As and read well in a
// job's history.
func TestTypedErrors(t *testing.T) {
	t.Parallel()
	cause := context.DeadlineExceeded
	for _, tc := range []struct {
		err  error
		text string
	}{
		{worker.JobSnooze(90 * time.Second), "job snoozed for 1m30s"},
		{worker.JobSnooze(-time.Second), "job snoozed for 0s"},
		{worker.JobCancel(cause), "job cancelled: context deadline exceeded"},
		{worker.JobCancel(nil), "job cancelled"},
		{worker.JobDiscard(cause), "job discarded: context deadline exceeded"},
		{worker.RetryAfter(time.Minute, cause), "retry after 1m0s: context deadline exceeded"},
	} {
		require.EqualError(t, tc.err, tc.text)
	}
	require.ErrorIs(t, worker.JobCancel(cause), cause)
	require.ErrorIs(t, worker.JobDiscard(cause), cause)
	require.ErrorIs(t, worker.RetryAfter(time.Second, cause), cause)
	var ra *worker.RetryAfterError
	require.ErrorAs(t, worker.RetryAfter(-time.Second, cause), &ra)
	require.Zero(t, ra.Delay, "a negative delay keeps the backoff")
}
