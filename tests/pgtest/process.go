package pgtest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/braidq/braid/localpg"
)

// proc is the test process's pgtest state: one initdb, one temporary folder and one set of
// clusters per process is the point of the package.
var proc process

type process struct {
	setupOnce sync.Once
	group     *localpg.Group // nil until setupOnce ran
	setupErr  error

	seq atomic.Int64 // names of databases and templates

	mu     sync.Mutex
	shared map[int]*sharedSlot
	closed bool // Main has shut pgtest down
}

type sharedSlot struct {
	done    chan struct{} // closed once c or err is set
	cluster *Cluster
	err     error
}

// tempPrefix names pgtest's temporary folders (pgtest-PID-*); the folders of test processes
// that died before Main could clean up are removed by the next one.
const tempPrefix = "pgtest"

// waitTimeout bounds every wait for a server: startup, shutdown, template connections.
const waitTimeout = 30 * time.Second

// Main runs the package's tests and stops every server this process started, whatever the
// outcome; use in TestMain:
//
//	func TestMain(m *testing.M) { pgtest.Main(m) }
//
// When the tests pass, Main then fails the run if a goroutine outlived them (goleak, like
// goleak.VerifyTestMain, with leakOpts). The check runs after the servers are stopped because
// pgtest's own goroutines wait for them.
func Main(m *testing.M, leakOpts ...goleak.Option) {
	code := m.Run()
	if err := shutdown(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		if code == 0 {
			code = 1
		}
	}
	if code == 0 {
		if err := goleak.Find(leakOpts...); err != nil {
			fmt.Fprintf(os.Stderr, "pgtest: goroutines outlived the tests: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

// Shared returns the i-th (0-based) cluster shared by all tests of this process, started on
// first use (concurrency-safe), stopped by Main. Tests must not stop or crash it; use New.
func Shared(t testing.TB, i int) *Cluster {
	t.Helper()
	if i < 0 {
		t.Fatalf("pgtest: Shared(%d): the index must be >= 0", i)
	}
	g, err := setup()
	if err != nil {
		t.Fatal(err)
	}
	proc.mu.Lock()
	if proc.closed {
		proc.mu.Unlock()
		t.Fatal("pgtest: Shared called after Main stopped the servers")
	}
	if proc.shared == nil {
		proc.shared = make(map[int]*sharedSlot)
	}
	slot, started := proc.shared[i]
	if !started {
		slot = &sharedSlot{done: make(chan struct{})}
		proc.shared[i] = slot
	}
	proc.mu.Unlock()

	if !started {
		slot.cluster, slot.err = startCluster(g, localpg.Throwaway)
		close(slot.done)
	}
	<-slot.done
	if slot.err != nil {
		t.Fatalf("pgtest: shared cluster %d: %v", i, slot.err)
	}
	return slot.cluster
}

// New starts a private cluster for one test (for tests that crash or stop it); it is stopped
// and its folder removed in t.Cleanup. Unlike shared clusters it keeps synchronous_commit on,
// so a transaction whose commit returned survives Crash.
func New(t testing.TB) *Cluster {
	t.Helper()
	g, err := setup()
	if err != nil {
		t.Fatal(err)
	}
	c, err := startCluster(g, localpg.CrashSafe)
	if err != nil {
		t.Fatalf("pgtest: new cluster: %v", err)
	}
	t.Cleanup(func() {
		if err := c.srv.Destroy(); err != nil {
			t.Errorf("pgtest: %v", err)
		}
	})
	return c
}

// setup finds the binaries and runs initdb, once per process; every caller gets its error.
func setup() (*localpg.Group, error) {
	proc.setupOnce.Do(func() {
		proc.group, proc.setupErr = newGroup()
	})
	return proc.group, proc.setupErr
}

func newGroup() (*localpg.Group, error) {
	localpg.RemoveStaleTempDirs(tempPrefix)
	root, err := localpg.TempDir(tempPrefix)
	if err != nil {
		return nil, fmt.Errorf("pgtest: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	g, err := localpg.Start(ctx, localpg.Options{Dir: root})
	if err != nil {
		os.RemoveAll(root)
		return nil, fmt.Errorf("pgtest: %w", err)
	}
	return g, nil
}

// shutdown stops every server and removes the temporary folder.
func shutdown() error {
	proc.mu.Lock()
	proc.closed = true
	proc.mu.Unlock()

	g := proc.group
	if g == nil {
		return nil
	}
	// The data is thrown away: stop at once rather than write shutdown checkpoints.
	var errs []error
	for _, s := range g.Servers() {
		errs = append(errs, s.Destroy())
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	errs = append(errs, g.Stop(ctx))
	if err := os.RemoveAll(g.Dir()); err != nil {
		errs = append(errs, fmt.Errorf("pgtest: remove %s: %w", g.Dir(), err))
	}
	return errors.Join(errs...)
}
