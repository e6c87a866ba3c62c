package engine_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/braidq/braid/engine"
)

func TestMaintenanceLease(t *testing.T) {
	t.Parallel()
	b := setup(t)

	a, ok, err := b.eng.LeaseAcquire(b.ctx, "node-a", 300*time.Millisecond)
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, engine.Lease{Holder: "node-a", Epoch: 1}, a)

	_, ok, err = b.eng.LeaseAcquire(b.ctx, "node-b", time.Minute)
	require.NoError(t, err)
	require.False(t, ok, "a live lease is not taken over")
	again, ok, err := b.eng.LeaseAcquire(b.ctx, "node-a", 300*time.Millisecond)
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, a, again, "the holder re-acquiring a live lease keeps its epoch")
	renewed, err := b.eng.LeaseRenew(b.ctx, a, 300*time.Millisecond)
	require.NoError(t, err)
	require.True(t, renewed)

	time.Sleep(400 * time.Millisecond) // node-a stops renewing: the lease expires by the database clock
	bl, ok, err := b.eng.LeaseAcquire(b.ctx, "node-b", time.Minute)
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, int64(2), bl.Epoch, "a takeover starts a new epoch")

	renewed, err = b.eng.LeaseRenew(b.ctx, a, time.Minute)
	require.NoError(t, err)
	require.False(t, renewed, "the old holder learns it lost the lease")
	_, err = b.eng.Rotate(b.ctx, a, engine.QueueRing, 0)
	require.ErrorIs(t, err, engine.ErrLeaseLost, "a maintenance step under a lost lease writes nothing")
	require.Equal(t, int64(1), b.scalar(t, `SELECT count(*) FROM braid.ring_gen WHERE ring = 'queue'`))
}

// TestLeaseTakeoverWaitsForStepsInFlight: a step that checked the lease holds it share-locked to
// commit, so a takeover cannot commit while the old holder's step still runs.
func TestLeaseTakeoverWaitsForStepsInFlight(t *testing.T) {
	t.Parallel()
	b := setup(t)
	a, ok, err := b.eng.LeaseAcquire(b.ctx, "node-a", 200*time.Millisecond)
	require.NoError(t, err)
	require.True(t, ok)

	tx, err := b.pool.Begin(b.ctx)
	require.NoError(t, err)
	defer tx.Rollback(context.Background()) //nolint:errcheck // a no-op after Commit
	var held bool
	require.NoError(t, tx.QueryRow(b.ctx, `SELECT braid.maintenance_lease_check($1, $2)`, a.Holder, a.Epoch).Scan(&held))
	require.True(t, held)

	time.Sleep(300 * time.Millisecond) // the lease expires while the step still runs
	type result struct {
		l   engine.Lease
		ok  bool
		err error
	}
	done := make(chan result, 1)
	go func() {
		l, ok, err := b.eng.LeaseAcquire(context.Background(), "node-b", time.Minute)
		done <- result{l, ok, err}
	}()
	require.Eventually(t, func() bool {
		return b.scalar(t, `SELECT count(*) FROM pg_locks WHERE locktype = 'tuple' OR (locktype = 'transactionid' AND NOT granted)`) > 0
	}, 10*time.Second, 5*time.Millisecond, "the takeover waits for the step in flight")
	select {
	case r := <-done:
		t.Fatalf("the takeover finished while the old holder's step was in flight: %+v", r)
	case <-time.After(100 * time.Millisecond):
	}
	require.NoError(t, tx.Commit(b.ctx))
	r := <-done
	require.NoError(t, r.err)
	require.True(t, r.ok)
	require.Equal(t, int64(2), r.l.Epoch)
}

func TestRotate(t *testing.T) {
	t.Parallel()
	b := setup(t)
	l, ok, err := b.eng.LeaseAcquire(b.ctx, "node-a", time.Minute)
	require.NoError(t, err)
	require.True(t, ok)

	res, err := b.eng.Rotate(b.ctx, l, engine.QueueRing, 0)
	require.NoError(t, err)
	require.Equal(t, engine.RotateResult{Outcome: "idle", Generation: 0, Slot: 0}, res, "an idle ring does not churn the ledger")

	_, err = b.eng.Enqueue(b.ctx, job("q"))
	require.NoError(t, err)
	res, err = b.eng.Rotate(b.ctx, l, engine.QueueRing, time.Hour)
	require.NoError(t, err)
	require.Equal(t, "young", res.Outcome)

	for gen := 1; gen <= 15; gen++ {
		res, err = b.eng.Rotate(b.ctx, l, engine.QueueRing, 0)
		require.NoError(t, err)
		require.Equal(t, engine.RotateResult{Outcome: "rotated", Generation: int64(gen), Slot: gen}, res)
		_, err = b.eng.Enqueue(b.ctx, job("q"))
		require.NoError(t, err)
		require.Equal(t, int64(1), b.scalar(t, `SELECT count(*) FROM braid.ready WHERE qslot = $1`, gen), "enqueues land in the new current slot")
	}
	res, err = b.eng.Rotate(b.ctx, l, engine.QueueRing, 0)
	require.NoError(t, err)
	require.Equal(t, engine.RotateResult{Outcome: "next_slot_busy", Generation: 15, Slot: 15}, res, "a full ring waits for prune")

	cs := claimAll(t, b, "q", 100)
	require.Len(t, cs, 1, "one claim per slot: the claim stops at the slot boundary")
	res, err = b.eng.Rotate(b.ctx, l, engine.ClaimRing, 0)
	require.NoError(t, err)
	require.Equal(t, engine.RotateResult{Outcome: "rotated", Generation: 1, Slot: 1}, res)
	cs2 := claimAll(t, b, "q", 100)
	require.Len(t, cs2, 1)
	require.Equal(t, int16(1), cs2[0].Receipt.ClaimSlot, "claims land in the new claim slot")
	out, err := b.eng.Complete(b.ctx, receipts(append(cs, cs2...)))
	require.NoError(t, err)
	require.Equal(t, []engine.Outcome{engine.Applied, engine.Applied}, out)

	_, err = b.eng.Rotate(b.ctx, l, engine.Ring("other"), 0)
	require.ErrorContains(t, err, `invalid ring "other"`)
}

func TestPruneClaimSlot(t *testing.T) {
	t.Parallel()
	b := setup(t)
	l, ok, err := b.eng.LeaseAcquire(b.ctx, "node-a", time.Minute)
	require.NoError(t, err)
	require.True(t, ok)
	res, err := b.eng.PruneClaimSlot(b.ctx, l, 10*time.Millisecond)
	require.NoError(t, err)
	require.Equal(t, engine.PruneResult{Outcome: "nothing", Slot: -1}, withoutTimings(res))

	// Slot 0: one completed attempt and one long-running one; slot 1: current.
	_, err = b.eng.EnqueueMany(b.ctx, []engine.Job{job("q"), job("q")})
	require.NoError(t, err)
	done, long := claimOne(t, b, "q"), claimOne(t, b, "q")
	_, err = b.eng.Complete(b.ctx, []engine.Receipt{done.Receipt})
	require.NoError(t, err)
	rot, err := b.eng.Rotate(b.ctx, l, engine.ClaimRing, 0)
	require.NoError(t, err)
	require.Equal(t, "rotated", rot.Outcome)

	res, err = b.eng.PruneClaimSlot(b.ctx, l, 10*time.Millisecond)
	require.NoError(t, err)
	require.Equal(t, engine.PruneResult{Outcome: "skipped", Slot: 0, Open: 1}, withoutTimings(res), "an open attempt keeps its slot")

	// A writer holding the slot's partitions makes prune report blocked instead of queueing.
	tx, err := b.pool.Begin(b.ctx)
	require.NoError(t, err)
	_, err = tx.Exec(b.ctx, `LOCK TABLE braid.closure_0 IN ROW EXCLUSIVE MODE`)
	require.NoError(t, err)
	n, err := b.eng.Rehome(b.ctx, 0, 10)
	require.NoError(t, err)
	require.Equal(t, 1, n)
	res, err = b.eng.PruneClaimSlot(b.ctx, l, 10*time.Millisecond)
	require.NoError(t, err)
	require.Equal(t, engine.PruneResult{Outcome: "blocked", Slot: 0}, withoutTimings(res))
	require.GreaterOrEqual(t, res.LockWait, 10*time.Millisecond, "blocked after waiting out its lock_timeout")
	require.NoError(t, tx.Rollback(b.ctx))

	res, err = b.eng.PruneClaimSlot(b.ctx, l, 10*time.Millisecond)
	require.NoError(t, err)
	require.Equal(t, engine.PruneResult{Outcome: "pruned", Slot: 0}, withoutTimings(res))
	require.Positive(t, res.Truncate)
	require.Positive(t, res.Commit)
	require.Zero(t, b.scalar(t, `SELECT count(*) FROM braid.claim_batch_0`)+b.scalar(t, `SELECT count(*) FROM braid.closure_0`))

	// Everything still resolves after the slot is gone.
	require.Equal(t, engine.StateCompleted, state(t, b, done.Receipt.JobID).State)
	require.Equal(t, engine.StateRunning, state(t, b, long.Receipt.JobID).State)
	require.Equal(t, engine.Counts{Running: 1, Completed: 1}, counts(t, b, "q"))
	out, err := b.eng.Complete(b.ctx, []engine.Receipt{done.Receipt, long.Receipt})
	require.NoError(t, err)
	require.Equal(t, []engine.Outcome{engine.Stale, engine.Applied}, out, "the long attempt's old receipt still ends it after its slot was pruned")
	require.Equal(t, engine.StateCompleted, state(t, b, long.Receipt.JobID).State)
	require.Equal(t, engine.Counts{Completed: 2}, counts(t, b, "q"))

	// The pruned slot is empty again: rotation can reuse it once the ring comes round.
	res, err = b.eng.PruneClaimSlot(b.ctx, l, 10*time.Millisecond)
	require.NoError(t, err)
	require.Equal(t, "nothing", res.Outcome)
}

// TestPausedQueueDoesNotPinTheRing: one paused queue keeps a backlog while another runs for many
// ring wraps with maintenance (rotate, prune) between rounds. The ring keeps rotating, the hot
// tables collect no dead tuples, the busy queue's counts stay exact across prunes, and every
// paused job is claimable, in order, once the queue resumes.
func TestPausedQueueDoesNotPinTheRing(t *testing.T) {
	t.Parallel()
	b := setup(t)
	l, ok, err := b.eng.LeaseAcquire(b.ctx, "node-a", time.Hour)
	require.NoError(t, err)
	require.True(t, ok)
	pausedBacklog(t, b, 100)

	const rounds = 40 // two and a half wraps of the 16-slot queue ring
	carried, pruned := int64(0), 0
	for range rounds {
		trafficRound(t, b, l, "busy", 50)
		res, err := b.eng.PruneClaimSlot(b.ctx, l, time.Second)
		require.NoError(t, err)
		require.NotEqual(t, "skipped", res.Outcome)
		res, err = b.eng.PruneQueueSlot(b.ctx, l, time.Second)
		require.NoError(t, err)
		require.NotEqual(t, "skipped", res.Outcome)
		if res.Outcome == "pruned" {
			pruned++
			carried += res.Carried
		}
	}
	require.Equal(t, int64(rounds), b.scalar(t, `SELECT max(generation) FROM braid.ring_gen WHERE ring = 'queue'`), "the ring kept rotating")
	require.Greater(t, pruned, rounds-16, "slots were reclaimed as the ring wrapped")
	require.Positive(t, carried, "the paused backlog was carried forward")
	require.Equal(t, engine.Counts{Completed: rounds * 50}, counts(t, b, "busy"), "counts stay exact across prunes")
	require.Equal(t, engine.Counts{Available: 100}, counts(t, b, "paused"))

	_, err = b.pool.Exec(b.ctx, `SELECT pg_stat_force_next_flush()`)
	require.NoError(t, err)
	time.Sleep(1100 * time.Millisecond)
	require.Zero(t, b.scalar(t, `SELECT coalesce(sum(n_dead_tup), 0) FROM pg_stat_user_tables
		WHERE schemaname = 'braid' AND relname ~ '^(ready|tombstone|emission|completion|terminal|count_delta|claim_batch|closure)_'`),
		"reclamation is by TRUNCATE: no dead tuples on the hot tables")

	got := drainPaused(t, b)
	want := make([]int, 100)
	for i := range want {
		want[i] = i
	}
	require.Equal(t, want, got, "every paused job is claimable, in order, exactly once")
	require.Equal(t, engine.Counts{Completed: 100}, counts(t, b, "paused"))
}

// TestPinnedHorizon: a backend idle in a transaction with a snapshot pins the MVCC horizon for
// the whole time. Maintenance keeps running without leaving dead tuples behind: rotation and
// prune (TRUNCATE, append-only folds into counter_log) go on, the counter fold (UPDATE and
// DELETE) stands down; once the pin is released the fold catches up and Counts never change.
func TestPinnedHorizon(t *testing.T) {
	t.Parallel()
	b := setup(t)
	l, ok, err := b.eng.LeaseAcquire(b.ctx, "node-a", time.Hour)
	require.NoError(t, err)
	require.True(t, ok)

	pin, err := b.pool.Begin(b.ctx)
	require.NoError(t, err)
	defer pin.Rollback(context.Background()) //nolint:errcheck // released below
	_, err = pin.Exec(b.ctx, `SET TRANSACTION ISOLATION LEVEL REPEATABLE READ`)
	require.NoError(t, err)
	_, err = pin.Exec(b.ctx, `SELECT count(*) FROM braid.queue`) // takes and keeps the snapshot
	require.NoError(t, err)
	time.Sleep(300 * time.Millisecond)

	for range 20 {
		trafficRound(t, b, l, "q", 2)
		_, err := b.eng.PruneClaimSlot(b.ctx, l, time.Second)
		require.NoError(t, err)
		_, err = b.eng.PruneQueueSlot(b.ctx, l, time.Second)
		require.NoError(t, err)
		res, err := b.eng.FoldCounters(b.ctx, l, 100*time.Millisecond)
		require.NoError(t, err)
		require.Equal(t, "standing_down", res.Outcome, "no UPDATE/DELETE fold while the horizon is pinned")
	}
	require.Positive(t, b.scalar(t, `SELECT count(*) FROM braid.counter_log`), "prune kept folding counts, append-only")
	require.Equal(t, engine.Counts{Completed: 40}, counts(t, b, "q"))
	_, err = b.pool.Exec(b.ctx, `SELECT pg_stat_force_next_flush()`)
	require.NoError(t, err)
	time.Sleep(1100 * time.Millisecond)
	require.Zero(t, b.scalar(t, `SELECT coalesce(sum(n_dead_tup), 0) FROM pg_stat_user_tables WHERE schemaname = 'braid'`),
		"maintenance under a pinned horizon left no dead tuples anywhere")

	require.NoError(t, pin.Rollback(b.ctx))
	res, err := b.eng.FoldCounters(b.ctx, l, 100*time.Millisecond)
	require.NoError(t, err)
	require.Equal(t, "folded", res.Outcome, "the fold catches up once the pin is released")
	require.Positive(t, res.Rows)
	require.Zero(t, b.scalar(t, `SELECT count(*) FROM braid.counter_log`))
	require.Equal(t, engine.Counts{Completed: 40}, counts(t, b, "q"), "folding never changes a count")
	res, err = b.eng.FoldCounters(b.ctx, l, 100*time.Millisecond)
	require.NoError(t, err)
	require.Equal(t, engine.FoldResult{Outcome: "nothing"}, res)
}

// pausedBacklog enqueues n jobs on queue "paused" (one lane), with args {"i": 0..n-1}: a
// backlog nobody claims while other traffic makes the rings wrap.
func pausedBacklog(t *testing.T, b *bundle, n int) {
	t.Helper()
	require.NoError(t, b.eng.ConfigureQueue(b.ctx, "paused", settings(1, 5, true, time.Minute)))
	jobs := make([]engine.Job, n)
	for i := range jobs {
		jobs[i] = job("paused")
		jobs[i].Args = []byte(fmt.Sprintf(`{"i":%d}`, i))
	}
	_, err := b.eng.EnqueueMany(b.ctx, jobs)
	require.NoError(t, err)
}

// drainPaused claims and completes queue "paused" until it is empty and returns the jobs' "i"
// args in the order they were claimed.
func drainPaused(t *testing.T, b *bundle) []int {
	t.Helper()
	var got []int
	for {
		cs := claimAll(t, b, "paused", 7)
		if len(cs) == 0 {
			return got
		}
		for _, c := range cs {
			var a struct{ I int }
			require.NoError(t, json.Unmarshal(c.Args, &a))
			got = append(got, a.I)
		}
		_, err := b.eng.Complete(b.ctx, receipts(cs))
		require.NoError(t, err)
	}
}

// trafficRound enqueues n jobs, claims and completes everything available in the queue, and
// rotates both rings, as one round of a busy shard between maintenance passes.
func trafficRound(t *testing.T, b *bundle, l engine.Lease, queue string, n int) {
	t.Helper()
	jobs := make([]engine.Job, n)
	for i := range jobs {
		jobs[i] = job(queue)
	}
	_, err := b.eng.EnqueueMany(b.ctx, jobs)
	require.NoError(t, err)
	for {
		cs := claimAll(t, b, queue, 100)
		if len(cs) == 0 {
			break
		}
		_, err := b.eng.Complete(b.ctx, receipts(cs))
		require.NoError(t, err)
	}
	for _, ring := range []engine.Ring{engine.QueueRing, engine.ClaimRing} {
		_, err := b.eng.Rotate(b.ctx, l, ring, 0)
		require.NoError(t, err)
	}
}

// adminConn connects to the test's database as the superuser (settings a non-superuser cannot
// change, e.g. track_functions).
func adminConn(t *testing.T, b *bundle) *pgx.Conn {
	t.Helper()
	cfg, err := pgx.ParseConfig(b.dsn)
	require.NoError(t, err)
	conn, err := pgx.Connect(b.ctx, b.cluster.AdminDSN(cfg.Database))
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// TestPruneCarryIsBoundedByPendingRows: the queue prune's work under the slot's locks grows
// with the rows it carries, not with the slot's size. A slot of 3000 ready rows, 10 of them
// still pending (one of those cancelled), with planner statistics of the filled partitions
// (what autovacuum gives a busy shard, and what turned version 7's carry into a probe of the
// tombstones and the lane cursor per ready row of the slot): the prune carries the 9 and calls
// braid.tombstones and braid.lane_cursor once per lane, counted by the server
// (track_functions) in the prune's own transaction.
func TestPruneCarryIsBoundedByPendingRows(t *testing.T) {
	t.Parallel()
	b := setup(t)
	require.NoError(t, b.eng.ConfigureQueue(b.ctx, "q", settings(1, 5, true, time.Minute)))
	for range 3 {
		_, err := b.eng.EnqueueMany(b.ctx, benchJobs("q", 1000))
		require.NoError(t, err)
	}
	for done := 0; done < 2990; {
		cs := claimAll(t, b, "q", min(256, 2990-done))
		require.NotEmpty(t, cs)
		_, err := b.eng.Complete(b.ctx, receipts(cs))
		require.NoError(t, err)
		done += len(cs)
	}
	pending := b.scalar(t, `SELECT max(job_id) FROM braid.ready_0`)
	res, err := b.eng.Cancel(b.ctx, pending)
	require.NoError(t, err)
	require.True(t, res.Cancelled)
	b.exec(t, `DO $$ DECLARE r record; BEGIN
		FOR r IN SELECT c.relname FROM pg_class c JOIN pg_inherits i ON i.inhrelid = c.oid
		         WHERE c.relnamespace = 'braid'::regnamespace LOOP
			EXECUTE format('ANALYZE braid.%I', r.relname);
		END LOOP; END $$`)
	l, ok, err := b.eng.LeaseAcquire(b.ctx, "node-a", time.Hour)
	require.NoError(t, err)
	require.True(t, ok)
	for _, ring := range []engine.Ring{engine.QueueRing, engine.ClaimRing} {
		rot, err := b.eng.Rotate(b.ctx, l, ring, 0)
		require.NoError(t, err)
		require.Equal(t, "rotated", rot.Outcome)
	}

	admin := adminConn(t, b)
	tx, err := admin.Begin(b.ctx)
	require.NoError(t, err)
	defer tx.Rollback(context.Background()) //nolint:errcheck // a no-op after Commit
	_, err = tx.Exec(b.ctx, `SET LOCAL track_functions = 'pl'`)
	require.NoError(t, err)
	var (
		outcome                string
		slot                   int16
		carried, tombs, cursor int64
	)
	require.NoError(t, tx.QueryRow(b.ctx, `SELECT p.outcome, p.slot, p.carried FROM braid.queue_slot_prune('1s') p`).Scan(&outcome, &slot, &carried))
	require.NoError(t, tx.QueryRow(b.ctx, `SELECT
		coalesce(pg_stat_get_xact_function_calls('braid.tombstones(integer,bigint,bigint)'::regprocedure), 0),
		coalesce(pg_stat_get_xact_function_calls('braid.lane_cursor(integer)'::regprocedure), 0)`).Scan(&tombs, &cursor))
	require.NoError(t, tx.Commit(b.ctx))
	require.Equal(t, "pruned", outcome)
	require.Equal(t, int16(0), slot)
	require.Equal(t, int64(9), carried, "the pending rows, less the cancelled one")
	require.LessOrEqual(t, tombs, int64(1), "one tombstone read per lane, not per ready row")
	require.LessOrEqual(t, cursor, int64(1), "one cursor read per lane, not per ready row")

	cs := claimAll(t, b, "q", 100)
	require.Len(t, cs, 9, "the carried rows are claimable, the cancelled one is not")
	require.Less(t, cs[len(cs)-1].Receipt.JobID, pending)
	_, err = b.eng.Complete(b.ctx, receipts(cs))
	require.NoError(t, err)
	require.Equal(t, engine.Counts{Completed: 2999, Cancelled: 1}, counts(t, b, "q"))
}

// TestPruneNeverHoldsAPartitionWhileWaiting: a writer holds one partition of a sealed claim
// slot (closure_0) for longer than the prune's lock timeout. While the prune tries for the slot,
// the slot's other partition (claim_batch_0) stays readable at once: the prune never keeps one
// partition ACCESS EXCLUSIVE while it waits for another (version 6's slot_lock kept
// claim_batch_0 for the whole timeout). The prune reports blocked after its timeout, and
// prunes once the writer is gone.
func TestPruneNeverHoldsAPartitionWhileWaiting(t *testing.T) {
	t.Parallel()
	b := setup(t)
	l, ok, err := b.eng.LeaseAcquire(b.ctx, "node-a", time.Hour)
	require.NoError(t, err)
	require.True(t, ok)
	trafficRound(t, b, l, "q", 10)

	writer, err := b.pool.Begin(b.ctx)
	require.NoError(t, err)
	defer writer.Rollback(context.Background()) //nolint:errcheck // released below
	_, err = writer.Exec(b.ctx, `LOCK TABLE braid.closure_0 IN ROW EXCLUSIVE MODE`)
	require.NoError(t, err)

	const timeout = 3 * time.Second
	type result struct {
		res engine.PruneResult
		err error
	}
	done := make(chan result, 1)
	go func() {
		res, err := b.eng.PruneClaimSlot(b.ctx, l, timeout)
		done <- result{res, err}
	}()
	require.Eventually(t, func() bool {
		return b.scalar(t, `SELECT count(*) FROM pg_stat_activity
			WHERE query LIKE '%claim_slot_prune%' AND state = 'active' AND pid <> pg_backend_pid()
			  AND clock_timestamp() - query_start > interval '200 ms'`) == 1
	}, 10*time.Second, 5*time.Millisecond, "the prune is trying for the slot's locks")

	reader, err := b.pool.Acquire(b.ctx)
	require.NoError(t, err)
	defer reader.Release()
	for range 5 {
		tx, err := reader.Begin(b.ctx)
		require.NoError(t, err)
		_, err = tx.Exec(b.ctx, `SET LOCAL lock_timeout = '500ms'`)
		require.NoError(t, err)
		var n int64
		require.NoError(t, tx.QueryRow(b.ctx, `SELECT count(*) FROM braid.claim_batch_0`).Scan(&n),
			"claim_batch_0 is not held while the prune waits for closure_0")
		require.Positive(t, n)
		require.NoError(t, tx.Rollback(b.ctx))
		time.Sleep(50 * time.Millisecond)
	}
	select {
	case r := <-done:
		t.Fatalf("the prune ended while the writer held closure_0: %+v, %v", r.res, r.err)
	default:
	}

	r := <-done
	require.NoError(t, r.err)
	require.Equal(t, engine.PruneResult{Outcome: "blocked", Slot: 0}, withoutTimings(r.res))
	require.GreaterOrEqual(t, r.res.LockWait, timeout, "it tried for the whole lock timeout")
	require.NoError(t, writer.Rollback(b.ctx))
	res, err := b.eng.PruneClaimSlot(b.ctx, l, timeout)
	require.NoError(t, err)
	require.Equal(t, engine.PruneResult{Outcome: "pruned", Slot: 0}, withoutTimings(res))
}
