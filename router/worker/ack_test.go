package worker_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/braidq/braid/engine"
	"github.com/braidq/braid/health"
	"github.com/braidq/braid/router/worker"
	"github.com/braidq/braid/tests/pgtest"
)

// claimN claims n jobs of a queue of their own.
func claimN(t testing.TB, b *bundle, queue string, n int) []engine.Claimed {
	t.Helper()
	jobs := make([]engine.Job, n)
	for i := range jobs {
		jobs[i] = job(t, queue, TaskArgs{N: i})
	}
	return b.claim(t, jobs...)
}

// TestAckerFlushesBySize: with a long MaxDelay, acknowledgements reach the shard in batches of
// MaxBatch as soon as that many wait; the remainder waits for the delay, or for Stop.
func TestAckerFlushesBySize(t *testing.T) {
	t.Parallel()
	b := setup(t)
	acker, rec := startAcker(t, b, worker.AckerConfig{MaxBatch: 10, MaxDelay: time.Hour})
	cs := claimN(t, b, "size", 25)
	for _, c := range cs {
		require.NoError(t, acker.Ack(b.ctx, c.Receipt, worker.Result{Action: worker.Complete}))
	}
	rec.wait(t, 20)
	require.Equal(t, []int{10, 10}, rec.sizes(), "two full batches")
	require.Equal(t, engine.Counts{Completed: 20, Running: 5}, b.counts(t, "size"), "the remainder waits")
	require.NoError(t, acker.Stop(b.ctx))
	require.Equal(t, []int{10, 10, 5}, rec.sizes(), "Stop flushed the remainder")
	require.Equal(t, engine.Counts{Completed: 25}, b.counts(t, "size"))
	for _, c := range cs {
		got := rec.of(c.Receipt.JobID)
		require.Len(t, got, 1)
		require.Equal(t, engine.Applied, got[0].Outcome)
	}
	require.ErrorIs(t, acker.Ack(b.ctx, cs[0].Receipt, worker.Result{Action: worker.Complete}), worker.ErrAckerStopped)
	require.NoError(t, acker.Stop(b.ctx), "Stop is idempotent")
}

// TestAckerFlushesByDelay: fewer than MaxBatch acknowledgements are flushed once MaxDelay has
// passed since the first, without Stop.
func TestAckerFlushesByDelay(t *testing.T) {
	t.Parallel()
	b := setup(t)
	acker, rec := startAcker(t, b, worker.AckerConfig{MaxBatch: 512, MaxDelay: 20 * time.Millisecond})
	cs := claimN(t, b, "delay", 3)
	for _, c := range cs {
		require.NoError(t, acker.Ack(b.ctx, c.Receipt, worker.Result{Action: worker.Complete}))
	}
	rec.wait(t, 3)
	require.Equal(t, engine.Counts{Completed: 3}, b.counts(t, "delay"))
}

// TestAckerMixedBatch: one flush carries every action; each lands as its own engine call, and
// a repeated receipt is reported stale rather than applied twice.
func TestAckerMixedBatch(t *testing.T) {
	t.Parallel()
	b := setup(t)
	acker, rec := startAcker(t, b, worker.AckerConfig{MaxDelay: time.Hour})
	cs := claimN(t, b, "mixed", 6)
	results := []worker.Result{
		{Action: worker.Complete},
		{Action: worker.Fail, Failure: engine.Failure{Error: "boom"}},
		{Action: worker.Snooze, Snooze: time.Hour},
		{Action: worker.GiveBack},
		{Action: worker.Cancel},
		{Action: worker.Abandon},
	}
	for i, c := range cs {
		require.NoError(t, acker.Ack(b.ctx, c.Receipt, results[i]))
	}
	require.NoError(t, acker.Ack(b.ctx, cs[0].Receipt, results[0]), "a repeat")
	require.NoError(t, acker.Stop(b.ctx))
	require.Equal(t, []int{7}, rec.sizes(), "one flush")
	want := []engine.JobState{engine.StateCompleted, engine.StateRetryable, engine.StateScheduled, engine.StateScheduled,
		engine.StateCancelled, engine.StateRunning}
	for i, c := range cs {
		require.Equal(t, want[i], b.get(t, c.Receipt.JobID).State, "job %d (%s)", i, results[i].Action)
	}
	first := rec.of(cs[0].Receipt.JobID)
	require.Len(t, first, 2)
	require.ElementsMatch(t, []engine.Outcome{engine.Applied, engine.Stale}, []engine.Outcome{first[0].Outcome, first[1].Outcome})
	require.Zero(t, rec.of(cs[5].Receipt.JobID)[0].Outcome, "Abandon sends nothing")
}

// TestAckerSurvivesShardOutage crashes the shard's server: acknowledgements queued while it is
// down wait (Ack blocks once the queue is full), a Stop whose deadline passes during the
// outage names what it could not deliver, and a running acker delivers everything exactly
// once after the server is back.
func TestAckerSurvivesShardOutage(t *testing.T) {
	t.Parallel()
	c := pgtest.New(t)
	dsn := c.NewDB(t, "")
	require.NoError(t, migrate(context.Background(), dsn))
	b := open(t, dsn, health.BreakerSettings{ConsecutiveFailures: 2, OpenTimeout: 100 * time.Millisecond})
	cs := claimN(t, b, "outage", 40)
	results := func(i int) worker.Result {
		switch i % 3 {
		case 0:
			return worker.Result{Action: worker.Complete}
		case 1:
			return worker.Result{Action: worker.Fail, Failure: engine.Failure{Error: fmt.Sprintf("failure %d", i)}}
		}
		return worker.Result{Action: worker.Snooze, Snooze: time.Hour}
	}

	c.Crash(t)

	// A stop whose deadline passes while the shard is down names what it could not deliver.
	early, earlyRec := startAcker(t, b, worker.AckerConfig{MaxDelay: time.Millisecond, RetryBackoff: 10 * time.Millisecond, MaxRetryBackoff: 50 * time.Millisecond})
	for _, c := range cs[:3] {
		require.NoError(t, early.Ack(b.ctx, c.Receipt, results(0)))
	}
	ctx, cancel := context.WithTimeout(b.ctx, 300*time.Millisecond)
	err := early.Stop(ctx)
	cancel()
	require.ErrorContains(t, err, "stop acker: shard 1: 3 acknowledgements not delivered by the deadline")
	for _, c := range cs[:3] {
		require.ErrorContains(t, err, fmt.Sprint(c.Receipt.JobID))
		got := earlyRec.of(c.Receipt.JobID)
		require.Len(t, got, 1)
		require.Error(t, got[0].Err)
	}

	// A running acker holds on: the queue fills, then Ack blocks until its context ends.
	acker, rec := startAcker(t, b, worker.AckerConfig{MaxBatch: 8, QueueSize: 16, MaxDelay: time.Millisecond,
		RetryBackoff: 10 * time.Millisecond, MaxRetryBackoff: 100 * time.Millisecond})
	acked := 0
	for acked < len(cs) {
		ctx, cancel := context.WithTimeout(b.ctx, 200*time.Millisecond)
		err := acker.Ack(ctx, cs[acked].Receipt, results(acked))
		cancel()
		if err != nil {
			require.ErrorIs(t, err, context.DeadlineExceeded)
			break
		}
		acked++
	}
	require.Less(t, acked, len(cs), "Ack blocked while the shard was down and the queue full")
	require.GreaterOrEqual(t, acked, 16, "the queue took QueueSize acknowledgements first")
	require.Zero(t, rec.total(), "nothing was reported while the shard was down")

	restarted := make(chan struct{})
	time.AfterFunc(500*time.Millisecond, func() { c.Start(t); close(restarted) })
	for ; acked < len(cs); acked++ {
		require.NoError(t, acker.Ack(b.ctx, cs[acked].Receipt, results(acked)), "Ack waits for room")
	}
	<-restarted
	rec.wait(t, len(cs))
	require.NoError(t, acker.Stop(b.ctx))
	require.Equal(t, len(cs), rec.total(), "every acknowledgement reported once")
	retried := 0
	for i, c := range cs {
		got := rec.of(c.Receipt.JobID)
		require.Len(t, got, 1)
		require.NoError(t, got[0].Err)
		require.Equal(t, engine.Applied, got[0].Outcome, "job %d", i)
		if got[0].Retried {
			retried++
		}
	}
	require.Positive(t, retried, "some calls were repeated through the outage")
	require.Equal(t, engine.Counts{Completed: 14, Retryable: 13, Scheduled: 13}, b.counts(t, "outage"))
	for i, c := range cs {
		if results(i).Action == worker.Fail {
			errs := errorsOf(t, b.get(t, c.Receipt.JobID))
			require.Len(t, errs, 1, "job %d failed once", i)
			require.Equal(t, fmt.Sprintf("failure %d", i), errs[0].Error)
		}
	}
}

// TestAckerRefusesBadInput: configuration problems are reported together, naming each field;
// Ack refuses a shard outside the set and any use before Start.
func TestAckerRefusesBadInput(t *testing.T) {
	t.Parallel()
	_, err := worker.NewAcker(worker.AckerConfig{MaxBatch: -1, MaxDelay: -time.Second, QueueSize: -3, RetryBackoff: time.Second, MaxRetryBackoff: time.Millisecond}, worker.AckerDeps{})
	require.Error(t, err)
	for _, want := range []string{"max_batch", "max_delay", "queue_size", "max_retry_backoff", "deps.Shards is required"} {
		require.ErrorContains(t, err, want)
	}
	var ve *engine.ValidationError
	require.True(t, errors.As(err, &ve))

	b := setup(t)
	a, err := worker.NewAcker(worker.AckerConfig{}, worker.AckerDeps{Shards: b.set})
	require.NoError(t, err)
	r := engine.Receipt{ShardID: 1, JobID: 42}
	require.ErrorIs(t, a.Ack(b.ctx, r, worker.Result{Action: worker.Complete}), worker.ErrAckerStopped, "not started")
	require.NoError(t, a.Stop(b.ctx), "Stop before Start")
	require.Error(t, a.Start(b.ctx), "a stopped acker does not start again")

	a, _ = worker.NewAcker(worker.AckerConfig{}, worker.AckerDeps{Shards: b.set})
	require.NoError(t, a.Start(b.ctx))
	require.NoError(t, a.Start(b.ctx), "Start is idempotent")
	require.ErrorContains(t, a.Ack(b.ctx, engine.Receipt{ShardID: 9, JobID: 42}, worker.Result{Action: worker.Complete}),
		"ack job 42: shard 9 is not in the acker's shard set")
	require.NoError(t, a.Stop(b.ctx))
}
