package worker_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/braidq/braid/engine"
	"github.com/braidq/braid/router/worker"
	"github.com/braidq/braid/shard"
)

func startHeartbeater(t testing.TB, b *bundle, interval time.Duration) *worker.Heartbeater {
	t.Helper()
	h, err := worker.NewHeartbeater(worker.HeartbeaterConfig{Interval: interval}, b.set, nil)
	require.NoError(t, err)
	require.NoError(t, h.Start(b.ctx))
	t.Cleanup(func() { require.NoError(t, h.Stop(context.Background())) })
	return h
}

// heartbeatAt is the attempt's last heartbeat time as the shard recorded it (zero: none yet).
func (b *bundle) heartbeatAt(t testing.TB, r engine.Receipt) time.Time {
	t.Helper()
	var at *time.Time
	err := b.s.Pool().QueryRow(b.ctx, `SELECT max(heartbeat_at) FROM braid.attempt_state WHERE job_id = $1 AND run_lease = $2`,
		r.JobID, r.RunLease).Scan(&at)
	require.NoError(t, err)
	if at == nil {
		return time.Time{}
	}
	return *at
}

// TestHeartbeatFollowsRehome: tracked attempts are heartbeated into the shard; when
// maintenance re-homes one, the heartbeater's receipt follows the answer, and the new receipt
// completes the attempt.
func TestHeartbeatFollowsRehome(t *testing.T) {
	t.Parallel()
	b := setup(t)
	h := startHeartbeater(t, b, 40*time.Millisecond)
	c := claimN(t, b, "rehome", 1)[0]
	var stale atomic.Int32
	untrack := h.Track(c.Receipt, func() { stale.Add(1) })

	require.Eventually(t, func() bool { return !b.heartbeatAt(t, c.Receipt).IsZero() }, 10*time.Second, 10*time.Millisecond,
		"the attempt is heartbeated")
	first := b.heartbeatAt(t, c.Receipt)
	require.Eventually(t, func() bool { return b.heartbeatAt(t, c.Receipt).After(first) }, 10*time.Second, 10*time.Millisecond,
		"and again each interval")

	lease, ok, err := b.eng.LeaseAcquire(b.ctx, "test", time.Minute)
	require.NoError(t, err)
	require.True(t, ok)
	rot, err := b.eng.Rotate(b.ctx, lease, engine.ClaimRing, 0)
	require.NoError(t, err)
	require.Equal(t, "rotated", rot.Outcome)
	// Re-home in a transaction held open until a heartbeat waits behind its batch lock: the
	// engine's heartbeat must resolve the receipt again once it holds the lock (it used to
	// answer stale for the live attempt here). The statement is the one Engine.Rehome runs.
	tx, err := b.s.Pool().Begin(b.ctx)
	require.NoError(t, err)
	defer func() { _ = tx.Rollback(b.ctx) }()
	var n int
	require.NoError(t, tx.QueryRow(b.ctx, `SELECT braid.job_rehome('0s'::interval, 10, NULL)`).Scan(&n))
	require.Equal(t, 1, n)
	require.Eventually(t, func() bool {
		var waiting int
		require.NoError(t, b.s.Pool().QueryRow(b.ctx, `SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted`).Scan(&waiting))
		return waiting > 0
	}, 10*time.Second, 2*time.Millisecond, "a heartbeat waits for the re-home")
	require.NoError(t, tx.Commit(b.ctx))

	var now engine.Receipt
	require.Eventually(t, func() bool {
		now, ok = h.Receipt(c.Receipt.JobID)
		return ok && now.BatchID != c.Receipt.BatchID
	}, 10*time.Second, 10*time.Millisecond, "the receipt follows the re-home")
	require.Equal(t, int16(rot.Slot), now.ClaimSlot)
	require.Equal(t, c.Receipt.RunLease, now.RunLease)
	require.Equal(t, c.Receipt.JobID, now.JobID)
	require.Zero(t, stale.Load(), "a re-homed attempt is alive")

	untrack()
	_, ok = h.Receipt(c.Receipt.JobID)
	require.False(t, ok)
	out, err := b.eng.Complete(b.ctx, []engine.Receipt{now})
	require.NoError(t, err)
	require.Equal(t, []engine.Outcome{engine.Applied}, out, "the followed receipt ends the attempt")
}

// TestHeartbeatReportsStale: an attempt an operator cancelled, or that maintenance rescued,
// is reported once through its onStale; live attempts are not.
func TestHeartbeatReportsStale(t *testing.T) {
	t.Parallel()
	b := setup(t)
	h := startHeartbeater(t, b, 20*time.Millisecond)
	cs := claimN(t, b, "stale", 3)
	var stale [3]atomic.Int32
	for i, c := range cs {
		h.Track(c.Receipt, func() { stale[i].Add(1) })
	}

	_, err := b.eng.Cancel(b.ctx, cs[0].Receipt.JobID)
	require.NoError(t, err)
	require.Eventually(t, func() bool { return stale[0].Load() == 1 }, 10*time.Second, 5*time.Millisecond, "cancel is reported")
	time.Sleep(100 * time.Millisecond) // several more beats
	require.Equal(t, int32(1), stale[0].Load(), "once")
	require.Zero(t, stale[1].Load())
	require.Zero(t, stale[2].Load())

	res, err := b.eng.Rescue(b.ctx, time.Microsecond, 1)
	require.NoError(t, err)
	require.Equal(t, 1, res.Retried)
	require.Eventually(t, func() bool { return stale[1].Load()+stale[2].Load() == 1 }, 10*time.Second, 5*time.Millisecond,
		"the rescue is reported")
	time.Sleep(100 * time.Millisecond)
	require.Equal(t, int32(1), stale[1].Load()+stale[2].Load(), "only the rescued attempt is stale")
}

// TestHeartbeaterLifecycle: bad configuration is refused naming the fields; Stop is
// idempotent and safe before Start, and a stopped heartbeater does not start again.
func TestHeartbeaterLifecycle(t *testing.T) {
	t.Parallel()
	_, err := worker.NewHeartbeater(worker.HeartbeaterConfig{Interval: -time.Second, CallTimeout: -1}, nil, nil)
	for _, want := range []string{"interval", "call_timeout", "shards is required"} {
		require.ErrorContains(t, err, want)
	}
	b := setup(t)
	h, err := worker.NewHeartbeater(worker.HeartbeaterConfig{}, b.set, nil)
	require.NoError(t, err)
	require.NoError(t, h.Stop(b.ctx))
	require.Error(t, h.Start(b.ctx))

	h, err = worker.NewHeartbeater(worker.HeartbeaterConfig{}, b.set, nil)
	require.NoError(t, err)
	require.NoError(t, h.Start(b.ctx))
	require.NoError(t, h.Start(b.ctx))
	require.NoError(t, h.Stop(b.ctx))
	require.NoError(t, h.Stop(b.ctx))
}

// TestHeartbeaterTracksAttemptsNotJobs: a job can have two attempts on one node for a moment
// (a handler still running after its attempt was rescued, and the retry): Receipt gives the
// newest, and each untrack removes only its own attempt.
func TestHeartbeaterTracksAttemptsNotJobs(t *testing.T) {
	t.Parallel()
	set, err := shard.NewSet()
	require.NoError(t, err)
	h, err := worker.NewHeartbeater(worker.HeartbeaterConfig{}, set, nil)
	require.NoError(t, err)
	old := engine.Receipt{ShardID: 1, BatchID: 1, Index: 1, JobID: 7, RunLease: 1}
	retry := engine.Receipt{ShardID: 1, BatchID: 2, Index: 1, JobID: 7, RunLease: 2}
	untrackRetry := h.Track(retry, nil)
	untrackOld := h.Track(old, nil)
	got, ok := h.Receipt(7)
	require.True(t, ok)
	require.Equal(t, retry, got)
	untrackRetry()
	got, ok = h.Receipt(7)
	require.True(t, ok)
	require.Equal(t, old, got)
	untrackRetry()
	untrackOld()
	_, ok = h.Receipt(7)
	require.False(t, ok)
}
