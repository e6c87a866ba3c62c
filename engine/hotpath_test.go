package engine_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/braidq/braid/engine"
)

func claimAll(t testing.TB, b *bundle, queue string, max int) []engine.Claimed {
	t.Helper()
	got, err := b.eng.Claim(b.ctx, engine.ClaimRequest{Queue: queue, LaneNo: -1, Max: max})
	require.NoError(t, err)
	return got
}

func receipts(cs []engine.Claimed) []engine.Receipt {
	out := make([]engine.Receipt, len(cs))
	for i, c := range cs {
		out[i] = c.Receipt
	}
	return out
}

func TestCompleteStaleReceiptsWriteNothing(t *testing.T) {
	t.Parallel()
	b := setup(t)
	_, err := b.eng.EnqueueMany(b.ctx, []engine.Job{job("q"), job("q"), job("q")})
	require.NoError(t, err)
	cs := claimAll(t, b, "q", 10)
	require.Len(t, cs, 3)

	t.Run("a receipt repeated in one call applies once", func(t *testing.T) {
		out, err := b.eng.Complete(b.ctx, []engine.Receipt{cs[0].Receipt, cs[0].Receipt})
		require.NoError(t, err)
		require.Equal(t, []engine.Outcome{engine.Applied, engine.Stale}, out)
	})
	t.Run("a second completion is stale", func(t *testing.T) {
		out, err := b.eng.Complete(b.ctx, receipts(cs))
		require.NoError(t, err)
		require.Equal(t, []engine.Outcome{engine.Stale, engine.Applied, engine.Applied}, out)
	})
	t.Run("a receipt with the wrong run lease is stale", func(t *testing.T) {
		r := cs[1].Receipt
		r.RunLease = 9
		out, err := b.eng.Complete(b.ctx, []engine.Receipt{r})
		require.NoError(t, err)
		require.Equal(t, []engine.Outcome{engine.Stale}, out)
	})
	require.Equal(t, int64(2), b.scalar(t, `SELECT count(*) FROM braid.closure`), "one closure per completing call and batch")
	require.Equal(t, int64(3), b.scalar(t, `SELECT sum(cardinality(members)) FROM braid.closure`))
	require.Equal(t, int64(3), b.scalar(t, `SELECT sum(n) FROM braid.completion`))
	counts, err := b.eng.Counts(b.ctx, "q")
	require.NoError(t, err)
	require.Equal(t, engine.Counts{Completed: 3}, counts)
}

func TestEnqueueManyUniqueKeys(t *testing.T) {
	t.Parallel()
	b := setup(t)
	res, err := b.eng.EnqueueMany(b.ctx, []engine.Job{
		{Queue: "q", Kind: "k", UniqueKey: "a"},
		{Queue: "q", Kind: "k", UniqueKey: "a"}, // same key in the same call
		{Queue: "q", Kind: "k", UniqueKey: "b"},
		{Queue: "other", Kind: "k", UniqueKey: "a"}, // keys are per queue
		{Queue: "q", Kind: "k"},
	})
	require.NoError(t, err)
	require.False(t, res[0].Duplicate)
	require.True(t, res[1].Duplicate)
	require.Equal(t, res[0].JobID, res[1].JobID, "the duplicate reports the job holding the key")
	require.False(t, res[2].Duplicate)
	require.False(t, res[3].Duplicate)
	require.False(t, res[4].Duplicate)
	require.Equal(t, int64(4), b.scalar(t, `SELECT count(*) FROM braid.ready`))
}

func TestScheduledJobsWaitInTheDeferredTable(t *testing.T) {
	t.Parallel()
	b := setup(t)
	j := job("q")
	j.RunAt = time.Now().Add(time.Hour)
	res, err := b.eng.Enqueue(b.ctx, j)
	require.NoError(t, err)
	require.True(t, res.Scheduled)
	info, err := b.eng.JobGet(b.ctx, res.JobID)
	require.NoError(t, err)
	require.Equal(t, engine.StateScheduled, info.State)
	require.WithinDuration(t, j.RunAt, info.RunAt, time.Millisecond)
	require.Empty(t, claimAll(t, b, "q", 10), "a scheduled job is not claimable before it is promoted")
	counts, err := b.eng.Counts(b.ctx, "q")
	require.NoError(t, err)
	require.Equal(t, engine.Counts{Scheduled: 1}, counts)

	past := job("q")
	past.RunAt = time.Now().Add(-time.Hour)
	res, err = b.eng.Enqueue(b.ctx, past)
	require.NoError(t, err)
	require.False(t, res.Scheduled, "a run_at in the past is available now")
	require.Len(t, claimAll(t, b, "q", 10), 1)
}

func TestLanes(t *testing.T) {
	t.Parallel()
	b := setup(t)
	require.NoError(t, b.eng.ConfigureQueue(b.ctx, "q", engine.QueueSettings{Lanes: 4, DLQ: true, MaxAttempts: 5, Deadline: time.Minute}))

	t.Run("an ordering key keeps its jobs on one lane, in order", func(t *testing.T) {
		var jobs []engine.Job
		for i := range 20 {
			j := job("q")
			j.OrderingKey = "customer-42"
			j.Args = []byte(fmt.Sprintf(`{"i":%d}`, i))
			jobs = append(jobs, j)
		}
		for _, j := range jobs {
			_, err := b.eng.Enqueue(b.ctx, j)
			require.NoError(t, err)
		}
		require.Equal(t, int64(1), b.scalar(t, `SELECT count(DISTINCT lane_id) FROM braid.ready`))
		cs := claimAll(t, b, "q", 100)
		require.Len(t, cs, 20)
		for i, c := range cs {
			require.JSONEq(t, fmt.Sprintf(`{"i":%d}`, i), string(c.Args))
		}
	})

	t.Run("key-less calls rotate over the lanes", func(t *testing.T) {
		for range 8 {
			_, err := b.eng.Enqueue(b.ctx, job("q"))
			require.NoError(t, err)
		}
		require.Equal(t, int64(4), b.scalar(t, `SELECT count(DISTINCT r.lane_id) FROM braid.ready r
			WHERE r.lane_seq > braid.lane_cursor(r.lane_id)`))
	})

	t.Run("a claim takes one lane; lane numbers address lanes", func(t *testing.T) {
		for lane := range 4 {
			cs, err := b.eng.Claim(b.ctx, engine.ClaimRequest{Queue: "q", LaneNo: lane, Max: 100})
			require.NoError(t, err)
			require.Len(t, cs, 2)
			for _, c := range cs {
				require.Equal(t, lane, c.LaneNo)
			}
		}
	})

	t.Run("higher priority lanes are claimed first", func(t *testing.T) {
		for _, p := range []int{4, 3, 1, 2} {
			j := job("prio")
			j.Priority = p
			_, err := b.eng.Enqueue(b.ctx, j)
			require.NoError(t, err)
		}
		var order []int
		for range 4 {
			cs := claimAll(t, b, "prio", 10)
			require.Len(t, cs, 1)
			order = append(order, cs[0].Priority)
		}
		require.Equal(t, []int{1, 2, 3, 4}, order)
	})
}

func TestFenceRefusesEnqueueWithRedirect(t *testing.T) {
	t.Parallel()
	b := setup(t)
	_, err := b.eng.Enqueue(b.ctx, job("moving"))
	require.NoError(t, err)
	b.exec(t, `INSERT INTO braid.fence (queue, epoch, state, moved_to) VALUES ('moving', 4, 'moved', 9)`)
	b.exec(t, `INSERT INTO braid.fence (queue, epoch, state) VALUES ('staying', 1, 'active')`)

	_, err = b.eng.EnqueueMany(b.ctx, []engine.Job{job("staying"), job("moving")})
	var redirect *engine.RedirectError
	require.ErrorAs(t, err, &redirect)
	require.Equal(t, engine.RedirectError{Queue: "moving", Epoch: 4, State: "moved", MovedTo: 9}, *redirect)
	require.Equal(t, int64(1), b.scalar(t, `SELECT count(*) FROM braid.ready`), "a refused call writes nothing")

	_, err = b.eng.Enqueue(b.ctx, job("staying"))
	require.NoError(t, err)
}

func TestEnqueueNotifiesOncePerQueue(t *testing.T) {
	t.Parallel()
	b := setup(t)
	conn, err := pgx.Connect(b.ctx, b.dsn)
	require.NoError(t, err)
	defer conn.Close(b.ctx)
	_, err = conn.Exec(b.ctx, "LISTEN "+pgx.Identifier{b.eng.ReadyChannel()}.Sanitize())
	require.NoError(t, err)

	_, err = b.eng.EnqueueMany(b.ctx, []engine.Job{job("a"), job("a"), job("b"), job("a")})
	require.NoError(t, err)
	seen := map[string]int{}
	for range 2 {
		n, err := conn.WaitForNotification(b.ctx)
		require.NoError(t, err)
		seen[n.Payload]++
	}
	require.Equal(t, map[string]int{"a": 1, "b": 1}, seen)
}

func TestClaimNeverSpansTwoQueueSlots(t *testing.T) {
	t.Parallel()
	b := setup(t)
	require.NoError(t, b.eng.ConfigureQueue(b.ctx, "q", engine.QueueSettings{Lanes: 1, DLQ: true, MaxAttempts: 5, Deadline: time.Minute}))
	first, err := b.eng.EnqueueMany(b.ctx, []engine.Job{job("q"), job("q"), job("q")})
	require.NoError(t, err)
	b.rotate(t, "queue")
	second, err := b.eng.EnqueueMany(b.ctx, []engine.Job{job("q"), job("q")})
	require.NoError(t, err)

	cs := claimAll(t, b, "q", 100)
	require.Len(t, cs, 3, "the claim stops at the slot boundary")
	for i, c := range cs {
		require.Equal(t, first[i].JobID, c.Receipt.JobID)
	}
	cs = claimAll(t, b, "q", 100)
	require.Len(t, cs, 2)
	for i, c := range cs {
		require.Equal(t, second[i].JobID, c.Receipt.JobID)
	}
	require.Equal(t, int64(2), b.scalar(t, `SELECT count(DISTINCT qslot) FROM braid.emission`), "each emission lives in its rows' slot")
	require.Zero(t, b.scalar(t, `SELECT count(*) FROM braid.emission e JOIN braid.ready r
		ON r.lane_id = e.lane_id AND r.lane_seq > e.after_seq AND r.lane_seq <= e.last_seq WHERE r.qslot <> e.qslot`))
}

// TestRegressionHeadGapAndLostPostCommitStep reproduces the sequence that wedged the seed
// engine: an aborted enqueue leaves a gap at the lane head, and a claim whose post-commit step
// (the caller ever seeing its result) is lost. The lane must keep flowing, and the lost claim's
// jobs must not be handed out a second time.
func TestRegressionHeadGapAndLostPostCommitStep(t *testing.T) {
	t.Parallel()
	b := setup(t)
	require.NoError(t, b.eng.ConfigureQueue(b.ctx, "q", engine.QueueSettings{Lanes: 1, DLQ: true, MaxAttempts: 5, Deadline: time.Minute}))

	// An aborted enqueue at the head of the lane: its sequence numbers are burnt.
	tx, err := b.pool.Begin(b.ctx)
	require.NoError(t, err)
	_, err = b.eng.EnqueueTx(b.ctx, tx, []engine.Job{job("q"), job("q")})
	require.NoError(t, err)
	require.NoError(t, tx.Rollback(b.ctx))

	res, err := b.eng.EnqueueMany(b.ctx, []engine.Job{job("q"), job("q"), job("q"), job("q")})
	require.NoError(t, err)

	// A claim commits, and its caller dies before it sees the result.
	_, err = b.pool.Exec(b.ctx, `SELECT * FROM braid.job_claim('q', NULL, 2, 'lost', NULL)`)
	require.NoError(t, err)

	cs := claimAll(t, b, "q", 10)
	require.Len(t, cs, 2, "the lane is not wedged by the gap or the lost claim")
	require.Equal(t, res[2].JobID, cs[0].Receipt.JobID)
	require.Equal(t, res[3].JobID, cs[1].Receipt.JobID)
	require.Empty(t, claimAll(t, b, "q", 10), "the lost claim's jobs are held by its open attempts, not re-emitted")

	counts, err := b.eng.Counts(b.ctx, "q")
	require.NoError(t, err)
	require.Equal(t, engine.Counts{Running: 4}, counts)
}
