package engine_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/braidq/braid/engine"
)

// ledgerCounts is what a traffic goroutine knows about one queue: what it started (attempted)
// and what the engine acknowledged (done). A job is counted as attempted before its call and as
// done after the call returned, so for any Counts read: done before the read <= count <=
// attempted after the read.
type ledgerCounts struct {
	enqueueAttempted, enqueued   atomic.Int64
	completeAttempted, completed atomic.Int64
	failAttempted, failed        atomic.Int64
}

type ledgerSnap struct{ enqueueAttempted, enqueued, completeAttempted, completed, failAttempted, failed int64 }

func (l *ledgerCounts) snap() ledgerSnap {
	return ledgerSnap{l.enqueueAttempted.Load(), l.enqueued.Load(), l.completeAttempted.Load(), l.completed.Load(),
		l.failAttempted.Load(), l.failed.Load()}
}

// checkCountsBetween asserts one Counts read of queue q lies between the ledger before and after it.
func checkCountsBetween(t *testing.T, b *bundle, q string, l *ledgerCounts, when string) {
	t.Helper()
	before := l.snap()
	got := counts(t, b, q)
	after := l.snap()
	total := got.Available + got.Running + got.Completed + got.Failed
	require.Zero(t, got.Scheduled+got.Retryable+got.Cancelled+got.DeadLettered, "%s: queue %s: %+v", when, q, got)
	require.True(t, before.completed <= got.Completed && got.Completed <= after.completeAttempted,
		"%s: queue %s completed %d outside [%d, %d]", when, q, got.Completed, before.completed, after.completeAttempted)
	require.True(t, before.failed <= got.Failed && got.Failed <= after.failAttempted,
		"%s: queue %s failed %d outside [%d, %d]", when, q, got.Failed, before.failed, after.failAttempted)
	require.True(t, before.enqueued <= total && total <= after.enqueueAttempted,
		"%s: queue %s holds %d jobs, outside [%d, %d]", when, q, total, before.enqueued, after.enqueueAttempted)
}

// TestRebuildCountersWhileTrafficRuns: producers and workers enqueue, claim, complete and fail
// jobs while the test, holding the lease, rotates, prunes, folds and rebuilds random buckets.
// Every Counts read lies between what the workers had been told before it and what they had
// started after it (a rebuild that lost or doubled folded history would leave that window), and
// once traffic stops and the queues are drained the counts equal the ledger exactly, before and
// after a rebuild of every bucket, which leaves one counter row per key and an empty log.
func TestRebuildCountersWhileTrafficRuns(t *testing.T) {
	t.Parallel()
	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(uint64(seed), 0))
	b := setup(t)
	queues := []string{"r1", "r2"}
	ledger := map[string]*ledgerCounts{}
	for _, q := range queues {
		require.NoError(t, b.eng.ConfigureQueue(b.ctx, q, settings(3, 1, false, time.Hour)))
		ledger[q] = &ledgerCounts{}
	}
	l, ok, err := b.eng.LeaseAcquire(b.ctx, "rebuilder", time.Hour)
	require.NoError(t, err)
	require.True(t, ok)

	var (
		stop atomic.Bool
		wg   sync.WaitGroup
	)
	errs := make(chan error, len(queues)+1)
	for w, q := range queues {
		wg.Go(func() {
			errs <- workLoop(b.ctx, &stop, b.eng, q, ledger[q], uint64(seed)+uint64(w))
		})
	}

	// Maintenance on its own connections, as the Maintainer runs it: rotate, prune and fold run
	// while the rebuilds below do, over the same counter and counter_log rows.
	wg.Go(func() {
		errs <- maintainLoop(b.ctx, &stop, b.eng, l)
	})

	deadline := time.Now().Add(3 * time.Second)
	rebuilt := 0
	for time.Now().Before(deadline) {
		// Mostly buckets that hold folded history (where a rebuild races prune and fold).
		var held []int
		rows, err := b.pool.Query(b.ctx, `SELECT bucket FROM braid.counter UNION SELECT bucket FROM braid.counter_log`)
		require.NoError(t, err)
		for rows.Next() {
			var bk int16
			require.NoError(t, rows.Scan(&bk))
			held = append(held, int(bk))
		}
		require.NoError(t, rows.Err())
		for range 8 {
			bucket := rng.IntN(engine.Buckets)
			if len(held) > 0 && rng.IntN(4) != 0 {
				bucket = held[rng.IntN(len(held))]
			}
			r, err := b.eng.RebuildCounters(b.ctx, l, bucket, time.Minute)
			require.NoError(t, err)
			require.NotEqual(t, "standing_down", r.Outcome)
			if r.Outcome == "rebuilt" {
				rebuilt++
			}
		}
		for _, q := range queues {
			checkCountsBetween(t, b, q, ledger[q], "during traffic")
		}
	}
	stop.Store(true)
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	t.Logf("%d rebuilds found folded history", rebuilt)
	require.Positive(t, rebuilt, "some rebuild found folded history to rebuild")
	require.Positive(t, b.scalar(t, `SELECT count(*) FROM braid.counter`), "prunes folded history into the counters")

	// Drain: every job ends completed, then the counts equal the ledger exactly.
	for _, q := range queues {
		for {
			cs := claimAll(t, b, q, 500)
			if len(cs) == 0 {
				break
			}
			ledger[q].completeAttempted.Add(int64(len(cs)))
			out, err := b.eng.Complete(b.ctx, receipts(cs))
			require.NoError(t, err)
			for _, o := range out {
				require.Equal(t, engine.Applied, o)
			}
			ledger[q].completed.Add(int64(len(cs)))
		}
	}
	exact := func(when string) {
		for _, q := range queues {
			s := ledger[q].snap()
			require.Equal(t, s.enqueued, s.completed+s.failed, "queue %s: every enqueued job ended", q)
			require.Equal(t, engine.Counts{Completed: s.completed, Failed: s.failed}, counts(t, b, q), "%s: queue %s", when, q)
		}
	}
	exact("after traffic")
	// Prune what the drain left, without folding: the walk below must meet log rows too.
	for range 16 {
		for _, ring := range []engine.Ring{engine.QueueRing, engine.ClaimRing} {
			_, err := b.eng.Rotate(b.ctx, l, ring, 0)
			require.NoError(t, err)
		}
		_, err := b.eng.PruneClaimSlot(b.ctx, l, time.Second)
		require.NoError(t, err)
		_, err = b.eng.PruneQueueSlot(b.ctx, l, time.Second)
		require.NoError(t, err)
	}
	logRows := b.scalar(t, `SELECT count(*) FROM braid.counter_log`)
	require.Positive(t, logRows)
	exact("after the last prunes")
	all, err := b.eng.RebuildAllCounters(b.ctx, l, time.Minute)
	require.NoError(t, err)
	require.Equal(t, engine.Buckets-1, all.Bucket, "the walk covered every bucket")
	require.Equal(t, logRows, all.LogRows)
	exact("after rebuilding every bucket")
	require.Zero(t, b.scalar(t, `SELECT count(*) FROM braid.counter_log`), "the rebuild folded the whole log")
	require.Zero(t, b.scalar(t, `SELECT count(*) FROM braid.counter WHERE n = 0`), "no zero rows are kept")
	require.Equal(t, all.RowsAfter, b.scalar(t, `SELECT count(*) FROM braid.counter`))
	again, err := b.eng.RebuildAllCounters(b.ctx, l, time.Minute)
	require.NoError(t, err)
	require.Equal(t, all.RowsAfter, again.RowsBefore)
	require.Equal(t, again.RowsBefore, again.RowsAfter, "a rebuilt bucket rebuilds to itself")
	require.Zero(t, again.LogRows)
	exact("after a second walk")
}

// workLoop is one queue's producer and worker until stop is set (between calls, so every call's
// outcome is known): enqueue a batch, claim, complete most and fail a few terminally
// (max_attempts 1: they become failed), keeping the ledger.
func workLoop(ctx context.Context, stop *atomic.Bool, eng *engine.Engine, q string, l *ledgerCounts, seed uint64) error {
	rng := rand.New(rand.NewPCG(seed, 1))
	for !stop.Load() {
		jobs := make([]engine.Job, 1+rng.IntN(20))
		for i := range jobs {
			jobs[i] = engine.Job{Queue: q, Kind: "k", Args: json.RawMessage(`{}`)}
		}
		l.enqueueAttempted.Add(int64(len(jobs)))
		if _, err := eng.EnqueueMany(ctx, jobs); err != nil {
			return err
		}
		l.enqueued.Add(int64(len(jobs)))
		cs, err := eng.Claim(ctx, engine.ClaimRequest{Queue: q, LaneNo: -1, Max: 1 + rng.IntN(30)})
		if err != nil {
			return err
		}
		var done []engine.Receipt
		var failed []engine.Failure
		for _, c := range cs {
			if rng.IntN(5) == 0 {
				failed = append(failed, engine.Failure{Receipt: c.Receipt, Error: "boom", Terminal: true})
			} else {
				done = append(done, c.Receipt)
			}
		}
		if len(done) > 0 {
			l.completeAttempted.Add(int64(len(done)))
			out, err := eng.Complete(ctx, done)
			if err != nil {
				return err
			}
			for i, o := range out {
				if o != engine.Applied {
					return fmt.Errorf("complete %v: %v, want applied", done[i], o)
				}
			}
			l.completed.Add(int64(len(done)))
		}
		if len(failed) > 0 {
			l.failAttempted.Add(int64(len(failed)))
			out, err := eng.Fail(ctx, failed)
			if err != nil {
				return err
			}
			for i, o := range out {
				if o.Outcome != engine.Applied || o.State != engine.StateFailed {
					return fmt.Errorf("fail %v: %+v, want applied and failed", failed[i].Receipt, o)
				}
			}
			l.failed.Add(int64(len(failed)))
		}
	}
	return nil
}

// maintainLoop rotates both rings, prunes a claim and a queue slot and, every fourth round, folds
// the counters (so the log holds rows for the rebuilds to meet) until stop is set.
func maintainLoop(ctx context.Context, stop *atomic.Bool, eng *engine.Engine, l engine.Lease) error {
	for round := 0; !stop.Load(); round++ {
		for _, ring := range []engine.Ring{engine.QueueRing, engine.ClaimRing} {
			if _, err := eng.Rotate(ctx, l, ring, 0); err != nil {
				return err
			}
		}
		if _, err := eng.PruneClaimSlot(ctx, l, 50*time.Millisecond); err != nil {
			return err
		}
		if _, err := eng.PruneQueueSlot(ctx, l, 50*time.Millisecond); err != nil {
			return err
		}
		if round%4 != 3 {
			continue
		}
		if _, err := eng.FoldCounters(ctx, l, time.Minute); err != nil {
			return err
		}
	}
	return nil
}

// TestRebuildWaitsForFoldInFlight: a counter fold that has deleted the log but not committed
// its counter updates is waited for whole; the rebuild then sees the fold's result, and counts
// are exact throughout.
func TestRebuildWaitsForFoldInFlight(t *testing.T) {
	t.Parallel()
	b := setup(t)
	l, ok, err := b.eng.LeaseAcquire(b.ctx, "node-a", time.Hour)
	require.NoError(t, err)
	require.True(t, ok)
	for range 3 {
		trafficRound(t, b, l, "q", 20)
		_, err := b.eng.PruneClaimSlot(b.ctx, l, time.Second)
		require.NoError(t, err)
		_, err = b.eng.PruneQueueSlot(b.ctx, l, time.Second)
		require.NoError(t, err)
	}
	var bucket int16
	require.NoError(t, b.pool.QueryRow(b.ctx, `SELECT bucket FROM braid.counter_log LIMIT 1`).Scan(&bucket))
	want := counts(t, b, "q")
	require.Positive(t, want.Completed)

	fold, err := b.pool.Begin(b.ctx)
	require.NoError(t, err)
	defer fold.Rollback(context.Background()) //nolint:errcheck // a no-op after Commit
	var outcome string
	var moved int64
	require.NoError(t, fold.QueryRow(b.ctx, `SELECT * FROM braid.counter_fold(interval '1 hour')`).Scan(&outcome, &moved))
	require.Equal(t, "folded", outcome)

	type result struct {
		r   engine.RebuildResult
		err error
	}
	done := make(chan result, 1)
	go func() {
		r, err := b.eng.RebuildCounters(context.Background(), l, int(bucket), time.Minute)
		done <- result{r, err}
	}()
	require.Eventually(t, func() bool {
		return b.scalar(t, `SELECT count(*) FROM pg_locks WHERE NOT granted`) > 0
	}, 10*time.Second, 5*time.Millisecond, "the rebuild waits for the fold in flight")
	select {
	case r := <-done:
		t.Fatalf("the rebuild finished while a fold was half-way: %+v", r)
	case <-time.After(100 * time.Millisecond):
	}
	require.Equal(t, want, counts(t, b, "q"), "a waiting rebuild does not block or change Counts")
	require.NoError(t, fold.Commit(b.ctx))
	r := <-done
	require.NoError(t, r.err)
	require.Equal(t, "rebuilt", r.r.Outcome)
	require.Zero(t, r.r.LogRows, "the fold had taken the bucket's log rows")
	require.Equal(t, r.r.RowsBefore, r.r.RowsAfter)
	require.Equal(t, want, counts(t, b, "q"))
}

// TestRebuildCountersDropsZeroRows: a job fails, its slot is pruned and folded (failed +1 in the
// counters), then an operator retry writes -1 into a later slot, which is pruned and folded too:
// the job's bucket keeps a zero row for (queue, failed). A rebuild of that bucket drops it and
// folds what the log still holds, and Counts never change.
func TestRebuildCountersDropsZeroRows(t *testing.T) {
	t.Parallel()
	b := setup(t)
	l, ok, err := b.eng.LeaseAcquire(b.ctx, "node-a", time.Hour)
	require.NoError(t, err)
	require.True(t, ok)
	require.NoError(t, b.eng.ConfigureQueue(b.ctx, "z", settings(1, 1, false, time.Hour)))
	res, err := b.eng.Enqueue(b.ctx, job("z"))
	require.NoError(t, err)
	id := res.JobID
	bucket := int(id % 256)
	c := claimOne(t, b, "z")
	out, err := b.eng.Fail(b.ctx, []engine.Failure{{Receipt: c.Receipt, Error: "e", Terminal: true}})
	require.NoError(t, err)
	require.Equal(t, engine.StateFailed, out[0].State)
	rotateBoth(t, b, l)
	retried, err := b.eng.Retry(b.ctx, id) // the -1 lands in the new current slot
	require.NoError(t, err)
	require.True(t, retried.Retried)
	done := claimOne(t, b, "z")
	_, err = b.eng.Complete(b.ctx, []engine.Receipt{done.Receipt})
	require.NoError(t, err)
	rotateBoth(t, b, l)
	for range 2 {
		_, err = b.eng.PruneClaimSlot(b.ctx, l, time.Second)
		require.NoError(t, err)
		p, err := b.eng.PruneQueueSlot(b.ctx, l, time.Second)
		require.NoError(t, err)
		require.Equal(t, "pruned", p.Outcome)
		f, err := b.eng.FoldCounters(b.ctx, l, time.Minute)
		require.NoError(t, err)
		require.Equal(t, "folded", f.Outcome)
	}
	require.Equal(t, engine.Counts{Completed: 1}, counts(t, b, "z"))
	require.Equal(t, int64(0), b.scalar(t, `SELECT n FROM braid.counter WHERE queue = 'z' AND state = 6 AND bucket = $1`, bucket),
		"the failed +1 and the retry's -1 met in one counter row")
	// A later prune's fold still waiting in the log for this bucket.
	b.exec(t, `INSERT INTO braid.counter_log (queue, state, bucket, n) VALUES ('z', 7, $1, 2), ('z', 7, $1, 1)`, bucket)

	r, err := b.eng.RebuildCounters(b.ctx, l, bucket, time.Minute)
	require.NoError(t, err)
	require.Equal(t, engine.RebuildResult{Outcome: "rebuilt", Bucket: bucket, LogRows: 2, RowsBefore: 2, RowsAfter: 2}, r)
	require.Equal(t, engine.Counts{Completed: 1, Cancelled: 3}, counts(t, b, "z"), "a rebuild never changes a count")
	var rows []string
	got, err := b.pool.Query(b.ctx, `SELECT state || '=' || n FROM braid.counter WHERE bucket = $1 ORDER BY state`, bucket)
	require.NoError(t, err)
	for got.Next() {
		var s string
		require.NoError(t, got.Scan(&s))
		rows = append(rows, s)
	}
	require.NoError(t, got.Err())
	require.Equal(t, []string{"5=1", "7=3"}, rows, "one row per (queue, state), the zero row dropped")
	require.Zero(t, b.scalar(t, `SELECT count(*) FROM braid.counter_log`))

	r, err = b.eng.RebuildCounters(b.ctx, l, (bucket+1)%256, time.Minute)
	require.NoError(t, err)
	require.Equal(t, engine.RebuildResult{Outcome: "nothing", Bucket: (bucket + 1) % 256}, r)
}

func rotateBoth(t *testing.T, b *bundle, l engine.Lease) {
	t.Helper()
	for _, ring := range []engine.Ring{engine.QueueRing, engine.ClaimRing} {
		r, err := b.eng.Rotate(b.ctx, l, ring, 0)
		require.NoError(t, err)
		require.Equal(t, "rotated", r.Outcome, "rotate %s", ring)
	}
}

// TestRebuildAndTrimStandDownWhilePinned: both delete rows, so while a backend holds a snapshot
// open they write nothing; once it is released they catch up.
func TestRebuildAndTrimStandDownWhilePinned(t *testing.T) {
	t.Parallel()
	b := setup(t)
	l, ok, err := b.eng.LeaseAcquire(b.ctx, "node-a", time.Hour)
	require.NoError(t, err)
	require.True(t, ok)
	for range 20 {
		trafficRound(t, b, l, "q", 2)
		_, err := b.eng.PruneClaimSlot(b.ctx, l, time.Second)
		require.NoError(t, err)
		_, err = b.eng.PruneQueueSlot(b.ctx, l, time.Second)
		require.NoError(t, err)
	}
	logRows := b.scalar(t, `SELECT count(*) FROM braid.counter_log`)
	require.Positive(t, logRows)
	ledgerRows := b.scalar(t, `SELECT count(*) FROM braid.ring_gen`)

	pin, err := b.pool.Begin(b.ctx)
	require.NoError(t, err)
	defer pin.Rollback(context.Background()) //nolint:errcheck // released below
	_, err = pin.Exec(b.ctx, `SET TRANSACTION ISOLATION LEVEL REPEATABLE READ`)
	require.NoError(t, err)
	_, err = pin.Exec(b.ctx, `SELECT count(*) FROM braid.queue`)
	require.NoError(t, err)
	time.Sleep(300 * time.Millisecond)

	all, err := b.eng.RebuildAllCounters(b.ctx, l, 100*time.Millisecond)
	require.NoError(t, err)
	require.Equal(t, engine.RebuildResult{Outcome: "standing_down", Bucket: 0}, all, "the walk stops at the first bucket")
	tr, err := b.eng.TrimRingLedger(b.ctx, l, 1, 100*time.Millisecond)
	require.NoError(t, err)
	require.Equal(t, engine.TrimResult{Outcome: "standing_down"}, tr)
	require.Equal(t, logRows, b.scalar(t, `SELECT count(*) FROM braid.counter_log`))
	require.Equal(t, ledgerRows, b.scalar(t, `SELECT count(*) FROM braid.ring_gen`))

	require.NoError(t, pin.Rollback(b.ctx))
	all, err = b.eng.RebuildAllCounters(b.ctx, l, 100*time.Millisecond)
	require.NoError(t, err)
	require.Equal(t, "rebuilt", all.Outcome)
	require.Equal(t, logRows, all.LogRows)
	tr, err = b.eng.TrimRingLedger(b.ctx, l, 1, 100*time.Millisecond)
	require.NoError(t, err)
	require.Equal(t, "trimmed", tr.Outcome)
	require.Equal(t, engine.Counts{Completed: 40}, counts(t, b, "q"))
}

// TestTrimRingLedger: a paused backlog and a busy queue over two and a half wraps of the queue
// ring, with rotate, prune and a ledger trim between rounds. The ledger keeps exactly the newest
// max(keep, slots) generations of each ring, generations keep counting up from where they were,
// rotation and prune keep working, the busy queue's counts stay exact and every paused job is
// claimable, in order, at the end.
func TestTrimRingLedger(t *testing.T) {
	t.Parallel()
	b := setup(t)
	l, ok, err := b.eng.LeaseAcquire(b.ctx, "node-a", time.Hour)
	require.NoError(t, err)
	require.True(t, ok)
	pausedBacklog(t, b, 30)

	ledger := func(ring string) (rows, oldest, newest int64) {
		require.NoError(t, b.pool.QueryRow(b.ctx, `SELECT count(*), min(generation), max(generation) FROM braid.ring_gen WHERE ring = $1`, ring).
			Scan(&rows, &oldest, &newest))
		return rows, oldest, newest
	}
	const rounds = 40
	for round := 1; round <= rounds; round++ {
		trafficRound(t, b, l, "busy", 10)
		_, err := b.eng.PruneClaimSlot(b.ctx, l, time.Second)
		require.NoError(t, err)
		_, err = b.eng.PruneQueueSlot(b.ctx, l, time.Second)
		require.NoError(t, err)
		keep := 20 // first half: more than a ring's worth; second half: the minimum
		if round > rounds/2 {
			keep = 1
		}
		tr, err := b.eng.TrimRingLedger(b.ctx, l, keep, time.Minute)
		require.NoError(t, err)
		require.NotEqual(t, "standing_down", tr.Outcome)
		for ring, slots := range map[string]int64{"queue": 16, "claim": 8} {
			rows, oldest, newest := ledger(ring)
			require.Equal(t, int64(round), newest, "round %d: ring %s keeps rotating, generations keep counting", round, ring)
			kept := min(newest+1, max(int64(keep), slots))
			require.Equal(t, kept, rows, "round %d: ring %s keeps the newest max(keep %d, slots %d)", round, ring, keep, slots)
			require.Equal(t, newest-kept+1, oldest, "round %d: ring %s", round, ring)
		}
	}
	require.Equal(t, engine.Counts{Completed: rounds * 10}, counts(t, b, "busy"))
	require.Equal(t, engine.Counts{Available: 30}, counts(t, b, "paused"))
	got := drainPaused(t, b)
	require.Len(t, got, 30)
	for i, v := range got {
		require.Equal(t, i, v, "paused jobs come out in order")
	}
	require.Equal(t, engine.Counts{Completed: 30}, counts(t, b, "paused"))
}

func TestRebuildAndTrimRefuseBadInput(t *testing.T) {
	t.Parallel()
	b := setup(t)
	l, ok, err := b.eng.LeaseAcquire(b.ctx, "node-a", time.Hour)
	require.NoError(t, err)
	require.True(t, ok)
	_, err = b.eng.RebuildCounters(b.ctx, l, 256, 0)
	require.ErrorContains(t, err, "invalid bucket 256: must be 0..255")
	require.ErrorContains(t, err, `invalid max_pin "0s": must be > 0`)
	_, err = b.eng.RebuildCounters(b.ctx, l, -1, time.Second)
	require.ErrorContains(t, err, "invalid bucket -1")
	_, err = b.eng.RebuildAllCounters(b.ctx, l, -time.Second)
	require.ErrorContains(t, err, "invalid max_pin")
	_, err = b.eng.TrimRingLedger(b.ctx, l, 0, 0)
	require.ErrorContains(t, err, "invalid keep 0: must be >= 1")
	require.ErrorContains(t, err, "invalid max_pin")

	lost := engine.Lease{Holder: l.Holder, Epoch: l.Epoch + 1}
	_, err = b.eng.RebuildCounters(b.ctx, lost, 3, time.Second)
	require.ErrorIs(t, err, engine.ErrLeaseLost)
	require.ErrorContains(t, err, "rebuild counters of bucket 3")
	_, err = b.eng.TrimRingLedger(b.ctx, lost, 1, time.Second)
	require.ErrorIs(t, err, engine.ErrLeaseLost)
}
