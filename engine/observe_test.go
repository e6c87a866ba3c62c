package engine_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/braidq/braid/engine"
)

// withoutTimings is a prune result without its durations, for comparing outcomes.
func withoutTimings(r engine.PruneResult) engine.PruneResult {
	r.LockWait, r.Truncate, r.Commit = 0, 0, 0
	return r
}

// flushStats makes this backend's table statistics visible in pg_stat_user_tables and waits out
// the other backends' flush interval (1s).
func flushStats(t testing.TB, b *bundle) {
	t.Helper()
	_, err := b.pool.Exec(b.ctx, `SELECT pg_stat_force_next_flush()`)
	require.NoError(t, err)
	time.Sleep(1100 * time.Millisecond)
}

func tableStats(s engine.MaintenanceStats, table string) engine.TableStats {
	for _, t := range s.Tables {
		if t.Table == table {
			return t
		}
	}
	return engine.TableStats{Table: table + " (missing)", LiveTuples: -1, DeadTuples: -1}
}

// TestMaintenanceStats: the stats follow real work: rows land in the current slot, rotation
// moves the cursor and leaves the old slot in use until prune, prune frees it, a fold's DELETE
// shows up as dead tuples of counter_log (partitions are summed into their parent table), and a
// snapshot held by another backend shows up as the pinned horizon's age.
func TestMaintenanceStats(t *testing.T) {
	t.Parallel()
	b := setup(t)
	l, ok, err := b.eng.LeaseAcquire(b.ctx, "node-a", time.Hour)
	require.NoError(t, err)
	require.True(t, ok)

	s, err := b.eng.MaintenanceStats(b.ctx)
	require.NoError(t, err)
	require.Len(t, s.Rings, 2)
	require.Equal(t, engine.RingStats{Ring: engine.QueueRing, StartedAt: s.Rings[0].StartedAt, SlotsInUse: 0}, s.Rings[0])
	require.Equal(t, engine.ClaimRing, s.Rings[1].Ring)

	_, err = b.eng.EnqueueMany(b.ctx, benchJobs("q", 30))
	require.NoError(t, err)
	s, err = b.eng.MaintenanceStats(b.ctx)
	require.NoError(t, err)
	require.Equal(t, int64(30), s.Rings[0].CurrentRows, "30 ready rows in the current queue slot")
	require.Equal(t, 1, s.Rings[0].SlotsInUse)

	cs := claimAll(t, b, "q", 100)
	require.Len(t, cs, 30)
	_, err = b.eng.Complete(b.ctx, receipts(cs))
	require.NoError(t, err)
	for _, ring := range []engine.Ring{engine.QueueRing, engine.ClaimRing} {
		res, err := b.eng.Rotate(b.ctx, l, ring, 0)
		require.NoError(t, err)
		require.Equal(t, "rotated", res.Outcome)
	}
	s, err = b.eng.MaintenanceStats(b.ctx)
	require.NoError(t, err)
	require.Equal(t, engine.RingStats{Ring: engine.QueueRing, Generation: 1, StartedAt: s.Rings[0].StartedAt, Slot: 1, SlotsInUse: 1}, s.Rings[0],
		"the sealed slot holds its rows until prune; the new current slot is empty")
	require.Equal(t, engine.RingStats{Ring: engine.ClaimRing, Generation: 1, StartedAt: s.Rings[1].StartedAt, Slot: 1, SlotsInUse: 1}, s.Rings[1])

	pc, err := b.eng.PruneClaimSlot(b.ctx, l, time.Second)
	require.NoError(t, err)
	require.Equal(t, "pruned", pc.Outcome)
	pq, err := b.eng.PruneQueueSlot(b.ctx, l, time.Second)
	require.NoError(t, err)
	require.Equal(t, "pruned", pq.Outcome)
	fold, err := b.eng.FoldCounters(b.ctx, l, time.Hour)
	require.NoError(t, err)
	require.Equal(t, "folded", fold.Outcome)
	require.Positive(t, fold.Rows)

	flushStats(t, b)
	s, err = b.eng.MaintenanceStats(b.ctx)
	require.NoError(t, err)
	require.Equal(t, 0, s.Rings[0].SlotsInUse, "prune freed the sealed queue slot")
	require.Equal(t, 0, s.Rings[1].SlotsInUse)
	require.Equal(t, int64(0), s.Rings[0].CurrentRows)
	require.GreaterOrEqual(t, tableStats(s, "counter_log").DeadTuples, fold.Rows, "the fold deleted the counter_log rows it moved")
	require.Equal(t, int64(0), tableStats(s, "ready").DeadTuples+tableStats(s, "ready").LiveTuples, "the ready partitions were truncated")
	var sum int64
	for _, tb := range s.Tables {
		require.NotRegexp(t, `_[0-9]+$`, tb.Table, "partitions are summed into their parent")
		sum += tb.DeadTuples
	}
	require.Equal(t, sum, s.DeadTuples)
	require.Less(t, s.HorizonPinnedFor, time.Second)

	pin, err := b.pool.Begin(b.ctx)
	require.NoError(t, err)
	defer pin.Rollback(context.Background()) //nolint:errcheck // released by the defer
	_, err = pin.Exec(b.ctx, `SET TRANSACTION ISOLATION LEVEL REPEATABLE READ`)
	require.NoError(t, err)
	_, err = pin.Exec(b.ctx, `SELECT count(*) FROM braid.queue`)
	require.NoError(t, err)
	time.Sleep(300 * time.Millisecond)
	s, err = b.eng.MaintenanceStats(b.ctx)
	require.NoError(t, err)
	require.GreaterOrEqual(t, s.HorizonPinnedFor, 300*time.Millisecond, "the held snapshot pins the horizon")
}

// TestMaintainerMetrics: a Maintainer over real traffic records real values in the instruments
// of the meter provider it was given: the generation advanced, a prune counted as pruned with
// its phases timed, step durations, dead tuples per table and the pinned horizon's age.
func TestMaintainerMetrics(t *testing.T) {
	t.Parallel()
	b := setup(t)
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	m, err := engine.NewMaintainer(b.eng, fastMaintainer("node-a", mp))
	require.NoError(t, err)

	ctx, cancel := context.WithCancel(b.ctx)
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	defer func() {
		cancel()
		require.NoError(t, <-done)
	}()
	for range 30 {
		_, err := b.eng.EnqueueMany(b.ctx, benchJobs("q", 20))
		require.NoError(t, err)
		for {
			cs := claimAll(t, b, "q", 100)
			if len(cs) == 0 {
				break
			}
			_, err := b.eng.Complete(b.ctx, receipts(cs))
			require.NoError(t, err)
		}
		time.Sleep(30 * time.Millisecond)
	}
	var rm metricdata.ResourceMetrics
	require.Eventually(t, func() bool {
		require.NoError(t, reader.Collect(b.ctx, &rm))
		return counterValue(rm, "braid.maintenance.steps", "step", "prune_queue", "outcome", "pruned") > 0 &&
			gaugeValue(rm, "braid.table.dead_tuples", "table", "ready") >= 0
	}, 30*time.Second, 50*time.Millisecond, "a queue slot prune is counted and the stats step recorded")

	require.Equal(t, engine.Counts{Completed: 30 * 20}, counts(t, b, "q"), "counts stay exact while prune, fold and rebuild run")
	gen := gaugeValue(rm, "braid.ring.generation", "ring", "queue")
	require.Positive(t, gen, "the queue ring's generation advanced")
	s, err := b.eng.MaintenanceStats(b.ctx)
	require.NoError(t, err)
	require.LessOrEqual(t, gen, float64(s.Rings[0].Generation), "the gauge reports a real generation")
	require.Positive(t, counterValue(rm, "braid.maintenance.steps", "step", "rotate_queue", "outcome", "rotated"))
	require.Positive(t, histogramCount(rm, "braid.maintenance.step.duration", "step", "prune_queue", "outcome", "pruned"))
	require.Positive(t, histogramCount(rm, "braid.maintenance.prune.phase.duration", "step", "prune_queue", "phase", "truncate"))
	require.GreaterOrEqual(t, gaugeValue(rm, "braid.horizon.pinned_age"), 0.0)
	require.GreaterOrEqual(t, gaugeValue(rm, "braid.table.dead_tuples", "table", "counter_log"), 0.0)
	require.Positive(t, counterValue(rm, "braid.maintenance.steps", "step", "rebuild"), "the counter rebuild step ran")
	require.Positive(t, counterValue(rm, "braid.maintenance.steps", "step", "ledger_trim"), "the ledger trim step ran")
	require.Zero(t, counterValue(rm, "braid.maintenance.steps", "outcome", "error"), "no step failed")
	require.Eventually(t, func() bool {
		require.NoError(t, reader.Collect(b.ctx, &rm))
		return counterValue(rm, "braid.maintenance.steps", "step", "fold", "outcome", "folded") > 0
	}, 30*time.Second, 50*time.Millisecond)
	require.Positive(t, b.scalar(t, `SELECT vacuum_count FROM pg_stat_user_tables WHERE schemaname = 'braid' AND relname = 'counter_log'`),
		"a fold that wrote vacuums the table it churned")
}

// matches says whether an attribute set has every (key, value) pair of kv; a pair with an empty
// value matches any value.
func matches(set attribute.Set, kv ...string) bool {
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] == "" {
			continue
		}
		v, ok := set.Value(attribute.Key(kv[i]))
		if !ok || v.Emit() != kv[i+1] {
			return false
		}
	}
	return true
}

func instrument(rm metricdata.ResourceMetrics, name string) (metricdata.Aggregation, bool) {
	for _, sm := range rm.ScopeMetrics {
		for _, mt := range sm.Metrics {
			if mt.Name == name {
				return mt.Data, true
			}
		}
	}
	return nil, false
}

func counterValue(rm metricdata.ResourceMetrics, name string, kv ...string) int64 {
	data, _ := instrument(rm, name)
	sum, _ := data.(metricdata.Sum[int64])
	var n int64
	for _, p := range sum.DataPoints {
		if matches(p.Attributes, kv...) {
			n += p.Value
		}
	}
	return n
}

func histogramCount(rm metricdata.ResourceMetrics, name string, kv ...string) uint64 {
	data, _ := instrument(rm, name)
	h, _ := data.(metricdata.Histogram[float64])
	var n uint64
	for _, p := range h.DataPoints {
		if matches(p.Attributes, kv...) {
			n += p.Count
		}
	}
	return n
}

// gaugeValue returns the gauge's value for the attributes, or -1 when it has no such point.
func gaugeValue(rm metricdata.ResourceMetrics, name string, kv ...string) float64 {
	data, _ := instrument(rm, name)
	switch g := data.(type) {
	case metricdata.Gauge[int64]:
		for _, p := range g.DataPoints {
			if matches(p.Attributes, kv...) {
				return float64(p.Value)
			}
		}
	case metricdata.Gauge[float64]:
		for _, p := range g.DataPoints {
			if matches(p.Attributes, kv...) {
				return p.Value
			}
		}
	}
	return -1
}
