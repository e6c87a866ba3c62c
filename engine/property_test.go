package engine_test

import (
	"context"
	"errors"
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

// mjob is the model's account of one job.
type mjob struct {
	queue    string
	state    engine.JobState
	attempts int // attempts used
	key      string
}

// model is the test's own account of what the engine must hold.
type model struct {
	jobs     map[int64]*mjob
	open     map[attemptKey]engine.Receipt // emitted attempts that have not ended
	held     []engine.Receipt              // receipts a worker still holds (lost claims are not here)
	ended    []engine.Receipt              // receipts of ended attempts (replayed as stale)
	emitted  map[attemptKey]bool           // every attempt ever emitted
	uniqueBy map[string]int64              // queue/key -> live holder
}

const propMaxAttempts = 3

var propDLQ = map[string]bool{"a": true, "b": false}

func (m *model) live(j *mjob) bool {
	switch j.state {
	case engine.StateAvailable, engine.StateRunning, engine.StateScheduled, engine.StateRetryable:
		return true
	}
	return false
}

// prunable says whether a job in state s may have lost its evidence to a queue-slot prune.
func prunable(s engine.JobState) bool {
	return s == engine.StateCompleted || s == engine.StateFailed || s == engine.StateCancelled || s == "purged"
}

// inState lists the jobs of ids in state s, in the order of ids.
func (m *model) inState(ids []int64, s engine.JobState) []int64 {
	var out []int64
	for _, id := range ids {
		if m.jobs[id].state == s {
			out = append(out, id)
		}
	}
	return out
}

// finish moves a job out of the live states, releasing its unique key.
func (m *model) finish(id int64, s engine.JobState) {
	j := m.jobs[id]
	j.state = s
	if j.key != "" && m.uniqueBy[j.queue+"/"+j.key] == id {
		delete(m.uniqueBy, j.queue+"/"+j.key)
	}
}

// endAttempt closes an open attempt in the model.
func (m *model) endAttempt(k attemptKey) {
	r := m.open[k]
	delete(m.open, k)
	m.held = slices.DeleteFunc(m.held, func(h engine.Receipt) bool { return h == r })
	m.ended = append(m.ended, r)
}

// failForward is what the engine does after an error or a rescue.
func (m *model) failForward(id int64, terminal bool) engine.JobState {
	j := m.jobs[id]
	switch {
	case !terminal && j.attempts < propMaxAttempts:
		j.state = engine.StateRetryable
	case propDLQ[j.queue]:
		m.finish(id, engine.StateDeadLettered)
	default:
		m.finish(id, engine.StateFailed)
	}
	return j.state
}

// TestPropertyLifecycle runs random sequences of every engine operation against a real database:
// enqueue (now and scheduled, with ordering and unique keys), aborted enqueue, claim, lost
// claims (the post-commit step never happens), complete, fail (retryable and terminal), snooze,
// heartbeat, cancel in any state, rescue, promotion, dead-letter retry and purge, ring rotation,
// re-home, queue- and claim-slot prune, counter fold, per-bucket counter rebuild and ring ledger
// trim, with repeated and stale receipts. After every step it checks: no attempt emitted twice,
// no attempt closed twice, Counts equal the model in every state, the per-bucket terminal counts
// (folded history plus retained evidence) equal the model's jobs bucket by bucket, the open
// attempts are exactly the model's and each one's ready row is still in its queue slot, the
// pending ready rows are exactly the model's available jobs (none lost to a pruned slot, none
// twice), each ring's ledger is contiguous and keeps every retained slot's generation, a
// rotation only ever moves onto an empty slot, unique keys are held exactly by live jobs, and
// JobGet agrees with the model on sampled jobs; at the end, every live job is claimable.
// Replay a failure with the -rapid.seed it prints.
func TestPropertyLifecycle(t *testing.T) {
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
		for _, q := range queues {
			require.NoError(rt, eng.ConfigureQueue(ctx, q, settings(2, propMaxAttempts, propDLQ[q], time.Hour)))
		}
		lease, ok, err := eng.LeaseAcquire(ctx, "property", time.Hour)
		require.NoError(rt, err)
		require.True(rt, ok)
		m := &model{jobs: map[int64]*mjob{}, open: map[attemptKey]engine.Receipt{}, emitted: map[attemptKey]bool{}, uniqueBy: map[string]int64{}}
		var ids []int64

		genJob := func(rt *rapid.T) engine.Job {
			j := engine.Job{Queue: rapid.SampledFrom(queues).Draw(rt, "queue"), Kind: "k"}
			j.OrderingKey = rapid.SampledFrom([]string{"", "", "x", "y"}).Draw(rt, "ordering_key")
			j.UniqueKey = rapid.SampledFrom([]string{"", "", "", "u1", "u2"}).Draw(rt, "unique_key")
			if rapid.IntRange(0, 5).Draw(rt, "scheduled") == 0 {
				j.RunAt = time.Now().Add(time.Hour)
			}
			return j
		}
		pickHeld := func(rt *rapid.T, label string) []engine.Receipt {
			if len(m.held) == 0 {
				return nil
			}
			rs := rapid.SliceOfNDistinct(rapid.SampledFrom(m.held), 1, len(m.held), func(r engine.Receipt) engine.Receipt { return r }).Draw(rt, label)
			if rapid.Bool().Draw(rt, label+"_repeat") {
				rs = append(rs, rs[0])
			}
			if len(m.ended) > 0 && rapid.Bool().Draw(rt, label+"_stale") {
				rs = append(rs, rapid.SampledFrom(m.ended).Draw(rt, label+"_stale_receipt"))
			}
			return rs
		}
		// applies reports, for each receipt of a call, whether the model says it ends an open
		// attempt (first occurrence only), and ends those attempts in the model.
		applies := func(rs []engine.Receipt) []bool {
			out := make([]bool, len(rs))
			for i, r := range rs {
				k := attemptKey{r.JobID, r.RunLease}
				if _, ok := m.open[k]; ok {
					out[i] = true
					m.endAttempt(k)
				}
			}
			return out
		}

		fold := func() {
			res, err := eng.FoldCounters(ctx, lease, time.Minute)
			require.NoError(rt, err)
			require.Contains(rt, []string{"folded", "nothing"}, res.Outcome)
		}
		rebuild := func() {
			var held []int
			rows, err := pool.Query(ctx, `SELECT bucket::int FROM braid.counter UNION SELECT bucket FROM braid.counter_log ORDER BY 1`)
			require.NoError(rt, err)
			for rows.Next() {
				var bk int
				require.NoError(rt, rows.Scan(&bk))
				held = append(held, bk)
			}
			require.NoError(rt, rows.Err())
			bucket := rapid.IntRange(0, engine.Buckets-1).Draw(rt, "bucket")
			if len(held) > 0 && rapid.IntRange(0, 3).Draw(rt, "held_bucket") > 0 {
				bucket = rapid.SampledFrom(held).Draw(rt, "bucket_held")
			}
			res, err := eng.RebuildCounters(ctx, lease, bucket, time.Minute)
			require.NoError(rt, err)
			require.Contains(rt, []string{"rebuilt", "nothing"}, res.Outcome)
		}

		steps := rapid.IntRange(1, 50).Draw(rt, "steps")
		for range steps {
			switch op := rapid.IntRange(0, 31).Draw(rt, "op"); {
			case op <= 2: // enqueue
				jobs := rapid.SliceOfN(rapid.Custom(genJob), 1, 5).Draw(rt, "jobs")
				res, err := eng.EnqueueMany(ctx, jobs)
				require.NoError(rt, err)
				for i, r := range res {
					key := jobs[i].Queue + "/" + jobs[i].UniqueKey
					holder, held := m.uniqueBy[key]
					require.Equal(rt, jobs[i].UniqueKey != "" && held, r.Duplicate, "job %d unique key %q", i, jobs[i].UniqueKey)
					if r.Duplicate {
						require.Equal(rt, holder, r.JobID)
						continue
					}
					s := engine.StateAvailable
					if !jobs[i].RunAt.IsZero() {
						s = engine.StateScheduled
					}
					m.jobs[r.JobID] = &mjob{queue: jobs[i].Queue, state: s, key: jobs[i].UniqueKey}
					ids = append(ids, r.JobID)
					if jobs[i].UniqueKey != "" {
						m.uniqueBy[key] = r.JobID
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
					j := m.jobs[k.job]
					require.NotNil(rt, j, "claimed unknown job %d", k.job)
					require.Equal(rt, engine.StateAvailable, j.state, "job %d claimed in state %s", k.job, j.state)
					j.state, j.attempts = engine.StateRunning, c.Attempt
					m.emitted[k], m.open[k] = true, c.Receipt
					if !lost {
						m.held = append(m.held, c.Receipt)
					}
				}
			case op <= 8: // complete
				rs := pickHeld(rt, "complete")
				if rs == nil {
					continue
				}
				want := applies(rs)
				out, err := eng.Complete(ctx, rs)
				require.NoError(rt, err)
				for i, r := range rs {
					require.Equal(rt, want[i], out[i] == engine.Applied, "complete receipt %d (%v)", i, r)
					if want[i] {
						m.finish(r.JobID, engine.StateCompleted)
					}
				}
			case op <= 10: // fail
				rs := pickHeld(rt, "fail")
				if rs == nil {
					continue
				}
				terminal := rapid.Bool().Draw(rt, "terminal")
				fs := make([]engine.Failure, len(rs))
				for i, r := range rs {
					fs[i] = engine.Failure{Receipt: r, Error: "e", RetryAfter: time.Microsecond, Terminal: terminal}
				}
				want := applies(rs)
				out, err := eng.Fail(ctx, fs)
				require.NoError(rt, err)
				for i, r := range rs {
					require.Equal(rt, want[i], out[i].Outcome == engine.Applied, "fail receipt %d", i)
					if want[i] {
						require.Equal(rt, m.failForward(r.JobID, terminal), out[i].State)
					}
				}
			case op == 11: // snooze
				rs := pickHeld(rt, "snooze")
				if rs == nil {
					continue
				}
				want := applies(rs)
				delays := make([]time.Duration, len(rs))
				out, err := eng.Snooze(ctx, rs, delays)
				require.NoError(rt, err)
				for i, r := range rs {
					require.Equal(rt, want[i], out[i] == engine.Applied, "snooze receipt %d", i)
					if want[i] {
						j := m.jobs[r.JobID]
						j.state, j.attempts = engine.StateScheduled, j.attempts-1
					}
				}
			case op == 12: // heartbeat: applies exactly to open attempts, ends nothing
				rs := pickHeld(rt, "heartbeat")
				if rs == nil {
					continue
				}
				out, err := eng.Heartbeat(ctx, rs, nil)
				require.NoError(rt, err)
				seen := map[attemptKey]bool{}
				for i, r := range rs {
					k := attemptKey{r.JobID, r.RunLease}
					_, open := m.open[k]
					if open && !seen[k] {
						require.Equal(rt, engine.Applied, out[i].Outcome, "heartbeat receipt %d", i)
					}
					if !open {
						require.Equal(rt, engine.Stale, out[i].Outcome, "heartbeat receipt %d", i)
					}
					seen[k] = true
				}
			case op == 13: // cancel any known job
				if len(ids) == 0 {
					continue
				}
				id := rapid.SampledFrom(ids).Draw(rt, "cancel_job")
				j := m.jobs[id]
				res, err := eng.Cancel(ctx, id)
				if prunable(j.state) && errors.Is(err, engine.ErrNotFound) {
					continue // its evidence was pruned with its queue slot
				}
				if j.state == engine.StateCompleted || j.state == engine.StateFailed || j.state == engine.StateCancelled || j.state == engine.StateDeadLettered {
					if j.state == engine.StateDeadLettered {
						// A dead letter is not cancellable; the purge op removes it.
						require.NoError(rt, err)
						require.False(rt, res.Cancelled)
						continue
					}
					require.NoError(rt, err)
					require.Equal(rt, engine.CancelResult{Cancelled: false, Previous: j.state}, res)
					continue
				}
				if j.state == "purged" {
					require.ErrorIs(rt, err, engine.ErrNotFound)
					continue
				}
				require.NoError(rt, err)
				require.Equal(rt, engine.CancelResult{Cancelled: true, Previous: j.state}, res)
				if j.state == engine.StateRunning {
					for k := range m.open {
						if k.job == id {
							m.endAttempt(k)
						}
					}
				}
				m.finish(id, engine.StateCancelled)
			case op == 14: // rescue every open attempt (lost claims included), time pinned ahead
				rows, err := pool.Query(ctx, `SELECT job_id, state FROM braid.job_rescue(interval '1 second', 1000, now() + interval '1 day')`)
				require.NoError(rt, err)
				got := map[int64]engine.JobState{}
				for rows.Next() {
					var id int64
					var s string
					require.NoError(rt, rows.Scan(&id, &s))
					got[id] = engine.JobState(s)
				}
				require.NoError(rt, rows.Err())
				want := map[int64]engine.JobState{}
				for k := range m.open {
					m.endAttempt(k)
					want[k.job] = m.failForward(k.job, false)
				}
				require.Equal(rt, want, got)
			case op <= 16: // promote every deferred job, time pinned past every backoff (rescue runs a day ahead)
				var n int
				require.NoError(rt, pool.QueryRow(ctx, `SELECT braid.job_promote(1000, now() + interval '3 days')`).Scan(&n))
				want := 0
				for _, j := range m.jobs {
					if j.state == engine.StateScheduled || j.state == engine.StateRetryable {
						j.state = engine.StateAvailable
						want++
					}
				}
				require.Equal(rt, want, n)
			case op == 17: // dead-letter retry
				dlq := m.inState(ids, engine.StateDeadLettered)
				if len(dlq) == 0 {
					continue
				}
				id := rapid.SampledFrom(dlq).Draw(rt, "dlq_retry")
				res, err := eng.DeadLetterRetry(ctx, []int64{id})
				require.NoError(rt, err)
				j := m.jobs[id]
				key := j.queue + "/" + j.key
				if holder, held := m.uniqueBy[key]; j.key != "" && held {
					require.Equal(rt, []engine.DeadLetterRetryResult{{JobID: id, HeldBy: holder}}, res)
					continue
				}
				require.Equal(rt, []engine.DeadLetterRetryResult{{JobID: id, Retried: true}}, res)
				j.state, j.attempts = engine.StateAvailable, 0
				if j.key != "" {
					m.uniqueBy[key] = id
				}
			case op == 18: // dead-letter purge
				dlq := m.inState(ids, engine.StateDeadLettered)
				if len(dlq) == 0 {
					continue
				}
				id := rapid.SampledFrom(dlq).Draw(rt, "dlq_purge")
				purged, err := eng.DeadLetterPurge(ctx, []int64{id})
				require.NoError(rt, err)
				require.Equal(rt, []int64{id}, purged)
				m.jobs[id].state = "purged"
			case op == 20: // discard a live job into the dead-letter table
				var live []int64
				for _, id := range ids {
					if m.live(m.jobs[id]) {
						live = append(live, id)
					}
				}
				if len(live) == 0 {
					continue
				}
				id := rapid.SampledFrom(live).Draw(rt, "discard_job")
				j := m.jobs[id]
				res, err := eng.Discard(ctx, id)
				require.NoError(rt, err)
				require.Equal(rt, engine.CancelResult{Cancelled: true, Previous: j.state}, res)
				for k := range m.open {
					if k.job == id {
						m.endAttempt(k)
					}
				}
				m.finish(id, engine.StateDeadLettered)
			case op == 21: // operator retry of any known job
				if len(ids) == 0 {
					continue
				}
				id := rapid.SampledFrom(ids).Draw(rt, "retry_job")
				j := m.jobs[id]
				res, err := eng.Retry(ctx, id)
				if errors.Is(err, engine.ErrNotRetryable) && (j.state == engine.StateFailed || j.state == engine.StateCancelled) {
					_, gerr := eng.JobGet(ctx, id)
					require.ErrorIs(rt, gerr, engine.ErrNotFound, "job %d (%s) refused a retry but is still known", id, j.state)
					continue
				}
				if j.state != engine.StateFailed && j.state != engine.StateCancelled {
					require.ErrorIs(rt, err, engine.ErrNotRetryable, "job %d in state %s", id, j.state)
					continue
				}
				require.NoError(rt, err)
				key := j.queue + "/" + j.key
				if holder, held := m.uniqueBy[key]; j.key != "" && held {
					require.Equal(rt, engine.RetryResult{Previous: j.state, HeldBy: holder}, res)
					continue
				}
				require.Equal(rt, engine.RetryResult{Retried: true, Previous: j.state}, res)
				j.state, j.attempts = engine.StateAvailable, 0
				if j.key != "" {
					m.uniqueBy[key] = id
				}
			case op == 22: // re-home every open attempt outside the current claim slot; receipts keep working
				_, err := eng.Rehome(ctx, 0, 1000)
				require.NoError(rt, err)
			case op == 23: // re-home, then prune the oldest claim slot; receipts and counts must not notice
				_, err := eng.Rehome(ctx, 0, 1000)
				require.NoError(rt, err)
				res, err := eng.PruneClaimSlot(ctx, lease, time.Second)
				require.NoError(rt, err)
				require.Contains(rt, []string{"pruned", "nothing"}, res.Outcome, "after re-home no sealed claim slot holds an open attempt")
			case op == 24 || op == 30: // prune the oldest queue slot: carry pending rows, fold counts, truncate
				res, err := eng.PruneQueueSlot(ctx, lease, time.Second)
				require.NoError(rt, err)
				require.Contains(rt, []string{"pruned", "skipped", "nothing"}, res.Outcome)
				if res.Outcome == "pruned" { // the log just grew: maybe fold it or rebuild a bucket at once
					switch rapid.IntRange(0, 2).Draw(rt, "after_prune") {
					case 1:
						fold()
					case 2:
						rebuild()
					}
				}
			case op == 25 || op == 31: // advance the queue ring several slots, so prunes meet slots that hold jobs
				for range 6 {
					// A zero count delta marks the current slot as used without changing any count.
					_, err := pool.Exec(ctx, `INSERT INTO braid.count_delta (qslot, queue, state, bucket, delta)
						SELECT c.slot, 'filler', 5, 0, 0 FROM braid.ring_current('queue') c`)
					require.NoError(rt, err)
					rotateChecked(rt, ctx, pool, eng, lease, engine.QueueRing)
				}
			case op == 26: // fold the counter log into the counters
				fold()
			case op == 27 || op == 28: // rebuild one bucket, mostly one that holds folded history
				rebuild()
			case op == 29: // trim the ring ledgers
				res, err := eng.TrimRingLedger(ctx, lease, rapid.IntRange(1, 20).Draw(rt, "keep"), time.Minute)
				require.NoError(rt, err)
				require.Contains(rt, []string{"trimmed", "nothing"}, res.Outcome)
			default: // rotate a ring (it refuses while the next slot still holds rows)
				rotateChecked(rt, ctx, pool, eng, lease, rapid.SampledFrom([]engine.Ring{engine.QueueRing, engine.ClaimRing}).Draw(rt, "ring"))
			}
			checkInvariants(rt, ctx, pool, eng, m, queues, ids)
		}

		// Every live job is eventually claimable.
		_, err = pool.Exec(ctx, `SELECT braid.job_rescue(interval '1 second', 100000, now() + interval '1 day')`)
		require.NoError(rt, err)
		_, err = pool.Exec(ctx, `SELECT braid.job_promote(100000, now() + interval '2 days')`)
		require.NoError(rt, err)
		claimable := map[int64]bool{}
		for _, q := range queues {
			for {
				cs, err := eng.Claim(ctx, engine.ClaimRequest{Queue: q, LaneNo: -1, Max: 100})
				require.NoError(rt, err)
				if len(cs) == 0 {
					break
				}
				for _, c := range cs {
					claimable[c.Receipt.JobID] = true
				}
			}
		}
		for id, j := range m.jobs {
			if m.live(j) {
				if j.state == engine.StateRunning && j.attempts >= propMaxAttempts {
					continue // the final rescue exhausted it
				}
				require.True(rt, claimable[id], "live job %d (%s) was never claimable", id, j.state)
			}
		}
	})
}

// rotateChecked rotates a ring and, when it moved, checks the cursor moved onto an empty slot.
func rotateChecked(rt *rapid.T, ctx context.Context, pool *pgxpool.Pool, eng *engine.Engine, lease engine.Lease, ring engine.Ring) {
	res, err := eng.Rotate(ctx, lease, ring, 0)
	require.NoError(rt, err)
	if res.Outcome != "rotated" {
		return
	}
	var empty bool
	require.NoError(rt, pool.QueryRow(ctx, `SELECT braid.slot_empty($1, $2)`, string(ring), int16(res.Slot)).Scan(&empty))
	require.True(rt, empty, "ring %s rotated onto slot %d, which still holds rows", ring, res.Slot)
}

// terminalCode is the state code of counters, count deltas and terminal rows.
var terminalCode = map[engine.JobState]int{engine.StateCompleted: 5, engine.StateFailed: 6, engine.StateCancelled: 7}

func checkInvariants(rt *rapid.T, ctx context.Context, pool *pgxpool.Pool, eng *engine.Engine, m *model, queues []string, ids []int64) {
	checkStorage(rt, ctx, pool, m, queues)
	var multi int
	require.NoError(rt, pool.QueryRow(ctx, `SELECT count(*) FROM (
		SELECT c.batch_id, x FROM braid.closure c, unnest(c.members) x GROUP BY 1, 2 HAVING count(*) > 1) s`).Scan(&multi))
	require.Zero(rt, multi, "an attempt has more than one closure")

	for _, q := range queues {
		var want engine.Counts
		for _, j := range m.jobs {
			if j.queue != q {
				continue
			}
			switch j.state {
			case engine.StateAvailable:
				want.Available++
			case engine.StateScheduled:
				want.Scheduled++
			case engine.StateRetryable:
				want.Retryable++
			case engine.StateCompleted:
				want.Completed++
			case engine.StateFailed:
				want.Failed++
			case engine.StateCancelled:
				want.Cancelled++
			case engine.StateDeadLettered:
				want.DeadLettered++
			}
		}
		for k := range m.open {
			if m.jobs[k.job].queue == q {
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

	if len(ids) == 0 {
		return
	}
	for _, id := range []int64{ids[len(ids)-1], ids[len(ids)/2], ids[0]} {
		j := m.jobs[id]
		info, err := eng.JobGet(ctx, id)
		if prunable(j.state) && errors.Is(err, engine.ErrNotFound) {
			continue // finished, and its evidence was pruned with its queue slot
		}
		if j.state == "purged" {
			require.ErrorIs(rt, err, engine.ErrNotFound, "job %d", id)
			continue
		}
		require.NoError(rt, err, "job %d", id)
		require.Equal(rt, j.state, info.State, "job %d", id)
	}
}

// checkStorage checks the storage invariants that maintenance must keep.
func checkStorage(rt *rapid.T, ctx context.Context, pool *pgxpool.Pool, m *model, queues []string) {
	// Per-bucket terminal counts: folded history (counter, counter_log) plus the retained
	// evidence (count deltas, compact completions, by THE bucket rule) equal the model's
	// terminal jobs, bucket by bucket.
	wantBuckets := map[string]int64{}
	for id, j := range m.jobs {
		if code, ok := terminalCode[j.state]; ok {
			wantBuckets[fmt.Sprintf("%s/%d/%d", j.queue, code, id%256)]++
		}
	}
	gotBuckets := map[string]int64{}
	rows, err := pool.Query(ctx, `SELECT s.queue || '/' || s.state || '/' || s.bucket, sum(s.n)::bigint FROM (
		SELECT queue, state, bucket, n FROM braid.counter
		UNION ALL SELECT queue, state, bucket, n FROM braid.counter_log
		UNION ALL SELECT queue, state, bucket, delta FROM braid.count_delta
		UNION ALL SELECT l.queue, 5::smallint, braid.bucket(j), 1 FROM braid.completion c
			JOIN braid.lane l ON l.lane_id = c.lane_id CROSS JOIN LATERAL unnest(c.job_ids) j
		) s GROUP BY s.queue, s.state, s.bucket HAVING sum(s.n) <> 0`)
	require.NoError(rt, err)
	for rows.Next() {
		var k string
		var n int64
		require.NoError(rt, rows.Scan(&k, &n))
		gotBuckets[k] = n
	}
	require.NoError(rt, rows.Err())
	require.Equal(rt, wantBuckets, gotBuckets, "per-bucket terminal counts (queue/state/bucket)")

	// Open attempts are exactly the model's, and each one's ready row is still in its queue
	// slot (prune never reclaimed a slot an open attempt references).
	wantOpen := map[string]bool{}
	for k := range m.open {
		wantOpen[fmt.Sprintf("%d/%d", k.job, k.lease)] = true
	}
	gotOpen := map[string]bool{}
	rows, err = pool.Query(ctx, `SELECT o.job_id || '/' || o.run_lease,
		EXISTS (SELECT 1 FROM braid.ready r WHERE r.qslot = o.qslot AND r.lane_id = o.lane_id
		        AND r.lane_seq = o.lane_seq AND r.job_id = o.job_id)
		FROM (SELECT array_agg(b.cslot) AS cs, array_agg(b.batch_id) AS bs FROM braid.claim_batch b) k
		CROSS JOIN LATERAL braid.open_attempts(k.cs, k.bs) o WHERE k.cs IS NOT NULL`)
	require.NoError(rt, err)
	for rows.Next() {
		var k string
		var ready bool
		require.NoError(rt, rows.Scan(&k, &ready))
		require.True(rt, ready, "open attempt %s lost its ready row to a pruned queue slot", k)
		gotOpen[k] = true
	}
	require.NoError(rt, rows.Err())
	require.Equal(rt, wantOpen, gotOpen, "open attempts (job/run lease)")

	// Pending ready rows (past the lane cursor, not tombstoned) are exactly the model's available
	// jobs, one row each.
	var wantPending []int64
	for id, j := range m.jobs {
		if j.state == engine.StateAvailable {
			wantPending = append(wantPending, id)
		}
	}
	slices.Sort(wantPending)
	var gotPending []int64
	rows, err = pool.Query(ctx, `SELECT r.job_id FROM braid.lane l
		CROSS JOIN LATERAL (SELECT braid.lane_cursor(l.lane_id) AS seq) cur
		JOIN braid.ready r ON r.lane_id = l.lane_id AND r.lane_seq > cur.seq
		WHERE l.queue = ANY ($1)
		  AND NOT EXISTS (SELECT 1 FROM braid.tombstones(l.lane_id, r.lane_seq - 1, r.lane_seq))
		ORDER BY r.job_id`, queues)
	require.NoError(rt, err)
	for rows.Next() {
		var id int64
		require.NoError(rt, rows.Scan(&id))
		gotPending = append(gotPending, id)
	}
	require.NoError(rt, rows.Err())
	require.Equal(rt, wantPending, gotPending, "pending ready rows are the available jobs, once each")

	// Each ring's ledger is contiguous, ends at the cursor and keeps the generation of every
	// retained slot (a trim never goes further).
	rows, err = pool.Query(ctx, `SELECT r.ring, r.slots, count(g.generation), min(g.generation), max(g.generation),
		(SELECT c.generation FROM braid.ring_current(r.ring) c)
		FROM braid.ring r JOIN braid.ring_gen g ON g.ring = r.ring GROUP BY r.ring, r.slots`)
	require.NoError(rt, err)
	for rows.Next() {
		var ring string
		var slots int16
		var n, lo, hi, cur int64
		require.NoError(rt, rows.Scan(&ring, &slots, &n, &lo, &hi, &cur))
		require.Equal(rt, hi, cur, "ring %s: the cursor is the newest generation", ring)
		require.Equal(rt, hi-lo+1, n, "ring %s: the ledger has no gap", ring)
		require.GreaterOrEqual(rt, n, min(hi+1, int64(slots)), "ring %s: the ledger keeps every retained slot's generation", ring)
	}
	require.NoError(rt, rows.Err())
}
