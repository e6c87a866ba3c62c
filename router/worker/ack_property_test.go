package worker_test

import (
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/braidq/braid/engine"
	"github.com/braidq/braid/router/worker"
)

// TestAckerRandomSequences acknowledges random mixes of results from several goroutines at
// once, with random batch sizes, delays and queue sizes (small queues make Ack block), repeats
// some receipts and lets an operator cancel some jobs while their acknowledgements are in
// flight. Afterwards every acknowledgement was reported exactly once, every attempt was ended
// at most once, and every job is in the state its result (or the operator) decided. The seed
// is printed; BRAID_SEED=N replays a run.
func TestAckerRandomSequences(t *testing.T) {
	t.Parallel()
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("BRAID_SEED"); s != "" {
		var err error
		seed, err = strconv.ParseUint(s, 10, 64)
		require.NoError(t, err, "BRAID_SEED")
	}
	t.Logf("seed %d (replay with BRAID_SEED=%d)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, seed>>1))
	b := setup(t)

	type plan struct {
		c      engine.Claimed
		res    worker.Result
		twice  bool // acknowledged twice
		racing bool // an operator cancels the job while its acknowledgement is in flight
	}
	results := []struct {
		res   worker.Result
		state engine.JobState
	}{
		{worker.Result{Action: worker.Complete}, engine.StateCompleted},
		{worker.Result{Action: worker.Fail, Failure: engine.Failure{Error: "retry me"}}, engine.StateRetryable},
		{worker.Result{Action: worker.Fail, Failure: engine.Failure{Error: "give up", Terminal: true}}, engine.StateDeadLettered},
		{worker.Result{Action: worker.Snooze, Snooze: time.Hour}, engine.StateScheduled},
		{worker.Result{Action: worker.GiveBack}, engine.StateScheduled},
		{worker.Result{Action: worker.Cancel}, engine.StateCancelled},
		{worker.Result{Action: worker.Abandon}, engine.StateCancelled}, // cancelled by an operator first
	}
	for round := range 3 {
		queue := fmt.Sprintf("prop-%d", round)
		cfg := worker.AckerConfig{MaxBatch: 1 + rng.IntN(40), MaxDelay: time.Duration(100+rng.IntN(5000)) * time.Microsecond}
		cfg.QueueSize = 1 + rng.IntN(2*cfg.MaxBatch)
		n := 10 + rng.IntN(110)
		goroutines := 1 + rng.IntN(4)
		t.Logf("round %d: %d jobs, %d goroutines, %+v", round, n, goroutines, cfg)

		cs := claimN(t, b, queue, n)
		plans := make([]plan, n)
		want := map[int64]engine.JobState{}
		for i, c := range cs {
			k := rng.IntN(len(results))
			plans[i] = plan{c: c, res: results[k].res, twice: rng.IntN(10) == 0, racing: rng.IntN(12) == 0}
			want[c.Receipt.JobID] = results[k].state
			if plans[i].res.Action == worker.Abandon {
				plans[i].racing = false
				_, err := b.eng.Cancel(b.ctx, c.Receipt.JobID)
				require.NoError(t, err)
			}
		}
		acker, rec := startAcker(t, b, cfg)
		order := rng.Perm(n)
		var wg, racers sync.WaitGroup
		calls := 0
		for g := range goroutines {
			var mine []plan
			for k, i := range order {
				if k%goroutines == g {
					mine = append(mine, plans[i])
					calls++
					if plans[i].twice {
						calls++
					}
				}
			}
			wg.Go(func() {
				for _, p := range mine {
					if p.racing {
						racers.Go(func() { _, _ = b.eng.Cancel(b.ctx, p.c.Receipt.JobID) })
					}
					for range 1 + btoi(p.twice) {
						if err := acker.Ack(b.ctx, p.c.Receipt, p.res); err != nil {
							t.Errorf("ack job %d: %v", p.c.Receipt.JobID, err)
						}
					}
				}
			})
		}
		wg.Wait()
		racers.Wait()
		require.NoError(t, acker.Stop(b.ctx))
		require.Equal(t, calls, rec.total(), "every acknowledgement reported once")

		for _, p := range plans {
			id := p.c.Receipt.JobID
			got := rec.of(id)
			require.Len(t, got, 1+btoi(p.twice), "job %d", id)
			applied := 0
			for _, a := range got {
				require.NoError(t, a.Err, "job %d", id)
				require.Equal(t, p.res.Action, a.Action)
				if a.Outcome == engine.Applied {
					applied++
				}
			}
			info := b.get(t, id)
			switch {
			case p.res.Action == worker.Abandon:
				require.Zero(t, applied, "job %d: nothing sent", id)
				require.Equal(t, engine.StateCancelled, info.State)
			case p.racing && applied == 0:
				require.Equal(t, engine.StateCancelled, info.State, "job %d: the operator's cancel won", id)
			case p.racing && info.State == engine.StateCancelled:
				require.Equal(t, 1, applied, "job %d", id) // the ack won, then the operator cancelled the re-queued job
			default:
				require.Equal(t, 1, applied, "job %d (%s): exactly one acknowledgement applied", id, p.res.Action)
				require.Equal(t, want[id], info.State, "job %d (%s)", id, p.res.Action)
			}
			if p.res.Action == worker.Fail && applied == 1 {
				require.Len(t, errorsOf(t, info), 1, "job %d failed once", id)
			}
		}
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}
