package main

import (
	"log/slog"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/braidq/braid/bench"
	"github.com/braidq/braid/tests/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// A short drain through River in both variants: every job completes once, the costs are read
// from River's own database, and the report names River's settings.
func TestRiverDrainsABacklogInBothVariants(t *testing.T) {
	dsn := pgtest.Shared(t, 0).NewDB(t, "")
	out := filepath.Join(t.TempDir(), "river.json")
	require.NoError(t, run(t.Context(), []string{"--dsn", dsn, "--json", out, "--mode", "drain", "--jobs", "400",
		"--workers", "20", "--duration", "30s", "--payload-bytes", "64"}))
	rep, err := bench.ReadReport(out)
	require.NoError(t, err)
	require.Len(t, rep.Runs, 2)
	for i, variant := range []string{VariantDefault, VariantTuned} {
		r := rep.Runs[i]
		t.Logf("%s: %.0f jobs/s, p99 %.1f ms, %.0f B WAL/job, %d dead tuples", r.Label(), r.CompletedPerS, r.E2EMs.P99, r.WALBytesPerJob, r.DeadTuplesEnd)
		require.Equal(t, "river", r.System)
		require.Equal(t, variant, r.Variant)
		require.Equal(t, int64(400), r.Completed)
		require.True(t, r.Drained)
		require.Zero(t, r.Lost)
		require.Zero(t, r.Duplicates)
		require.Zero(t, r.Unknown)
		require.Positive(t, r.WALBytesPerJob)
		require.Equal(t, "20", r.Settings["max_workers"])
	}
	require.Equal(t, "5ms", rep.Runs[1].Settings["fetch_cooldown"])
	require.Equal(t, "100ms", rep.Runs[0].Settings["fetch_cooldown"])
}

func TestOpenRefusesAnUnknownVariant(t *testing.T) {
	_, err := openSystem(t.Context(), "fast", "postgres://nowhere", 1, slog.New(slog.DiscardHandler))
	require.ErrorContains(t, err, `variant "fast"`)
}
