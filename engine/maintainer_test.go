package engine_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/braidq/braid/engine"
)

// fastMaintainer is a Maintainer configuration with every interval short enough for a test.
func fastMaintainer(holder string, mp metric.MeterProvider) engine.MaintainerConfig {
	return engine.MaintainerConfig{
		Holder:             holder,
		LeaseTTL:           3 * time.Second, // renewed every second: a loaded machine must not lose it
		AcquireRetry:       50 * time.Millisecond,
		PromoteInterval:    20 * time.Millisecond,
		RescueInterval:     100 * time.Millisecond,
		RescueStale:        time.Minute,
		RehomeInterval:     100 * time.Millisecond,
		RehomeAfter:        2 * time.Second,
		RotateInterval:     20 * time.Millisecond,
		RotateMinAge:       20 * time.Millisecond,
		PruneInterval:      20 * time.Millisecond,
		LockTimeout:        50 * time.Millisecond,
		FoldInterval:       100 * time.Millisecond,
		StatsInterval:      100 * time.Millisecond,
		LedgerTrimInterval: 200 * time.Millisecond,
		RebuildInterval:    20 * time.Millisecond,
		MaxBackoff:         400 * time.Millisecond,
		MeterProvider:      mp,
	}
}

func TestMaintainerConfigValidate(t *testing.T) {
	t.Parallel()
	b := setup(t)
	_, err := engine.NewMaintainer(b.eng, engine.MaintainerConfig{
		LeaseTTL: 10 * time.Millisecond, PruneInterval: -time.Second, RotateMinAge: -1, BatchLimit: -5,
	})
	require.Error(t, err)
	for _, want := range []string{
		`invalid holder "": is required`,
		`invalid lease_ttl "10ms": must be >= 30ms`,
		`invalid prune_interval "-1s": must be > 0`,
		`invalid rotate_min_age "-1ns": must be > 0`,
		`invalid batch_limit -5: must be >= 1`,
	} {
		require.ErrorContains(t, err, want)
	}
	var verr *engine.ValidationError
	require.ErrorAs(t, err, &verr)

	m, err := engine.NewMaintainer(b.eng, engine.MaintainerConfig{Holder: "node-a"})
	require.NoError(t, err, "the defaults are valid")
	_, held := m.Lease()
	require.False(t, held)
	require.Empty(t, m.Status())
}

func TestNextDelay(t *testing.T) {
	t.Parallel()
	const iv, ceiling = 100 * time.Millisecond, time.Second
	for _, tc := range []struct {
		name    string
		prev    time.Duration
		backoff bool
		want    time.Duration
	}{
		{"a run that did its work waits the interval", 800 * time.Millisecond, false, iv},
		{"the first back-off doubles the interval", iv, true, 2 * iv},
		{"each back-off doubles the previous wait", 400 * time.Millisecond, true, 800 * time.Millisecond},
		{"back-off is capped", 800 * time.Millisecond, true, ceiling},
		{"a back-off after an immediate re-run starts from the interval", 0, true, 2 * iv},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, engine.NextDelay(iv, ceiling, tc.prev, tc.backoff))
		})
	}
	require.Equal(t, 5*time.Second, engine.NextDelay(5*time.Second, ceiling, 5*time.Second, true),
		"a cap below the interval never shortens the interval")
}

// runMaintainer runs m until the returned stop is called, which returns Run's result.
func runMaintainer(ctx context.Context, m *engine.Maintainer) (stop func() error) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	return func() error {
		cancel()
		return <-done
	}
}

func waitHeld(t *testing.T, m *engine.Maintainer) engine.Lease {
	t.Helper()
	require.Eventually(t, func() bool { _, held := m.Lease(); return held }, 10*time.Second, 5*time.Millisecond)
	l, _ := m.Lease()
	return l
}

// TestMaintainerReleasesLeaseWhenStopped: Run returns nil when its context ends, after releasing
// the lease: a successor takes it at once although the TTL is long, and the history records the
// acquisition, the release and the takeover in order.
func TestMaintainerReleasesLeaseWhenStopped(t *testing.T) {
	t.Parallel()
	b := setup(t)
	cfg := fastMaintainer("node-a", nil)
	cfg.LeaseTTL = time.Hour
	m, err := engine.NewMaintainer(b.eng, cfg)
	require.NoError(t, err)
	stop := runMaintainer(b.ctx, m)
	l := waitHeld(t, m)
	require.Equal(t, engine.Lease{Holder: "node-a", Epoch: 1}, l)
	require.ErrorIs(t, m.Run(b.ctx), engine.ErrMaintainerRunning, "one Run at a time")
	require.NoError(t, stop())
	_, held := m.Lease()
	require.False(t, held)

	next, ok, err := b.eng.LeaseAcquire(b.ctx, "node-b", time.Minute)
	require.NoError(t, err)
	require.True(t, ok, "the released lease is taken at once")
	require.Equal(t, int64(2), next.Epoch)
	released, err := b.eng.LeaseRelease(b.ctx, l)
	require.NoError(t, err)
	require.False(t, released, "a lease that is no longer held cannot be released")

	h, err := b.eng.LeaseHistory(b.ctx)
	require.NoError(t, err)
	require.Len(t, h, 3)
	require.Equal(t, engine.LeaseEvent{Seq: h[0].Seq, Epoch: 1, Holder: "node-a", At: h[0].At}, h[0], "the first lease has no predecessor")
	require.Equal(t, engine.LeaseEvent{Seq: h[1].Seq, Epoch: 1, Holder: "node-a", Released: true, At: h[1].At}, h[1])
	require.Equal(t, engine.LeaseEvent{Seq: h[2].Seq, Epoch: 2, Holder: "node-b", At: h[2].At,
		PreviousHolder: "node-a", PreviousEpoch: 1, PreviousExpiresAt: h[1].At}, h[2],
		"the takeover read the released lease's final expiry: the release time")
	require.False(t, h[2].At.Before(h[2].PreviousExpiresAt))
}

// TestMaintainerStepsDownWhenLeaseLost: when the lease expires under a running Maintainer (as
// if its renewals had stalled) and another holder takes it, Run returns ErrLeaseLost; the
// takeover is recorded with the lost lease as its predecessor.
func TestMaintainerStepsDownWhenLeaseLost(t *testing.T) {
	t.Parallel()
	b := setup(t)
	m, err := engine.NewMaintainer(b.eng, fastMaintainer("node-a", nil))
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() { done <- m.Run(b.ctx) }()
	l := waitHeld(t, m)

	b.exec(t, `UPDATE braid.maintenance_lease SET expires_at = clock_timestamp()`)
	intruder, ok, err := b.eng.LeaseAcquire(b.ctx, "node-b", time.Minute)
	require.NoError(t, err)
	require.True(t, ok)
	select {
	case err := <-done:
		require.ErrorIs(t, err, engine.ErrLeaseLost)
	case <-time.After(30 * time.Second):
		t.Fatal("the maintainer kept running after losing its lease")
	}
	_, held := m.Lease()
	require.False(t, held)

	h, err := b.eng.LeaseHistory(b.ctx)
	require.NoError(t, err)
	require.Len(t, h, 2, "a lost lease is not released")
	require.Equal(t, l.Epoch+1, intruder.Epoch)
	require.Equal(t, engine.LeaseEvent{Seq: h[1].Seq, Epoch: intruder.Epoch, Holder: "node-b", At: h[1].At,
		PreviousHolder: "node-a", PreviousEpoch: l.Epoch, PreviousExpiresAt: h[1].PreviousExpiresAt}, h[1])
	require.False(t, h[1].At.Before(h[1].PreviousExpiresAt))
}

func stepStatus(m *engine.Maintainer, name string) engine.StepStatus {
	for _, s := range m.Status() {
		if s.Step == name {
			return s
		}
	}
	return engine.StepStatus{}
}

// TestMaintainerBacksOffBlockedPrune: a writer holding a sealed claim slot's partition blocks
// its prune; the claim prune backs off (its wait doubles up to the cap) while the queue steps go
// on, and once the writer is gone the slot is pruned and the wait is back to the interval.
func TestMaintainerBacksOffBlockedPrune(t *testing.T) {
	t.Parallel()
	b := setup(t)
	_, err := b.eng.EnqueueMany(b.ctx, benchJobs("q", 3))
	require.NoError(t, err)
	_, err = b.eng.Complete(b.ctx, receipts(claimAll(t, b, "q", 10)))
	require.NoError(t, err)
	blocker, err := b.pool.Begin(b.ctx)
	require.NoError(t, err)
	defer blocker.Rollback(context.Background()) //nolint:errcheck // released below
	_, err = blocker.Exec(b.ctx, `LOCK TABLE braid.closure_0 IN ROW EXCLUSIVE MODE`)
	require.NoError(t, err)

	reader := sdkmetric.NewManualReader()
	cfg := fastMaintainer("node-a", sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)))
	m, err := engine.NewMaintainer(b.eng, cfg)
	require.NoError(t, err)
	stop := runMaintainer(b.ctx, m)
	defer func() { require.NoError(t, stop()) }()

	require.Eventually(t, func() bool {
		s := stepStatus(m, "prune_claim")
		return s.Outcome == "blocked" && s.Delay == cfg.MaxBackoff
	}, 20*time.Second, 5*time.Millisecond, "blocked prunes back off to the cap")
	s := stepStatus(m, "prune_claim")
	require.Contains(t, s.Reason, "slot 0: lock timeout")
	require.GreaterOrEqual(t, s.Runs, int64(4), "the wait doubled 100ms, 200ms, 400ms")
	require.Eventually(t, func() bool {
		var rm metricdata.ResourceMetrics
		require.NoError(t, reader.Collect(b.ctx, &rm))
		return counterValue(rm, "braid.maintenance.steps", "step", "prune_queue", "outcome", "pruned") > 0
	}, 20*time.Second, 5*time.Millisecond, "the queue slot is pruned meanwhile: a blocked step does not hold the others")
	require.Equal(t, "blocked", stepStatus(m, "prune_claim").Outcome)

	require.NoError(t, blocker.Rollback(b.ctx))
	require.Eventually(t, func() bool {
		s := stepStatus(m, "prune_claim")
		return s.Outcome == "nothing" && s.Delay == cfg.PruneInterval
	}, 20*time.Second, 5*time.Millisecond, "the slot is pruned and the wait resets")
	require.Equal(t, int64(0), b.scalar(t, `SELECT count(*) FROM braid.closure_0`))
}

// TestTwoMaintainersOnOneShard: two Maintainers with different holders compete for one shard's
// lease while traffic flows. Each runs sessions of random length (ending a session releases
// the lease); now and then the lease is expired under its holder, as if its renewals stalled.
// From the lease history: epochs grow by one per acquisition and no acquisition happened before
// the previous lease had expired or been released. Both survive (Run returns only nil or
// ErrLeaseLost), both lead at some point, and the work gets done: every job completes, the
// rings rotate and slots are pruned.
func TestTwoMaintainersOnOneShard(t *testing.T) {
	t.Parallel()
	b := setup(t)
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, seed))
	ctx, cancel := context.WithTimeout(b.ctx, 8*time.Second)
	defer cancel()

	type runner struct {
		m      *engine.Maintainer
		reader *sdkmetric.ManualReader
		rng    *rand.Rand
		lost   atomic.Int64
	}
	var runners []*runner
	for _, holder := range []string{"node-a", "node-b"} {
		r := &runner{reader: sdkmetric.NewManualReader(), rng: rand.New(rand.NewPCG(rng.Uint64(), 0))}
		m, err := engine.NewMaintainer(b.eng, fastMaintainer(holder, sdkmetric.NewMeterProvider(sdkmetric.WithReader(r.reader))))
		require.NoError(t, err)
		r.m = m
		runners = append(runners, r)
	}

	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for _, r := range runners {
		wg.Go(func() {
			for ctx.Err() == nil {
				session, end := context.WithTimeout(ctx, time.Duration(300+r.rng.IntN(1200))*time.Millisecond)
				err := r.m.Run(session)
				end()
				switch {
				case errors.Is(err, engine.ErrLeaseLost):
					r.lost.Add(1)
				case err != nil:
					errs <- err
					return
				}
			}
		})
	}
	expiries := rand.New(rand.NewPCG(rng.Uint64(), 1))
	wg.Go(func() { // the lease expires under its holder now and then
		for {
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Duration(300+expiries.IntN(700)) * time.Millisecond):
			}
			if _, err := b.pool.Exec(ctx, `UPDATE braid.maintenance_lease SET expires_at = clock_timestamp() WHERE expires_at > clock_timestamp()`); err != nil && ctx.Err() == nil {
				errs <- err
				return
			}
		}
	})
	var enqueued, completed atomic.Int64
	wg.Go(func() { // producer: some jobs due at once, some scheduled a moment ahead (promotion)
		for ctx.Err() == nil {
			jobs := benchJobs("q", 20)
			for i := range jobs[:5] {
				jobs[i].RunAt = time.Now().Add(100 * time.Millisecond)
			}
			if _, err := b.eng.EnqueueMany(context.WithoutCancel(ctx), jobs); err != nil {
				errs <- err
				return
			}
			enqueued.Add(int64(len(jobs)))
			time.Sleep(10 * time.Millisecond)
		}
	})
	for range 2 {
		wg.Go(func() {
			for ctx.Err() == nil {
				if err := claimAndComplete(context.WithoutCancel(ctx), b.eng, &completed); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}

	rotated := int64(0)
	for _, r := range runners {
		rotated += stepCount(t, r.reader, "rotate_queue", "rotated") + stepCount(t, r.reader, "rotate_claim", "rotated")
	}
	require.Positive(t, rotated, "the rings rotated while the maintainers competed")

	// Finish the work with one maintainer: the last scheduled jobs are promoted, and (on a slow
	// machine the contention phase may not get that far) the ring comes round to a queue prune.
	stop := runMaintainer(b.ctx, runners[0].m)
	require.Eventually(t, func() bool {
		require.NoError(t, claimAndComplete(b.ctx, b.eng, &completed))
		return completed.Load() == enqueued.Load() &&
			stepCount(t, runners[0].reader, "prune_queue", "pruned")+stepCount(t, runners[1].reader, "prune_queue", "pruned") > 0
	}, time.Minute, 10*time.Millisecond, "every job completes and queue slots are pruned")
	require.NoError(t, stop())
	require.Equal(t, engine.Counts{Completed: enqueued.Load()}, counts(t, b, "q"), "counts stay exact across prunes by both")
	for _, r := range runners {
		require.Zero(t, stepCount(t, r.reader, "", "error"), "no step failed")
	}

	h, err := b.eng.LeaseHistory(b.ctx)
	require.NoError(t, err)
	var acquisitions []engine.LeaseEvent
	holders := map[string]bool{}
	var releaseAt time.Time // the release of the current epoch, if any
	for _, ev := range h {
		if ev.Released {
			require.NotEmpty(t, acquisitions)
			cur := acquisitions[len(acquisitions)-1]
			require.Equal(t, cur.Epoch, ev.Epoch, "only the current epoch is released: %+v", ev)
			require.Equal(t, cur.Holder, ev.Holder)
			releaseAt = ev.At
			continue
		}
		if len(acquisitions) > 0 {
			prev := acquisitions[len(acquisitions)-1]
			require.Equal(t, prev.Epoch+1, ev.Epoch, "epochs grow by one per acquisition: %+v", ev)
			require.Equal(t, prev.Holder, ev.PreviousHolder)
			require.Equal(t, prev.Epoch, ev.PreviousEpoch)
			require.False(t, ev.At.Before(ev.PreviousExpiresAt), "acquired before the previous lease ended: %+v", ev)
			require.False(t, ev.At.Before(prev.At))
			if !releaseAt.IsZero() {
				require.Equal(t, releaseAt, ev.PreviousExpiresAt, "a released lease ended at its release")
			}
		}
		releaseAt = time.Time{}
		holders[ev.Holder] = true
		acquisitions = append(acquisitions, ev)
	}
	t.Logf("%d lease events, %d acquisitions, lost %d and %d times", len(h), len(acquisitions), runners[0].lost.Load(), runners[1].lost.Load())
	require.GreaterOrEqual(t, len(acquisitions), 4, "the lease changed hands")
	require.Len(t, holders, 2, "both maintainers led at some point")
	require.Positive(t, runners[0].lost.Load()+runners[1].lost.Load(), "an expired lease made its holder step down")

}

// stepCount is how many runs of a step (any step for "") had the outcome, by the Maintainer's
// braid.maintenance.steps counter.
func stepCount(t testing.TB, reader *sdkmetric.ManualReader, step, outcome string) int64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	require.NoError(t, reader.Collect(context.Background(), &rm))
	return counterValue(rm, "braid.maintenance.steps", "step", step, "outcome", outcome)
}

// claimAndComplete claims one batch of queue q and completes it.
func claimAndComplete(ctx context.Context, eng *engine.Engine, completed *atomic.Int64) error {
	cs, err := eng.Claim(ctx, engine.ClaimRequest{Queue: "q", LaneNo: -1, Max: 64})
	if err != nil || len(cs) == 0 {
		time.Sleep(2 * time.Millisecond)
		return err
	}
	if _, err := eng.Complete(ctx, receipts(cs)); err != nil {
		return err
	}
	completed.Add(int64(len(cs)))
	return nil
}

// TestMaintainerVacuumsRightAfterFold: a fold that wrote VACUUMs counter_log and counter as soon
// as no older snapshot is held, in the same run, not at its next run: the dead row versions a
// fold leaves behind are gone (pgstattuple) when the run reports folded, and the statistics
// agree once every backend has reported (the fold publishes its own at commit, so they cannot
// arrive after the VACUUM and count its rows again).
func TestMaintainerVacuumsRightAfterFold(t *testing.T) {
	t.Parallel()
	b := setup(t)
	require.NoError(t, b.eng.ConfigureQueue(b.ctx, "q", settings(1, 5, true, time.Minute)))
	admin := adminConn(t, b)
	_, err := admin.Exec(b.ctx, `CREATE EXTENSION IF NOT EXISTS pgstattuple`)
	require.NoError(t, err)
	cfg := fastMaintainer("node-a", nil)
	cfg.FoldInterval, cfg.RebuildInterval = 500*time.Millisecond, time.Hour
	m, err := engine.NewMaintainer(b.eng, cfg)
	require.NoError(t, err)
	stop := runMaintainer(b.ctx, m)
	defer func() { require.NoError(t, stop()) }()
	// Every step has run once (its connection is open): the fold found nothing to do.
	require.Eventually(t, func() bool { return len(m.Status()) == 12 }, 10*time.Second, 5*time.Millisecond)
	require.Equal(t, "nothing", stepStatus(m, "fold").Outcome)

	b.exec(t, `INSERT INTO braid.counter_log (queue, state, bucket, n) SELECT 'q', 5, g, 1 FROM generate_series(1, 255) g`)
	require.Eventually(t, func() bool { return stepStatus(m, "fold").Outcome == "folded" }, 10*time.Second, time.Millisecond)
	var dead, vacuumed int64
	require.NoError(t, admin.QueryRow(b.ctx, `SELECT dead_tuple_count FROM pgstattuple('braid.counter_log')`).Scan(&dead))
	require.NoError(t, admin.QueryRow(b.ctx, `SELECT vacuum_count FROM pg_stat_user_tables WHERE relid = 'braid.counter_log'::regclass`).Scan(&vacuumed))
	require.Equal(t, "folded", stepStatus(m, "fold").Outcome, "read before the fold's next run")
	require.Positive(t, vacuumed, "the fold's run vacuumed counter_log")
	require.Zero(t, dead, "the fold's dead row versions are gone")
	flushStats(t, b)
	require.Zero(t, b.scalar(t, `SELECT n_dead_tup FROM pg_stat_user_tables WHERE relid = 'braid.counter_log'::regclass`),
		"and the statistics say so once every backend has reported")
	require.Zero(t, b.scalar(t, `SELECT count(*) FROM braid.counter_log`))
	require.Equal(t, engine.Counts{Completed: 255}, counts(t, b, "q"))
}
