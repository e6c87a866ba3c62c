package engine_test

import (
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/braidq/braid/engine"
)

// TestConcurrentClaimersDrainExactlyOnce: 8 claimers drain 100k jobs over several lanes. Every
// job is claimed exactly once with run lease 1, each batch is in lane order, and each lane's
// emissions form one gap-free, overlap-free chain.
func TestConcurrentClaimersDrainExactlyOnce(t *testing.T) {
	t.Parallel()
	const (
		total     = 100_000
		perCall   = 1000
		claimers  = 8
		lanes     = 6
		claimSize = 128
	)
	b := setup(t)
	require.NoError(t, b.eng.ConfigureQueue(b.ctx, "drain", engine.QueueSettings{Lanes: lanes, DLQ: true, MaxAttempts: 5, Deadline: time.Minute}))
	for call := range total / perCall {
		jobs := make([]engine.Job, perCall)
		for i := range jobs {
			jobs[i] = engine.Job{Queue: "drain", Kind: "k", Args: []byte(fmt.Sprintf(`{"i":%d}`, call*perCall+i))}
		}
		_, err := b.eng.EnqueueMany(b.ctx, jobs)
		require.NoError(t, err)
	}

	var (
		mu      sync.Mutex
		seen    = make(map[int64]int, total)
		badBits []string
		wg      sync.WaitGroup
	)
	for w := range claimers {
		wg.Go(func() {
			for {
				cs, err := b.eng.Claim(b.ctx, engine.ClaimRequest{Queue: "drain", LaneNo: -1, Max: claimSize})
				if err != nil {
					mu.Lock()
					badBits = append(badBits, fmt.Sprintf("claimer %d: %v", w, err))
					mu.Unlock()
					return
				}
				if len(cs) == 0 {
					return
				}
				prev := -1
				for _, c := range cs {
					var a struct{ I int }
					if err := json.Unmarshal(c.Args, &a); err != nil || a.I <= prev || c.Receipt.RunLease != 1 {
						mu.Lock()
						badBits = append(badBits, fmt.Sprintf("batch %d out of order or wrong lease at job %d", c.Receipt.BatchID, c.Receipt.JobID))
						mu.Unlock()
					}
					prev = a.I
				}
				if _, err := b.eng.Complete(b.ctx, receipts(cs)); err != nil {
					mu.Lock()
					badBits = append(badBits, fmt.Sprintf("claimer %d complete: %v", w, err))
					mu.Unlock()
					return
				}
				mu.Lock()
				for _, c := range cs {
					seen[c.Receipt.JobID]++
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	require.Empty(t, badBits)
	require.Len(t, seen, total, "every job claimed")
	for id, n := range seen {
		if n != 1 {
			require.Failf(t, "job claimed more than once", "job %d claimed %d times", id, n)
		}
	}
	require.Zero(t, b.scalar(t, `
		SELECT count(*) FROM (
			SELECT after_seq, lag(last_seq, 1, 0::bigint) OVER (PARTITION BY lane_id ORDER BY after_seq) AS prev_last
			FROM braid.emission) s
		WHERE after_seq <> prev_last`), "each lane's emissions chain without gaps or overlaps")
	counts, err := b.eng.Counts(b.ctx, "drain")
	require.NoError(t, err)
	require.Equal(t, engine.Counts{Completed: total}, counts)
}
