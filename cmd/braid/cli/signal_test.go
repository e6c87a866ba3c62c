package cli_test

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// lockedBuffer collects a child's output while the test reads it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// startBraid runs the braid command as a child process (this test binary, see TestMain) and
// returns its output so far and a channel closed at its first progress report.
func startBraid(t *testing.T, args ...string) (*exec.Cmd, *lockedBuffer, <-chan struct{}, <-chan struct{}) {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), helperEnv+"=1")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	out := &lockedBuffer{}
	progress, eof := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(eof)
		sc := bufio.NewScanner(stdout)
		seen := false
		for sc.Scan() {
			out.mu.Lock()
			out.buf.WriteString(sc.Text() + "\n")
			out.mu.Unlock()
			if !seen && strings.HasPrefix(sc.Text(), "[") {
				seen = true
				close(progress)
			}
		}
	}()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
		t.Logf("braid stderr:\n%s", stderr.String())
	})
	return cmd, out, progress, eof
}

func TestDevStopsCleanlyOnInterruptAndKeepsTheDataWhenAsked(t *testing.T) {
	t.Parallel()
	dir := dataDir(t)
	cmd, out, progress, eof := startBraid(t, "dev", "-data", dir, "-keep", "-interval", "1s")

	select {
	case <-progress:
	case <-eof:
		t.Fatalf("braid dev ended before its first progress report:\n%s", out.String())
	case <-time.After(3 * time.Minute):
		t.Fatalf("no progress report within 3 minutes:\n%s", out.String())
	}
	require.NotEmpty(t, serverProcesses(t, dir), "the servers run while braid dev does")
	require.NoError(t, cmd.Process.Signal(syscall.SIGINT))

	exited := make(chan error, 1)
	go func() { <-eof; exited <- cmd.Wait() }()
	select {
	case err := <-exited:
		require.NoError(t, err, "exit status after Ctrl-C; stdout:\n%s", out.String())
	case <-time.After(3 * time.Minute):
		t.Fatalf("braid dev did not stop within 3 minutes of SIGINT:\n%s", out.String())
	}
	t.Logf("stdout:\n%s", out.String())
	require.Contains(t, out.String(), "braid dev: interrupted")
	requireCleanSummary(t, out.String())
	require.Empty(t, serverProcesses(t, dir), "no server of the data folder outlives the command")
	require.Contains(t, out.String(), "braid dev: data kept in "+dir)
	require.DirExists(t, filepath.Join(dir, "s1", "data"), "-keep keeps the servers' data")
}
