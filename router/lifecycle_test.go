package router_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/braidq/braid/engine"
	"github.com/braidq/braid/health"
	"github.com/braidq/braid/router"
)

// TestJobOperations covers the operator's job operations, which go to the shard in the job id,
// over one world of three shards; every subtest uses queues of its own.
func TestJobOperations(t *testing.T) {
	t.Parallel()
	w := newWorld(t, health.BreakerSettings{})

	t.Run("cancel, discard and retry reach the job's own shard after its queue moved; dead letters list over both shards", func(t *testing.T) {
		t.Parallel()
		ctx := t.Context()
		const q = "ops-moved"
		cl := w.client(t, router.Config{Pins: map[string]int16{q: 1}})
		mover := w.client(t, router.Config{})
		var before []int64
		for range 3 {
			res, err := cl.Insert(ctx, EmailArgs{To: "before"}, &router.InsertOpts{Queue: q})
			require.NoError(t, err)
			require.Equal(t, 1, res.ShardID)
			before = append(before, res.JobID)
		}

		// Move the queue to shard 2 as the rebalancer does; shard 1 no longer takes its jobs.
		_, err := w.cat.Update(ctx, q, 1, router.Entry{ShardID: 2, Epoch: 2, State: router.EntryMoving, DrainFrom: 1})
		require.NoError(t, err)
		_, err = mover.FenceSeal(ctx, 1, q, 2, engine.FenceDraining, 2)
		require.NoError(t, err)
		_, err = mover.FenceOpen(ctx, 2, q, 2)
		require.NoError(t, err)
		_, err = w.cat.Update(ctx, q, 2, router.Entry{ShardID: 2, Epoch: 2, State: router.EntryDraining, DrainFrom: 1})
		require.NoError(t, err)
		require.NoError(t, cl.Refresh(ctx))
		home, ok := cl.Lookup(q)
		require.True(t, ok)
		require.Equal(t, 2, home.ShardID)
		moved, err := cl.Insert(ctx, EmailArgs{To: "after"}, &router.InsertOpts{Queue: q})
		require.NoError(t, err)
		require.Equal(t, 2, moved.ShardID)

		a, b := before[0], before[1]
		cancelled, err := cl.JobCancel(ctx, a)
		require.NoError(t, err)
		require.Equal(t, router.CancelResult{Cancelled: true, Previous: engine.StateAvailable}, cancelled)
		require.Equal(t, engine.StateCancelled, jobState(t, cl, a))
		again, err := cl.JobCancel(ctx, a)
		require.NoError(t, err)
		require.Equal(t, router.CancelResult{Cancelled: false, Previous: engine.StateCancelled}, again, "a finished job is left alone")
		retried, err := cl.JobRetry(ctx, a)
		require.NoError(t, err)
		require.Equal(t, router.RetryResult{Retried: true, Previous: engine.StateCancelled}, retried)
		require.Equal(t, engine.StateAvailable, jobState(t, cl, a))
		_, err = cl.JobRetry(ctx, b)
		require.ErrorIs(t, err, router.ErrNotRetryable, "an available job is not retried")

		discarded, err := cl.JobDiscard(ctx, b)
		require.NoError(t, err)
		require.Equal(t, router.CancelResult{Cancelled: true, Previous: engine.StateAvailable}, discarded)
		require.Equal(t, engine.StateDeadLettered, jobState(t, cl, b))
		_, err = cl.JobDiscard(ctx, moved.JobID)
		require.NoError(t, err)
		_, err = cl.JobCancel(ctx, before[2]+1_000_000)
		require.ErrorIs(t, err, router.ErrNotFound)

		st, err := cl.QueueStats(ctx, q)
		require.NoError(t, err)
		require.Equal(t, map[int]router.Counts{
			1: {Available: 2, DeadLettered: 1}, // a (retried) and before[2]; b
			2: {DeadLettered: 1},               // the job inserted after the move
		}, st.ByShard, "every operation acted on the shard in the job id")

		// One page holds both shards' letters, newest first; pages of one walk them in order.
		list, err := cl.DeadLetters(ctx, q, 10, nil)
		require.NoError(t, err)
		require.Equal(t, []int64{moved.JobID, b}, letterIDs(list.Letters))
		require.Empty(t, list.Missing)
		var paged []int64
		var after *router.DeadLetter
		for range 3 {
			page, err := cl.DeadLetters(ctx, q, 1, after)
			require.NoError(t, err)
			if len(page.Letters) == 0 {
				break
			}
			require.Len(t, page.Letters, 1)
			paged = append(paged, page.Letters[0].JobID)
			after = &page.Letters[0]
		}
		require.Equal(t, []int64{moved.JobID, b}, paged)

		// Both letters, one per shard, come back in one call.
		back, err := cl.DeadLetterRetry(ctx, []int64{b, moved.JobID})
		require.NoError(t, err)
		require.Equal(t, []*router.DeadLetterRetryResult{{JobID: b, Retried: true}, {JobID: moved.JobID, Retried: true}}, back)
		require.Equal(t, int64(3), w.available(t, 1, q))
		require.Equal(t, int64(1), w.available(t, 2, q))
	})

	t.Run("dead-letter retry and purge span shards in one call, results in input order", func(t *testing.T) {
		t.Parallel()
		ctx := t.Context()
		queues := map[int]string{1: "ops-dl-1", 2: "ops-dl-2"}
		cl := w.client(t, router.Config{Pins: map[string]int16{queues[1]: 1, queues[2]: 2}})
		var params []router.InsertManyParams
		for id, q := range queues {
			require.NoError(t, w.shard(t, id).Engine().ConfigureQueue(ctx, q,
				engine.QueueSettings{Lanes: 1, DLQ: true, MaxAttempts: 1, Deadline: time.Minute}))
			for i := range 3 {
				params = append(params, router.InsertManyParams{Args: EmailArgs{To: q, N: i}, InsertOpts: &router.InsertOpts{Queue: q}})
			}
		}
		params = append(params, router.InsertManyParams{Args: EmailArgs{To: "keyed"}, InsertOpts: &router.InsertOpts{Queue: queues[1], UniqueKey: "k"}})
		inserted, err := cl.InsertMany(ctx, params)
		require.NoError(t, err)
		letters := map[int][]int64{} // shard -> its dead letters, in insert order
		for _, r := range inserted {
			letters[r.ShardID] = append(letters[r.ShardID], r.JobID)
		}
		// Each shard's worker fails its jobs' only attempt: they become dead letters there.
		for id, q := range queues {
			eng := w.shard(t, id).Engine()
			claimed, err := eng.Claim(ctx, engine.ClaimRequest{Queue: q, LaneNo: -1, Max: 10})
			require.NoError(t, err)
			require.Len(t, claimed, len(letters[id]))
			var fails []engine.Failure
			for _, c := range claimed {
				fails = append(fails, engine.Failure{Receipt: c.Receipt, Error: "boom"})
			}
			out, err := eng.Fail(ctx, fails)
			require.NoError(t, err)
			for _, o := range out {
				require.Equal(t, engine.FailResult{Outcome: engine.Applied, State: engine.StateDeadLettered}, o)
			}
		}
		x1, x2 := letters[1], letters[2]
		keyed := x1[3]
		holder, err := cl.Insert(ctx, EmailArgs{To: "holder"}, &router.InsertOpts{Queue: queues[1], UniqueKey: "k"})
		require.NoError(t, err, "a dead letter does not hold its unique key")

		retried, err := cl.DeadLetterRetry(ctx, []int64{x2[0], x1[0], keyed, x1[0], holder.JobID, x2[1]})
		require.NoError(t, err)
		require.Equal(t, []*router.DeadLetterRetryResult{
			{JobID: x2[0], Retried: true},
			{JobID: x1[0], Retried: true},
			{JobID: keyed, HeldBy: holder.JobID}, // its key is held: it stays a dead letter
			{JobID: x1[0], Retried: true},        // a repeated id gets the same result
			{JobID: holder.JobID},                // a live job is no dead letter
			{JobID: x2[1], Retried: true},
		}, retried)
		for _, id := range []int64{x1[0], x2[0], x2[1]} {
			require.Equal(t, engine.StateAvailable, jobState(t, cl, id))
		}
		require.Equal(t, engine.StateDeadLettered, jobState(t, cl, keyed))

		purged, err := cl.DeadLetterPurge(ctx, []int64{x1[1], x2[2], x2[0], x1[1]})
		require.NoError(t, err)
		require.Equal(t, []*router.DeadLetterPurgeResult{
			{JobID: x1[1], Purged: true},
			{JobID: x2[2], Purged: true},
			{JobID: x2[0]}, // retried above: no longer a dead letter
			{JobID: x1[1], Purged: true},
		}, purged)
		for _, id := range []int64{x1[1], x2[2]} {
			_, err := cl.JobGet(ctx, id)
			require.ErrorIs(t, err, router.ErrNotFound, "a purged letter is gone")
		}
		for id, want := range map[int][]int64{1: {keyed, x1[2]}, 2: nil} {
			list, err := cl.DeadLetters(ctx, queues[id], 10, nil)
			require.NoError(t, err)
			require.ElementsMatch(t, want, letterIDs(list.Letters), "shard %d's letters", id)
		}

		none, err := cl.DeadLetterRetry(ctx, nil)
		require.NoError(t, err)
		require.Empty(t, none)
	})

	t.Run("a job id of an unconfigured shard or of no shard gets a clear error", func(t *testing.T) {
		t.Parallel()
		ctx := t.Context()
		const q = "ops-unconfigured"
		cl := w.client(t, router.Config{Pins: map[string]int16{q: 3}})
		res, err := cl.Insert(ctx, EmailArgs{}, &router.InsertOpts{Queue: q})
		require.NoError(t, err)
		_, err = cl.JobDiscard(ctx, res.JobID)
		require.NoError(t, err)
		letter := res.JobID

		lo, _ := engine.JobIDRange(99)
		for name, op := range map[string]func(int64) error{
			"cancel":  func(id int64) error { _, err := cl.JobCancel(ctx, id); return err },
			"discard": func(id int64) error { _, err := cl.JobDiscard(ctx, id); return err },
			"retry":   func(id int64) error { _, err := cl.JobRetry(ctx, id); return err },
		} {
			err := op(lo)
			var notConfigured *router.ShardNotConfiguredError
			require.ErrorAs(t, err, &notConfigured, name)
			require.Equal(t, 99, notConfigured.ShardID, name)
			require.ErrorIs(t, err, router.ErrNotFound, name)
			require.EqualError(t, err, fmt.Sprintf("job %d: shard 99 is not configured in this client: not found", lo), name)

			var invalid *router.ValidationError
			require.ErrorAs(t, op(42), &invalid, "%s: 42 names shard 0", name)
			require.Equal(t, "job_id", invalid.Field)
		}

		// Ids naming no shard refuse the whole batch: the letter is untouched.
		_, err = cl.DeadLetterRetry(ctx, []int64{letter, 0, -7})
		var invalid *router.ValidationError
		require.ErrorAs(t, err, &invalid)
		require.ErrorContains(t, err, `invalid job_ids[1] "0": is not a braid job id`)
		require.ErrorContains(t, err, `invalid job_ids[2] "-7"`)
		require.Equal(t, engine.StateDeadLettered, jobState(t, cl, letter))

		// An unconfigured shard fails its ids only.
		purged, err := cl.DeadLetterPurge(ctx, []int64{lo, letter, lo + 1})
		var partial *router.BatchError
		require.ErrorAs(t, err, &partial)
		require.Equal(t, []router.BatchFailure{{ShardID: 99, Jobs: []int{0, 2}, Err: &router.ShardNotConfiguredError{ShardID: 99}}}, partial.Failures)
		require.EqualError(t, err, "dead letter purge: 2 of 3 jobs not handled; shard 99 (2 jobs): shard 99 is not configured in this client")
		require.Equal(t, []*router.DeadLetterPurgeResult{nil, {JobID: letter, Purged: true}, nil}, purged)

		_, err = cl.DeadLetters(ctx, "no spaces", 0, nil)
		require.ErrorContains(t, err, `invalid queue "no spaces"`)
		require.ErrorContains(t, err, "invalid limit 0: must be 1..1000")
	})
}

func jobState(t testing.TB, cl *router.Client, id int64) engine.JobState {
	t.Helper()
	j, err := cl.JobGet(t.Context(), id)
	require.NoError(t, err)
	return j.State
}

func letterIDs(letters []router.DeadLetter) []int64 {
	var out []int64
	for _, l := range letters {
		out = append(out, l.JobID)
	}
	return out
}
