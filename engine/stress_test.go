package engine_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/braidq/braid/engine"
)

// stressLedger is the test's record of what the engine acknowledged during the stress run.
type stressLedger struct {
	// enq is held for writing by a producer from before its enqueue until it has recorded the
	// jobs, and for reading by every recorder of claims and endings: a job can be claimed the
	// moment its enqueue commits, before EnqueueMany has even returned its id.
	enq       sync.RWMutex
	mu        sync.Mutex
	queueOf   map[int64]string          // every enqueued job
	ids       []int64                   // the same, in enqueue order (the canceller samples it)
	claimed   map[attemptKey]bool       // every attempt a claim emitted
	ended     map[attemptKey]string     // attempts an ending call reported Applied, and by which call
	terminal  map[int64]engine.JobState // jobs a call said reached a terminal state
	completed map[string]int64          // per queue: completions reported Applied
	cancelled map[string]int64          // per queue: cancels reported Cancelled
	ops       map[string]int64          // what ran, for the log and the coverage checks
}

func (l *stressLedger) count(op string, n int64) {
	l.mu.Lock()
	l.ops[op] += n
	l.mu.Unlock()
}

func (l *stressLedger) enqueued(q string, res []engine.EnqueueResult) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, r := range res {
		l.queueOf[r.JobID] = q
		l.ids = append(l.ids, r.JobID)
	}
	l.ops["enqueue"] += int64(len(res))
}

func (l *stressLedger) claim(cs []engine.Claimed) error {
	l.enq.RLock()
	defer l.enq.RUnlock()
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, c := range cs {
		k := attemptKey{c.Receipt.JobID, c.Receipt.RunLease}
		if l.claimed[k] {
			return fmt.Errorf("duplicate attempt: job %d run lease %d emitted twice", k.job, k.lease)
		}
		if _, known := l.queueOf[k.job]; !known {
			return fmt.Errorf("claimed job %d that was never enqueued", k.job)
		}
		l.claimed[k] = true
	}
	l.ops["claim"] += int64(len(cs))
	return nil
}

// end records that call ended attempt r (Applied), and the job's terminal state if it reached one.
func (l *stressLedger) end(call string, r engine.Receipt, terminal engine.JobState) error {
	l.enq.RLock()
	defer l.enq.RUnlock()
	l.mu.Lock()
	defer l.mu.Unlock()
	k := attemptKey{r.JobID, r.RunLease}
	if prev, ok := l.ended[k]; ok {
		return fmt.Errorf("attempt job %d run lease %d ended twice: by %s and by %s", k.job, k.lease, prev, call)
	}
	if !l.claimed[k] {
		return fmt.Errorf("%s ended attempt job %d run lease %d that no claim emitted", call, k.job, k.lease)
	}
	l.ended[k] = call
	l.ops[call]++
	return l.terminalLocked(call, k.job, terminal)
}

func (l *stressLedger) terminalLocked(call string, job int64, s engine.JobState) error {
	switch s {
	case engine.StateCompleted, engine.StateFailed, engine.StateCancelled, engine.StateDeadLettered:
	default:
		return nil
	}
	if prev, ok := l.terminal[job]; ok {
		return fmt.Errorf("job %d reached two terminal states: %s, then %s by %s", job, prev, s, call)
	}
	l.terminal[job] = s
	switch s {
	case engine.StateCompleted:
		l.completed[l.queueOf[job]]++
	case engine.StateCancelled:
		l.cancelled[l.queueOf[job]]++
	}
	return nil
}

var stressQueues = []string{"s1", "s2", "s3"}

// stressDLQ: s1 and s3 dead-letter exhausted jobs, s2 fails them.
var stressDLQ = map[string]bool{"s1": true, "s2": false, "s3": true}

const stressMaxAttempts = 4

// TestStressMaintenanceUnderTraffic runs, concurrently and for a bounded time, producers
// (enqueue now and scheduled), workers (claim; complete, fail retryable or terminal, snooze, or
// abandon the attempt for rescue), a canceller, and maintenance under the lease held by the
// test: rotation of both rings, queue- and claim-slot prune, re-home, promotion, rescue, counter
// fold, per-bucket rebuild and ledger trim. It must end without deadlock (PostgreSQL's deadlock
// detector turns one into an error; a watchdog turns a stall into a failure with pg_locks and
// pg_stat_activity dumped), without a duplicate attempt (no (job, run lease) emitted twice or
// ended twice), and, once everything is drained, with every enqueued job in exactly one terminal
// state and Counts equal to the ledger. The printed seed fixes every random choice the actors
// make; the interleaving is the scheduler's.
func TestStressMaintenanceUnderTraffic(t *testing.T) {
	t.Parallel()
	seed := uint64(time.Now().UnixNano())
	t.Logf("stress seed %d", seed)
	runFor := 15 * time.Second
	if testing.Short() {
		runFor = 4 * time.Second
	}
	b := setup(t)
	for _, q := range stressQueues {
		require.NoError(t, b.eng.ConfigureQueue(b.ctx, q, settings(3, stressMaxAttempts, stressDLQ[q], time.Hour)))
	}
	lease, ok, err := b.eng.LeaseAcquire(b.ctx, "stress", time.Hour)
	require.NoError(t, err)
	require.True(t, ok)
	led := &stressLedger{queueOf: map[int64]string{}, claimed: map[attemptKey]bool{}, ended: map[attemptKey]string{},
		terminal: map[int64]engine.JobState{}, completed: map[string]int64{}, cancelled: map[string]int64{}, ops: map[string]int64{}}

	var (
		stop     atomic.Bool
		wg       sync.WaitGroup
		errMu    sync.Mutex
		failures []string
	)
	type actor struct {
		name     string
		progress atomic.Int64
		step     func(rng *rand.Rand) error
	}
	actors := []*actor{
		{name: "producer-1", step: func(rng *rand.Rand) error { return stressProduce(b, led, rng) }},
		{name: "producer-2", step: func(rng *rand.Rand) error { return stressProduce(b, led, rng) }},
		{name: "worker-1", step: func(rng *rand.Rand) error { return stressWork(b, led, rng) }},
		{name: "worker-2", step: func(rng *rand.Rand) error { return stressWork(b, led, rng) }},
		{name: "worker-3", step: func(rng *rand.Rand) error { return stressWork(b, led, rng) }},
		{name: "canceller", step: func(rng *rand.Rand) error { return stressCancel(b, led, rng) }},
		{name: "maintenance-ring", step: func(rng *rand.Rand) error { return stressRing(b, led, lease) }},
		{name: "maintenance-jobs", step: func(rng *rand.Rand) error { return stressJobs(b, led) }},
		{name: "maintenance-counters", step: func(rng *rand.Rand) error { return stressCounters(b, led, lease, rng) }},
	}
	for i, a := range actors {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(seed, uint64(i)))
			for !stop.Load() {
				if err := a.step(rng); err != nil {
					errMu.Lock()
					failures = append(failures, fmt.Sprintf("%s: %v", a.name, err))
					errMu.Unlock()
					stop.Store(true)
					return
				}
				a.progress.Add(1)
			}
		})
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()

	// Watchdog: every actor must keep making progress while the run lasts, and all must stop
	// within a bound once asked to; otherwise dump what the database is waiting on and fail.
	const stall = 30 * time.Second
	last := make([]int64, len(actors))
	lastMove := make([]time.Time, len(actors))
	for i := range lastMove {
		lastMove[i] = time.Now()
	}
	end := time.Now().Add(runFor)
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
watch:
	for {
		select {
		case <-done:
			break watch
		case now := <-tick.C:
			if now.After(end) {
				stop.Store(true)
			}
			for i, a := range actors {
				if p := a.progress.Load(); p != last[i] {
					last[i], lastMove[i] = p, now
				} else if now.Sub(lastMove[i]) > stall {
					stop.Store(true)
					t.Fatalf("stress (seed %d): %s made no progress for %s: deadlock or stall\n%s", seed, a.name, stall, dumpWaits(b))
				}
			}
		}
	}
	require.Empty(t, failures, "stress (seed %d) failed", seed)
	stressDrain(t, b, led)

	led.mu.Lock()
	defer led.mu.Unlock()
	t.Logf("stress (seed %d) ran %s: %v", seed, runFor, led.ops)
	for _, op := range []string{"enqueue", "claim", "complete", "fail", "snooze", "cancel", "promote", "rescue",
		"rotate_queue", "rotate_claim", "prune_queue", "prune_claim", "fold", "rebuild", "trim"} {
		require.Positive(t, led.ops[op], "stress (seed %d): no %s happened, the run proves nothing about it", seed, op)
	}
	for _, q := range stressQueues {
		var enq int64
		for _, jq := range led.queueOf {
			if jq == q {
				enq++
			}
		}
		got := counts(t, b, q)
		rest := enq - led.completed[q] - led.cancelled[q]
		want := engine.Counts{Completed: led.completed[q], Cancelled: led.cancelled[q]}
		if stressDLQ[q] {
			want.DeadLettered = rest
		} else {
			want.Failed = rest
		}
		require.Equal(t, want, got, "stress (seed %d): queue %s: %d enqueued, each in exactly one terminal state", seed, q, enq)
	}
	// Jobs the ledger knows a terminal state of (not rescued during the run) still say so, unless
	// their evidence was pruned with their queue slot.
	checked := 0
	for id, s := range led.terminal {
		info, err := b.eng.JobGet(b.ctx, id)
		if errors.Is(err, engine.ErrNotFound) && s != engine.StateDeadLettered {
			continue
		}
		require.NoError(t, err, "job %d", id)
		require.Equal(t, s, info.State, "job %d", id)
		if checked++; checked == 300 {
			break
		}
	}
}

// stressProduce enqueues a batch into a random queue: mostly now, some scheduled shortly ahead.
func stressProduce(b *bundle, led *stressLedger, rng *rand.Rand) error {
	q := stressQueues[rng.IntN(len(stressQueues))]
	jobs := make([]engine.Job, 1+rng.IntN(16))
	for i := range jobs {
		jobs[i] = engine.Job{Queue: q, Kind: "stress", Args: []byte(`{}`)}
		if rng.IntN(8) == 0 {
			jobs[i].RunAt = time.Now().Add(time.Duration(rng.IntN(200)) * time.Millisecond)
		}
		if rng.IntN(4) == 0 {
			jobs[i].OrderingKey = fmt.Sprintf("k%d", rng.IntN(5))
		}
	}
	led.enq.Lock()
	res, err := b.eng.EnqueueMany(b.ctx, jobs)
	if err == nil {
		led.enqueued(q, res)
	}
	led.enq.Unlock()
	if err != nil {
		return err
	}
	time.Sleep(time.Duration(rng.IntN(5)) * time.Millisecond)
	return nil
}

// stressWork claims from a random queue and ends each attempt one way or another; one in twenty
// is abandoned (the worker "crashed") and left to rescue.
func stressWork(b *bundle, led *stressLedger, rng *rand.Rand) error {
	q := stressQueues[rng.IntN(len(stressQueues))]
	cs, err := b.eng.Claim(b.ctx, engine.ClaimRequest{Queue: q, LaneNo: -1, Max: 1 + rng.IntN(24)})
	if err != nil {
		return err
	}
	if err := led.claim(cs); err != nil {
		return err
	}
	if len(cs) == 0 {
		time.Sleep(2 * time.Millisecond)
		return nil
	}
	var complete, snooze []engine.Receipt
	var fail []engine.Failure
	for _, c := range cs {
		switch n := rng.IntN(20); {
		case n == 0: // abandoned
		case n <= 2:
			fail = append(fail, engine.Failure{Receipt: c.Receipt, Error: "retry me", RetryAfter: 20 * time.Millisecond})
		case n == 3:
			fail = append(fail, engine.Failure{Receipt: c.Receipt, Error: "give up", Terminal: true})
		case n == 4:
			snooze = append(snooze, c.Receipt)
		default:
			complete = append(complete, c.Receipt)
		}
	}
	if len(complete) > 0 {
		out, err := b.eng.Complete(b.ctx, complete)
		if err != nil {
			return err
		}
		for i, o := range out {
			if o == engine.Applied {
				if err := led.end("complete", complete[i], engine.StateCompleted); err != nil {
					return err
				}
			}
		}
	}
	if len(fail) > 0 {
		out, err := b.eng.Fail(b.ctx, fail)
		if err != nil {
			return err
		}
		for i, o := range out {
			if o.Outcome == engine.Applied {
				if err := led.end("fail", fail[i].Receipt, o.State); err != nil {
					return err
				}
			}
		}
	}
	if len(snooze) > 0 {
		delays := make([]time.Duration, len(snooze))
		for i := range delays {
			delays[i] = 30 * time.Millisecond
		}
		out, err := b.eng.Snooze(b.ctx, snooze, delays)
		if err != nil {
			return err
		}
		for i, o := range out {
			if o == engine.Applied {
				if err := led.end("snooze", snooze[i], ""); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// stressCancel cancels a random known job in whatever state it is.
func stressCancel(b *bundle, led *stressLedger, rng *rand.Rand) error {
	time.Sleep(5 * time.Millisecond)
	led.mu.Lock()
	if len(led.ids) == 0 {
		led.mu.Unlock()
		return nil
	}
	id := led.ids[rng.IntN(len(led.ids))]
	led.mu.Unlock()
	res, err := b.eng.Cancel(b.ctx, id)
	if errors.Is(err, engine.ErrNotFound) {
		return nil // finished, and its evidence pruned with its queue slot
	}
	if err != nil {
		return err
	}
	if !res.Cancelled {
		return nil
	}
	led.mu.Lock()
	defer led.mu.Unlock()
	led.ops["cancel"]++
	return led.terminalLocked("cancel", id, engine.StateCancelled)
}

// stressRing rotates both rings and prunes a claim slot and a queue slot.
func stressRing(b *bundle, led *stressLedger, l engine.Lease) error {
	for _, ring := range []engine.Ring{engine.QueueRing, engine.ClaimRing} {
		r, err := b.eng.Rotate(b.ctx, l, ring, 30*time.Millisecond)
		if err != nil {
			return err
		}
		led.count("rotate_"+string(ring)+"_"+r.Outcome, 1)
		if r.Outcome == "rotated" {
			led.count("rotate_"+string(ring), 1)
		}
	}
	if _, err := b.eng.Rehome(b.ctx, 100*time.Millisecond, 100); err != nil {
		return err
	}
	pc, err := b.eng.PruneClaimSlot(b.ctx, l, 150*time.Millisecond)
	if err != nil {
		return err
	}
	led.count("prune_claim_"+pc.Outcome, 1)
	if pc.Outcome == "pruned" {
		led.count("prune_claim", 1)
	}
	pq, err := b.eng.PruneQueueSlot(b.ctx, l, 500*time.Millisecond)
	if err != nil {
		return err
	}
	led.count("prune_queue_"+pq.Outcome, 1)
	if pq.Outcome == "pruned" {
		led.count("prune_queue", 1)
	}
	time.Sleep(10 * time.Millisecond)
	return nil
}

// stressJobs promotes due deferred jobs and rescues attempts abandoned for 300 ms.
func stressJobs(b *bundle, led *stressLedger) error {
	n, err := b.eng.Promote(b.ctx, 200)
	if err != nil {
		return err
	}
	led.count("promote", int64(n))
	r, err := b.eng.Rescue(b.ctx, 300*time.Millisecond, 200)
	if err != nil {
		return err
	}
	led.count("rescue", int64(r.Retried+r.DeadLettered+r.Failed))
	time.Sleep(10 * time.Millisecond)
	return nil
}

// stressCounters folds the counter log, rebuilds a random bucket and trims the ring ledger.
func stressCounters(b *bundle, led *stressLedger, l engine.Lease, rng *rand.Rand) error {
	f, err := b.eng.FoldCounters(b.ctx, l, time.Minute)
	if err != nil {
		return err
	}
	led.count("fold_"+f.Outcome, 1)
	if f.Outcome == "folded" {
		led.count("fold", 1)
	}
	for range 4 {
		r, err := b.eng.RebuildCounters(b.ctx, l, rng.IntN(engine.Buckets), time.Minute)
		if err != nil {
			return err
		}
		if r.Outcome == "rebuilt" {
			led.count("rebuild", 1)
		}
	}
	tr, err := b.eng.TrimRingLedger(b.ctx, l, 1, time.Minute)
	if err != nil {
		return err
	}
	led.count("trim", int64(tr.Deleted))
	time.Sleep(20 * time.Millisecond)
	return nil
}

// stressDrain ends every job left after the run: rescue the abandoned attempts, promote every
// deferred job with time pinned ahead, claim and complete what is available, until no queue
// holds a live job.
func stressDrain(t *testing.T, b *bundle, led *stressLedger) {
	t.Helper()
	for round := 0; ; round++ {
		require.Less(t, round, 4*stressMaxAttempts+10, "the drain does not converge")
		rows, err := b.pool.Query(b.ctx, `SELECT job_id, state FROM braid.job_rescue(interval '1 second', 100000, now() + interval '1 day')`)
		require.NoError(t, err)
		for rows.Next() {
			var id int64
			var s string
			require.NoError(t, rows.Scan(&id, &s))
			led.mu.Lock()
			err := led.terminalLocked("drain rescue", id, engine.JobState(s))
			led.mu.Unlock()
			require.NoError(t, err)
		}
		require.NoError(t, rows.Err())
		_, err = b.pool.Exec(b.ctx, `SELECT braid.job_promote(100000, now() + interval '3 days')`)
		require.NoError(t, err)
		live := int64(0)
		for _, q := range stressQueues {
			for {
				cs := claimAll(t, b, q, 1000)
				if len(cs) == 0 {
					break
				}
				require.NoError(t, led.claim(cs))
				out, err := b.eng.Complete(b.ctx, receipts(cs))
				require.NoError(t, err)
				for i, o := range out {
					require.Equal(t, engine.Applied, o)
					require.NoError(t, led.end("complete", cs[i].Receipt, engine.StateCompleted))
				}
			}
			c := counts(t, b, q)
			live += c.Available + c.Running + c.Scheduled + c.Retryable
		}
		if live == 0 {
			return
		}
	}
}

// dumpWaits describes what the database's backends are doing and waiting for, on a connection
// of its own (the test's pool may be the thing that is stuck).
func dumpWaits(b *bundle) string {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	pool, err := pgxpool.New(ctx, b.dsn)
	if err != nil {
		return "dump: " + err.Error()
	}
	defer pool.Close()
	var sb strings.Builder
	for _, q := range []string{
		`SELECT 'pid ' || pid || ' ' || coalesce(state, '') || ' wait ' || coalesce(wait_event_type || ':' || wait_event, '-') ||
		        ' blocked by ' || pg_blocking_pids(pid)::text || ' xact ' || coalesce((clock_timestamp() - xact_start)::text, '-') ||
		        ': ' || left(query, 200)
		 FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() ORDER BY pid`,
		`SELECT 'lock ' || locktype || ' ' || mode || CASE WHEN granted THEN ' granted' ELSE ' WAITING' END || ' pid ' || pid ||
		        ' ' || coalesce(relation::regclass::text, '') || coalesce(' classid ' || classid || ' objid ' || objid, '') ||
		        coalesce(' xid ' || transactionid, '')
		 FROM pg_locks WHERE database = (SELECT oid FROM pg_database WHERE datname = current_database()) OR locktype = 'transactionid'
		 ORDER BY granted, pid`,
	} {
		rows, err := pool.Query(ctx, q)
		if err != nil {
			fmt.Fprintf(&sb, "dump: %v\n", err)
			continue
		}
		for rows.Next() {
			var s string
			if err := rows.Scan(&s); err == nil {
				sb.WriteString(s + "\n")
			}
		}
		rows.Close()
	}
	return sb.String()
}
