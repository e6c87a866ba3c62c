package braidsys_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/braidq/braid/bench"
	"github.com/braidq/braid/bench/braidsys"
	"github.com/braidq/braid/engine"
	"github.com/braidq/braid/router"
	"github.com/braidq/braid/shard"
	"github.com/braidq/braid/tests/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// open returns braid on one fresh shard (catalog on it) with the given workers.
func open(t *testing.T, workers int) *braidsys.System {
	t.Helper()
	c := pgtest.Shared(t, 0)
	tmpl := c.Template(t, "bench-shard-1", func(ctx context.Context, dsn string) error {
		pool, err := pgxpool.New(ctx, dsn)
		if err != nil {
			return err
		}
		defer pool.Close()
		if _, err := engine.Migrate(ctx, pool, engine.MigrateOptions{ShardID: 1, Cluster: "bench"}); err != nil {
			return err
		}
		_, _, err = router.MigrateCatalog(ctx, pool, "")
		return err
	})
	cfg := shard.Config{ID: 1, Name: "pg-1", DSN: c.NewDB(t, tmpl), Cluster: "bench"}
	sys, err := braidsys.Open(t.Context(), braidsys.Config{Shards: []shard.Config{cfg}, Workers: workers}, braidsys.Deps{})
	require.NoError(t, err)
	t.Cleanup(sys.Close)
	return sys
}

func logResult(t *testing.T, r bench.Result) {
	for _, s := range r.Samples {
		t.Logf("  %5.2fs %-7s enqueued %6.0f/s completed %6.0f/s p99 %7.1f ms depth %d", s.T, s.Phase, s.EnqueuedPerS, s.CompletedPerS, s.E2EMs.P99, s.Depth)
	}
	t.Logf("%s %s: enqueued %.0f/s, completed %d (%.0f/s), p50/p99 %.1f/%.1f ms, %.0f B WAL/job, dead tuples end %d max %d, %.1f µs CPU/job",
		r.Label(), r.Mode, r.EnqueuedPerS, r.Completed, r.CompletedPerS, r.E2EMs.P50, r.E2EMs.P99, r.WALBytesPerJob,
		r.DeadTuplesEnd, r.DeadTuplesMax, r.CPUSPerJob*1e6)
}

// A short drain of 2000 jobs through braid's router client and worker node: every job is
// executed and durably completed exactly once, and the costs come from the shard.
func TestDrainRunCompletesEveryJobOnceAndMeasuresItsCosts(t *testing.T) {
	sys := open(t, 20)
	res, err := bench.Run(t.Context(), bench.Config{Mode: bench.ModeDrain, Jobs: 2000, Workers: 20, Duration: 60 * time.Second, Batch: 250}, sys, bench.Deps{})

	require.NoError(t, err)
	logResult(t, res)
	require.Equal(t, "braid", res.System)
	require.Equal(t, int64(2000), res.Enqueued)
	require.Equal(t, int64(2000), res.Completed)
	require.True(t, res.Drained)
	require.Zero(t, res.Lost)
	require.Zero(t, res.Duplicates)
	require.Zero(t, res.Unknown)
	require.Positive(t, res.CompletedPerS)
	require.Positive(t, res.WALBytesPerJob)
	require.Positive(t, res.CPUSPerJob)
	require.Positive(t, res.E2EMs.P50)
	require.LessOrEqual(t, res.E2EMs.P50, res.E2EMs.P99)
	require.Len(t, res.Databases, 1)
	require.Equal(t, "pg-1", res.Databases[0].Name)
	require.NotEmpty(t, res.Databases[0].Tables, "dead tuples are read per table of braid's schema")
	require.NotEmpty(t, res.Samples)
	var done float64
	for _, s := range res.Samples {
		require.Equal(t, bench.PhaseMeasure, s.Phase)
		done += s.CompletedPerS // rates × 1 s, except the last partial sample
	}
	require.Positive(t, done)

	// The report of a real run carries the fields the issue lists.
	b, err := json.Marshal(bench.NewReport(res))
	require.NoError(t, err)
	var raw struct{ Runs []map[string]any }
	require.NoError(t, json.Unmarshal(b, &raw))
	for _, f := range []string{"system", "variant", "mode", "shards", "workers", "offered_per_s", "enqueued_per_s", "completed_per_s",
		"e2e_ms", "wal_bytes_per_job", "dead_tuples_end", "dead_tuples_max", "cpu_s_per_job", "lost", "duplicates", "samples"} {
		require.Contains(t, raw.Runs[0], f)
	}
}

// An offered run never offers more than the rate (plus the catch-up bound), measures only the
// window after warmup, and then drains the backlog so nothing is reported lost.
func TestOfferedRunPacesTheProducerAndDrainsAfterTheWindow(t *testing.T) {
	sys := open(t, 20)
	const rate = 500
	cfg := bench.Config{Mode: bench.ModeOffered, Rate: rate, Workers: 20, Warmup: time.Second, Duration: 2 * time.Second, Batch: 50}
	res, err := bench.Run(t.Context(), cfg, sys, bench.Deps{})
	require.NoError(t, err)
	logResult(t, res)
	require.Equal(t, float64(rate), res.OfferedPerS)
	require.InDelta(t, 2.0, res.DurationS, 0.5, "the measured window")
	require.LessOrEqual(t, res.EnqueuedPerS, rate*1.1+float64(rate)*cfg.WithDefaults().CatchUp.Seconds()/res.DurationS)
	require.Positive(t, res.Completed)
	require.Zero(t, res.Lost, "the backlog drained after the window")
	require.Zero(t, res.Duplicates)
	phases := map[string]int{}
	for _, s := range res.Samples {
		phases[s.Phase]++
	}
	require.Equal(t, 1, phases[bench.PhaseWarmup])
	require.Equal(t, 2, phases[bench.PhaseMeasure])
}

// A depth run keeps about Depth jobs outstanding: the producer never runs far ahead of the
// completions.
func TestDepthRunKeepsTheBacklogNearItsTarget(t *testing.T) {
	sys := open(t, 10)
	cfg := bench.Config{Mode: bench.ModeDepth, Depth: 300, Workers: 10, Duration: 2 * time.Second, Batch: 50, Producers: 2}
	res, err := bench.Run(t.Context(), cfg, sys, bench.Deps{})
	require.NoError(t, err)
	logResult(t, res)
	require.Equal(t, 300, res.DepthTarget)
	require.Positive(t, res.Completed)
	require.Zero(t, res.Lost)
	require.Zero(t, res.Duplicates)
	for _, s := range res.Samples {
		require.LessOrEqual(t, s.Depth, int64(300+cfg.Producers*cfg.Batch), "sample at %.1fs", s.T)
	}
}
