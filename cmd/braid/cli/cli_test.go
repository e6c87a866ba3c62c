package cli_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/braidq/braid/cmd/braid/cli"
)

func run(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = cli.Run(t.Context(), args, cli.Output{Stdout: &out, Stderr: &errOut})
	return code, out.String(), errOut.String()
}

func TestUsageErrorsExitTwoNamingTheProblem(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no subcommand prints the usage", nil, cli.ExitUsage, "usage: braid <subcommand>"},
		{"an unknown subcommand is named", []string{"serve-everything"}, cli.ExitUsage, `unknown subcommand "serve-everything"`},
		{"an unknown flag is named", []string{"dev", "-bogus"}, cli.ExitUsage, "flag provided but not defined: -bogus"},
		{"a flag value that does not parse is named", []string{"dev", "-duration", "soon"}, cli.ExitUsage, `invalid value "soon" for flag -duration`},
		{"bad flag values are all named at once", []string{"dev", "-duration", "-1s", "-rate", "0"}, cli.ExitUsage, "-duration -1s: must not be negative"},
		{"a positional argument is refused", []string{"dev", "now"}, cli.ExitUsage, `unexpected argument "now"`},
		{"-h lists the flags and succeeds", []string{"dev", "-h"}, cli.ExitOK, "-duration"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			code, stdout, stderr := run(t, tt.args...)
			require.Equal(t, tt.code, code)
			require.Contains(t, stdout+stderr, tt.want)
		})
	}
	_, _, stderr := run(t, "dev", "-duration", "-1s", "-rate", "0")
	require.Contains(t, stderr, "-rate 0: must be 1..100000")

	code, stdout, _ := run(t, "help")
	require.Equal(t, cli.ExitOK, code)
	require.Contains(t, stdout, "dev ", "the usage lists every subcommand")
}

// summaryRE matches `braid dev`'s final line.
var summaryRE = regexp.MustCompile(`braid dev: summary: enqueued=(\d+) completed=(\d+) lost=(\d+) duplicates=(\d+) untracked=(\d+)`)

// requireCleanSummary checks the summary line: jobs were enqueued, every one ran, none twice.
func requireCleanSummary(t *testing.T, stdout string) {
	t.Helper()
	m := summaryRE.FindStringSubmatch(stdout)
	require.NotNil(t, m, "no summary line in:\n%s", stdout)
	enqueued, _ := strconv.Atoi(m[1])
	require.Positive(t, enqueued, "the demo producer enqueued jobs")
	require.Equal(t, m[1], m[2], "every enqueued job completed")
	require.Equal(t, "0", m[3], "lost")
	require.Equal(t, "0", m[4], "duplicates")
	require.Equal(t, "0", m[5], "untracked")
}

// dataDir returns an empty folder that the postgres user can reach when the test runs as root.
func dataDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp(os.TempDir(), "braid-cli-test-")
	require.NoError(t, err)
	require.NoError(t, os.Chmod(dir, 0o755))
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// serverProcesses lists the processes that run in dir or name it on their command line: the
// postmaster (-D dir/...) and its children (whose working folder is the data folder).
func serverProcesses(t *testing.T, dir string) []string {
	t.Helper()
	procs, err := filepath.Glob("/proc/[0-9]*")
	require.NoError(t, err)
	var found []string
	for _, p := range procs {
		cmdline, _ := os.ReadFile(filepath.Join(p, "cmdline"))
		cwd, _ := os.Readlink(filepath.Join(p, "cwd"))
		if bytes.Contains(cmdline, []byte(dir)) || strings.HasPrefix(cwd, dir) {
			found = append(found, filepath.Base(p)+": "+strings.ReplaceAll(string(cmdline), "\x00", " "))
		}
	}
	return found
}

func TestDevRunsTheDemoAndLosesNothing(t *testing.T) {
	t.Parallel()
	dir := dataDir(t)
	var stdout, stderr bytes.Buffer
	code := cli.Run(context.Background(), []string{"dev", "-duration", "20s", "-interval", "5s", "-data", dir},
		cli.Output{Stdout: &stdout, Stderr: &stderr})
	t.Logf("stdout:\n%s", stdout.String())
	require.Equal(t, cli.ExitOK, code, "stderr:\n%s", stderr.String())
	requireCleanSummary(t, stdout.String())
	for id := 1; id <= 3; id++ {
		require.Regexp(t, `shard `+strconv.Itoa(id)+`: enqueued=[1-9]`, stdout.String(), "every shard gets demo jobs")
	}
	require.Empty(t, serverProcesses(t, dir), "no server of the data folder outlives the command")
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	require.Empty(t, entries, "without -keep, what the command put in the data folder is removed")
}
