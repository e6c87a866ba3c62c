package engine_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"
	"pgregory.net/rapid"

	"github.com/braidq/braid/engine"
	"github.com/braidq/braid/tests/pgtest"
)

type attemptKey struct {
	job   int64
	lease int64
}

// model is the test's own account of what the engine must hold.
type model struct {
	queueOf   map[int64]string
	available map[int64]bool      // committed, not yet claimed
	open      map[attemptKey]bool // emitted attempts that have not ended
	held      []engine.Receipt    // receipts a worker still holds (lost claims are not here)
	done      []engine.Receipt    // receipts of completed attempts (replayed as stale)
	emitted   map[attemptKey]bool // every attempt ever emitted
	completed map[string]int64    // per queue
	uniqueBy  map[string]int64    // queue+key -> live holder
	uniqueOf  map[int64]string    // job -> queue+key it holds
}

// TestPropertyHotPath runs random sequences of enqueue, aborted enqueue, claim, lost claim
// (the post-commit step never happens), complete (with repeated and stale receipts) and ring
// rotation against a real database, and after every step checks: no attempt is emitted twice,
// closure multiplicity is at most 1, Counts equal the model's ground truth, unique keys are held
// exactly by live jobs, and at the end every committed job is claimable. Replay a failure with
// the -rapid.seed the failure prints.
func TestPropertyHotPath(t *testing.T) {
	t.Parallel()
	c := pgtest.Shared(t, 0)
	tmpl := migratedTemplate(t, c)
	queues := []string{"a", "b"}

	rapid.Check(t, func(rt *rapid.T) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		pool, err := pgxpool.New(ctx, c.NewDB(t, tmpl))
		require.NoError(rt, err)
		defer pool.Close()
		eng, err := engine.Open(ctx, pool, engine.Config{Lanes: 2})
		require.NoError(rt, err)
		m := &model{queueOf: map[int64]string{}, available: map[int64]bool{}, open: map[attemptKey]bool{},
			emitted: map[attemptKey]bool{}, completed: map[string]int64{}, uniqueBy: map[string]int64{}, uniqueOf: map[int64]string{}}
		rotations := map[string]int{}

		genJob := func(rt *rapid.T) engine.Job {
			j := engine.Job{Queue: rapid.SampledFrom(queues).Draw(rt, "queue"), Kind: "k"}
			j.OrderingKey = rapid.SampledFrom([]string{"", "", "x", "y"}).Draw(rt, "ordering_key")
			j.UniqueKey = rapid.SampledFrom([]string{"", "", "", "u1", "u2"}).Draw(rt, "unique_key")
			return j
		}

		steps := rapid.IntRange(1, 40).Draw(rt, "steps")
		for range steps {
			switch op := rapid.IntRange(0, 9).Draw(rt, "op"); {
			case op <= 2: // enqueue
				jobs := rapid.SliceOfN(rapid.Custom(genJob), 1, 5).Draw(rt, "jobs")
				res, err := eng.EnqueueMany(ctx, jobs)
				require.NoError(rt, err)
				for i, r := range res {
					key := jobs[i].Queue + "/" + jobs[i].UniqueKey
					holder, held := m.uniqueBy[key]
					wantDup := jobs[i].UniqueKey != "" && held
					require.Equal(rt, wantDup, r.Duplicate, "job %d unique key %q", i, jobs[i].UniqueKey)
					if r.Duplicate {
						require.Equal(rt, holder, r.JobID)
						continue
					}
					m.queueOf[r.JobID] = jobs[i].Queue
					m.available[r.JobID] = true
					if jobs[i].UniqueKey != "" {
						m.uniqueBy[key], m.uniqueOf[r.JobID] = r.JobID, key
					}
				}
			case op == 3: // aborted enqueue: leaves sequence gaps, writes nothing visible
				tx, err := pool.Begin(ctx)
				require.NoError(rt, err)
				_, err = eng.EnqueueTx(ctx, tx, rapid.SliceOfN(rapid.Custom(genJob), 1, 3).Draw(rt, "aborted"))
				require.NoError(rt, err)
				require.NoError(rt, tx.Rollback(ctx))
			case op <= 6: // claim, or a claim whose result is lost after commit
				lost := op == 6
				cs, err := eng.Claim(ctx, engine.ClaimRequest{Queue: rapid.SampledFrom(queues).Draw(rt, "claim_queue"),
					LaneNo: -1, Max: rapid.IntRange(1, 6).Draw(rt, "max")})
				require.NoError(rt, err)
				for _, c := range cs {
					k := attemptKey{c.Receipt.JobID, c.Receipt.RunLease}
					require.False(rt, m.emitted[k], "attempt %v emitted twice", k)
					require.True(rt, m.available[k.job], "job %d claimed but not available", k.job)
					m.emitted[k], m.open[k] = true, true
					delete(m.available, k.job)
					if !lost {
						m.held = append(m.held, c.Receipt)
					}
				}
			case op <= 8: // complete a random subset of held receipts, plus repeats and stale ones
				if len(m.held) == 0 && len(m.done) == 0 {
					continue
				}
				var rs []engine.Receipt
				if len(m.held) > 0 {
					rs = append(rs, rapid.SliceOfNDistinct(rapid.SampledFrom(m.held), 1, len(m.held), func(r engine.Receipt) engine.Receipt { return r }).Draw(rt, "complete")...)
				}
				if len(rs) > 0 && rapid.Bool().Draw(rt, "repeat") {
					rs = append(rs, rs[0])
				}
				if len(m.done) > 0 && rapid.Bool().Draw(rt, "stale") {
					rs = append(rs, rapid.SampledFrom(m.done).Draw(rt, "stale_receipt"))
				}
				out, err := eng.Complete(ctx, rs)
				require.NoError(rt, err)
				for i, r := range rs {
					k := attemptKey{r.JobID, r.RunLease}
					if m.open[k] {
						require.Equal(rt, engine.Applied, out[i], "receipt %d (%v)", i, k)
						delete(m.open, k)
						m.completed[m.queueOf[r.JobID]]++
						m.done = append(m.done, r)
						m.held = slices.DeleteFunc(m.held, func(h engine.Receipt) bool { return h == r })
						if key, ok := m.uniqueOf[r.JobID]; ok {
							delete(m.uniqueBy, key)
							delete(m.uniqueOf, r.JobID)
						}
					} else {
						require.Equal(rt, engine.Stale, out[i], "receipt %d (%v)", i, k)
					}
				}
			default: // rotate a ring (never onto a slot that is still in use: no prune yet)
				ring := rapid.SampledFrom([]string{"queue", "claim"}).Draw(rt, "ring")
				if (ring == "queue" && rotations[ring] >= 15) || (ring == "claim" && rotations[ring] >= 7) {
					continue
				}
				rotations[ring]++
				_, err := pool.Exec(ctx, `INSERT INTO braid.ring_gen (ring, generation)
					SELECT ring, max(generation) + 1 FROM braid.ring_gen WHERE ring = $1 GROUP BY ring`, ring)
				require.NoError(rt, err)
			}
			checkInvariants(rt, ctx, pool, eng, m, queues)
		}

		// Every committed job is eventually claimable.
		for _, q := range queues {
			for {
				cs, err := eng.Claim(ctx, engine.ClaimRequest{Queue: q, LaneNo: -1, Max: 100})
				require.NoError(rt, err)
				if len(cs) == 0 {
					break
				}
				for _, c := range cs {
					require.True(rt, m.available[c.Receipt.JobID])
					delete(m.available, c.Receipt.JobID)
				}
			}
		}
		require.Empty(rt, m.available, "jobs that were never claimable")
	})
}

func checkInvariants(rt *rapid.T, ctx context.Context, pool *pgxpool.Pool, eng *engine.Engine, m *model, queues []string) {
	var multi int
	require.NoError(rt, pool.QueryRow(ctx, `SELECT count(*) FROM (
		SELECT c.batch_id, x FROM braid.closure c, unnest(c.members) x GROUP BY 1, 2 HAVING count(*) > 1) s`).Scan(&multi))
	require.Zero(rt, multi, "an attempt has more than one closure")

	for _, q := range queues {
		want := engine.Counts{Completed: m.completed[q]}
		for id := range m.available {
			if m.queueOf[id] == q {
				want.Available++
			}
		}
		for k := range m.open {
			if m.queueOf[k.job] == q {
				want.Running++
			}
		}
		got, err := eng.Counts(ctx, q)
		require.NoError(rt, err)
		require.Equal(rt, want, got, "counts of queue %s", q)
	}

	var held []string
	rows, err := pool.Query(ctx, `SELECT queue || '/' || unique_key || '=' || job_id FROM braid.unique_claim ORDER BY 1`)
	require.NoError(rt, err)
	for rows.Next() {
		var s string
		require.NoError(rt, rows.Scan(&s))
		held = append(held, s)
	}
	require.NoError(rt, rows.Err())
	var want []string
	for key, id := range m.uniqueBy {
		want = append(want, fmt.Sprintf("%s=%d", key, id))
	}
	slices.Sort(want)
	require.Equal(rt, want, held, "unique keys are held exactly by live jobs")

	for id := range m.available {
		info, err := eng.JobGet(ctx, id)
		require.NoError(rt, err)
		require.Equal(rt, engine.StateAvailable, info.State, "job %d", id)
		break
	}
	for k := range m.open {
		info, err := eng.JobGet(ctx, k.job)
		require.NoError(rt, err)
		require.Equal(rt, engine.StateRunning, info.State, "job %d", k.job)
		require.Equal(rt, k.lease, info.RunLease)
		break
	}
}
