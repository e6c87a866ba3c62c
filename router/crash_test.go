package router_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/sony/gobreaker/v2"
	"github.com/stretchr/testify/require"

	"github.com/braidq/braid/engine"
	"github.com/braidq/braid/health"
	"github.com/braidq/braid/router"
	"github.com/braidq/braid/tests/pgtest"
)

// TestShardCrash stops shard 3 like `pg_ctl -m immediate` (a private cluster) and brings it
// back: its breaker opens, its queues and job ids fail fast with an error naming it, the other
// shards' queues and jobs are unaffected, and after the restart its breaker closes again.
func TestShardCrash(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	down := pgtest.New(t)
	w := newWorldOf(t, health.BreakerSettings{ConsecutiveFailures: 2, OpenTimeout: 200 * time.Millisecond}, func(i int) string {
		if i == 2 {
			return migratedDB(t, down, 3)
		}
		return shardDB(t, pgtest.Shared(t, i), i+1)
	})
	cl := w.client(t, router.Config{
		Pins:           map[string]int16{"on-3": 3, "on-1": 1, "on-2": 2, "dlq-1": 1, "dlq-2": 2, "dlq-3": 3},
		EnqueueTimeout: 2 * time.Second,
	})
	var onThree int64 // a live job on shard 3
	for _, q := range []string{"on-1", "on-2", "on-3"} {
		res, err := cl.Insert(ctx, EmailArgs{To: q}, &router.InsertOpts{Queue: q})
		require.NoError(t, err)
		onThree = res.JobID
	}
	letters := map[int]int64{} // shard -> a dead letter on it
	for id := 1; id <= 3; id++ {
		res, err := cl.Insert(ctx, EmailArgs{To: "dlq"}, &router.InsertOpts{Queue: fmt.Sprintf("dlq-%d", id)})
		require.NoError(t, err)
		_, err = cl.JobDiscard(ctx, res.JobID)
		require.NoError(t, err)
		letters[id] = res.JobID
	}
	s3 := w.shard(t, 3)

	down.Crash(t)

	var unavailable *router.ShardUnavailableError
	tries := 0
	for ; tries < 10; tries++ {
		_, err := cl.Insert(ctx, EmailArgs{To: "lost"}, &router.InsertOpts{Queue: "on-3"})
		require.ErrorAs(t, err, &unavailable, "try %d", tries)
		require.Equal(t, 3, unavailable.ShardID)
		require.Equal(t, "pg-3", unavailable.Name)
		if unavailable.BreakerOpen() {
			break
		}
	}
	require.True(t, unavailable.BreakerOpen(), "the breaker opened after %d failures", tries)
	require.LessOrEqual(t, tries, 2, "two consecutive infrastructure failures open it")
	require.Equal(t, gobreaker.StateOpen, s3.BreakerState())
	require.EqualError(t, unavailable, "shard 3 (pg-3) is unavailable: circuit breaker open after repeated failures")

	// The other shards' queues are unaffected; a batch over all three fails only shard 3's part.
	for _, q := range []string{"on-1", "on-2"} {
		_, err := cl.Insert(ctx, EmailArgs{To: q}, &router.InsertOpts{Queue: q})
		require.NoError(t, err)
	}
	var params []router.InsertManyParams
	for i := range 9 {
		q := fmt.Sprintf("on-%d", i%3+1)
		params = append(params, router.InsertManyParams{Args: EmailArgs{To: q, N: i}, InsertOpts: &router.InsertOpts{Queue: q}})
	}
	results, err := cl.InsertMany(ctx, params)
	var partial *router.BatchError
	require.ErrorAs(t, err, &partial)
	require.Equal(t, "insert", partial.Op)
	require.Equal(t, []int{2, 5, 8}, partial.Unhandled())
	require.Len(t, partial.Failures, 1)
	require.Equal(t, 3, partial.Failures[0].ShardID)
	require.ErrorAs(t, err, &unavailable)
	require.ErrorContains(t, err, "insert: 3 of 9 jobs not handled; shard 3 (3 jobs): shard 3 (pg-3) is unavailable")
	for i, r := range results {
		if i%3 == 2 {
			require.Nil(t, r)
			continue
		}
		require.NotNil(t, r)
		require.Equal(t, i%3+1, r.ShardID)
	}
	st, err := cl.QueueStats(ctx, "on-1")
	require.Error(t, err)
	require.Equal(t, []int{3}, st.Missing)
	require.Equal(t, int64(5), st.Total.Available, "the stats of the shards that answered")

	// Job operations go to the shard in the id: shard 3's ids fail naming it, the others' are
	// handled, and a batch says exactly which ids were not.
	_, err = cl.JobCancel(ctx, onThree)
	require.ErrorAs(t, err, &unavailable)
	require.Equal(t, 3, unavailable.ShardID)
	retried, err := cl.DeadLetterRetry(ctx, []int64{letters[3], letters[1], letters[2]})
	require.ErrorAs(t, err, &partial)
	require.Equal(t, "dead letter retry", partial.Op)
	require.Equal(t, []int{0}, partial.Unhandled())
	require.Len(t, partial.Failures, 1)
	require.Equal(t, 3, partial.Failures[0].ShardID)
	require.ErrorAs(t, err, &unavailable)
	require.Equal(t, 3, unavailable.ShardID)
	require.ErrorContains(t, err, "dead letter retry: 1 of 3 jobs not handled; shard 3 (1 job): shard 3 (pg-3) is unavailable")
	require.Equal(t, []*router.DeadLetterRetryResult{nil, {JobID: letters[1], Retried: true}, {JobID: letters[2], Retried: true}}, retried)
	for _, id := range []int64{letters[1], letters[2]} {
		j, err := cl.JobGet(ctx, id)
		require.NoError(t, err)
		require.Equal(t, engine.StateAvailable, j.State)
	}
	list, err := cl.DeadLetters(ctx, "dlq-3", 10, nil)
	require.ErrorAs(t, err, &unavailable)
	require.Equal(t, []int{3}, list.Missing)
	require.Empty(t, list.Letters)

	down.Start(t)
	require.Eventually(t, func() bool {
		_, err := cl.Insert(ctx, EmailArgs{To: "back"}, &router.InsertOpts{Queue: "on-3"})
		return err == nil
	}, 30*time.Second, 20*time.Millisecond)
	require.Equal(t, gobreaker.StateClosed, s3.BreakerState())
	st, err = cl.QueueStats(ctx, "on-3")
	require.NoError(t, err)
	require.Equal(t, int64(2), st.Total.Available, "the job acknowledged before the crash survived it, and the new one is there")

	// The id the batch reported as not handled can be retried now.
	retried, err = cl.DeadLetterRetry(ctx, []int64{letters[3]})
	require.NoError(t, err)
	require.Equal(t, []*router.DeadLetterRetryResult{{JobID: letters[3], Retried: true}}, retried)
}
