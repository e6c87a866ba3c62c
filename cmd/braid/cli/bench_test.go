package cli_test

import (
	"image/png"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/braidq/braid/bench"
	"github.com/braidq/braid/cmd/braid/cli"
)

func TestBenchRefusesBadFlagsNamingEachProblem(t *testing.T) {
	t.Parallel()
	code, _, stderr := run(t, "bench", "-mode", "sprint", "-workers", "0", "-compare", "sidekiq", "-shards", "0", "-durability", "eventual")
	require.Equal(t, cli.ExitUsage, code)
	for _, want := range []string{`mode "sprint"`, "workers 0", `-compare "sidekiq"`, "-shards 0", `-durability "eventual"`} {
		require.Contains(t, stderr, want)
	}
	empty := t.TempDir()
	code, _, stderr = run(t, "bench", "-compare", "river", "-river-dir", empty)
	require.Equal(t, cli.ExitUsage, code, "a missing River module is refused before braid runs")
	require.Contains(t, stderr, "-river-dir "+empty+": not the River comparison module")
	code, _, stderr = run(t, "bench", "-shards", "2", "-dsn", "postgres://braid@127.0.0.1/x")
	require.Equal(t, cli.ExitUsage, code)
	require.Contains(t, stderr, "-shards 2: with -dsn the shards are the 1 servers named")
}

// `braid bench` on a throwaway local server: a short drain through braid writes the JSON,
// markdown and PNG outputs, and its ledger finds every job completed once.
func TestBenchDrainWritesEveryOutput(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	js, md, plot := filepath.Join(dir, "b.json"), filepath.Join(dir, "b.md"), filepath.Join(dir, "b.png")
	code, stdout, stderr := run(t, "bench", "-mode", "drain", "-jobs", "500", "-workers", "10", "-duration", "60s",
		"-json", js, "-markdown", md, "-plot", plot)
	require.Equal(t, cli.ExitOK, code, stderr)
	require.Contains(t, stdout, "| braid | default | drain | 1 | 10 |")

	rep, err := bench.ReadReport(js)
	require.NoError(t, err)
	require.Len(t, rep.Runs, 1)
	r := rep.Runs[0]
	require.Equal(t, int64(500), r.Completed)
	require.True(t, r.Drained)
	require.Zero(t, r.Lost)
	require.Zero(t, r.Duplicates)
	require.Equal(t, "crash-safe", r.Settings["server_durability"])

	b, err := os.ReadFile(md)
	require.NoError(t, err)
	require.Equal(t, stdout, string(b))
	f, err := os.Open(plot)
	require.NoError(t, err)
	defer f.Close()
	_, err = png.Decode(f)
	require.NoError(t, err)
}
