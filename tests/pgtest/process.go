package pgtest

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// proc is the test process's pgtest state: one initdb, one temporary folder and one set of
// clusters per process is the point of the package.
var proc process

type process struct {
	setupOnce sync.Once
	env       *environment // nil until setupOnce ran
	setupErr  error

	seq atomic.Int64 // names of cluster folders, databases and templates

	mu       sync.Mutex
	shared   map[int]*sharedSlot
	clusters map[*Cluster]struct{} // every cluster not yet destroyed, for Main to stop
	closed   bool                  // Main has shut pgtest down
}

// environment is what every cluster of the process starts from.
type environment struct {
	root    string              // temporary folder holding everything pgtest writes
	binDir  string              // folder of initdb and postgres
	owner   *syscall.Credential // user the servers run as; nil = this process's user
	proto   string              // data folder made by initdb, copied per cluster
	spawner *spawner
}

type sharedSlot struct {
	done    chan struct{} // closed once c or err is set
	cluster *Cluster
	err     error
}

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
	env, err := setup()
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
		slot.cluster, slot.err = env.startCluster(false)
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
	env, err := setup()
	if err != nil {
		t.Fatal(err)
	}
	c, err := env.startCluster(true)
	if err != nil {
		t.Fatalf("pgtest: new cluster: %v", err)
	}
	t.Cleanup(func() {
		if err := c.destroy(); err != nil {
			t.Errorf("pgtest: %v", err)
		}
	})
	return c
}

// setup finds the binaries and runs initdb, once per process; every caller gets its error.
func setup() (*environment, error) {
	proc.setupOnce.Do(func() {
		proc.env, proc.setupErr = newEnvironment()
	})
	return proc.env, proc.setupErr
}

func newEnvironment() (*environment, error) {
	removeStaleRoots()

	binDir, err := findBinDir(os.Getenv("PATH"), []string{debianBinGlob})
	if err != nil {
		return nil, err
	}
	env := &environment{binDir: binDir}
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			return nil, fmt.Errorf("pgtest: running as root, and PostgreSQL refuses to run as root, "+
				"so the servers run as the system user postgres, which was not found (%v); "+
				"create it (`useradd --system --home-dir /var/lib/postgresql postgres`) or %s", err, installHint)
		}
		uid, errU := strconv.ParseUint(u.Uid, 10, 32)
		gid, errG := strconv.ParseUint(u.Gid, 10, 32)
		if errU != nil || errG != nil {
			return nil, fmt.Errorf("pgtest: user postgres has a non-numeric uid %q or gid %q", u.Uid, u.Gid)
		}
		env.owner = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	}

	root, err := os.MkdirTemp(os.TempDir(), fmt.Sprintf("pgtest-%d-", os.Getpid()))
	if err != nil {
		return nil, fmt.Errorf("pgtest: temporary folder: %w", err)
	}
	env.root = root
	// 0755 so that the postgres user can traverse it when pgtest runs as root.
	if err := os.Chmod(root, 0o755); err != nil {
		return nil, env.abandon(fmt.Errorf("pgtest: chmod %s: %w", root, err))
	}
	if err := env.chown(root); err != nil {
		return nil, env.abandon(err)
	}

	env.proto = filepath.Join(root, "proto")
	logPath := filepath.Join(root, "initdb.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, env.abandon(fmt.Errorf("pgtest: initdb log: %w", err))
	}
	cmd := exec.Command(filepath.Join(binDir, "initdb"),
		"-D", env.proto, "--auth=trust", "-U", "postgres", "--encoding=UTF8", "--locale=C", "--no-sync")
	cmd.Dir = root
	cmd.Env = serverEnv()
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: env.owner, Pdeathsig: syscall.SIGKILL}
	env.spawner = startSpawner()
	err = env.spawner.start(cmd)
	if err == nil {
		err = cmd.Wait()
	}
	logFile.Close()
	if err != nil {
		return nil, env.abandon(fmt.Errorf("pgtest: %s: %w\n%s", strings.Join(cmd.Args, " "), err, logTail(logPath, 0)))
	}
	return env, nil
}

// abandon removes what a failed setup left and returns err.
func (env *environment) abandon(err error) error {
	if env.spawner != nil {
		env.spawner.stop()
	}
	os.RemoveAll(env.root)
	return err
}

// shutdown stops every server and removes the temporary folder.
func shutdown() error {
	proc.mu.Lock()
	proc.closed = true
	clusters := make([]*Cluster, 0, len(proc.clusters))
	for c := range proc.clusters {
		clusters = append(clusters, c)
	}
	proc.mu.Unlock()

	var errs []error
	for _, c := range clusters {
		errs = append(errs, c.destroy())
	}
	if env := proc.env; env != nil {
		env.spawner.stop()
		if err := os.RemoveAll(env.root); err != nil {
			errs = append(errs, fmt.Errorf("pgtest: remove %s: %w", env.root, err))
		}
	}
	return errors.Join(errs...)
}

// removeStaleRoots removes the temporary folders of test processes that no longer exist
// (killed by a timeout or a signal before Main could clean up). Their servers died with them.
func removeStaleRoots() {
	roots, _ := filepath.Glob(filepath.Join(os.TempDir(), "pgtest-*-*"))
	for _, root := range roots {
		pidText, _, ok := strings.Cut(strings.TrimPrefix(filepath.Base(root), "pgtest-"), "-")
		pid, err := strconv.Atoi(pidText)
		if !ok || err != nil || pid <= 0 || pid == os.Getpid() {
			continue
		}
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			os.RemoveAll(root)
		}
	}
}

// serverEnv is the environment of initdb and postgres: ours without libpq's PG* variables and
// locale settings, which could point a server at the wrong folder or translate its log (the
// bind-failure check reads the log).
func serverEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "PG") || strings.HasPrefix(kv, "LC_") || strings.HasPrefix(kv, "LANG") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, "LC_ALL=C")
}

// chown gives path to the server user when the servers run as another user.
func (env *environment) chown(path string) error {
	if env.owner == nil {
		return nil
	}
	if err := os.Lchown(path, int(env.owner.Uid), int(env.owner.Gid)); err != nil {
		return fmt.Errorf("pgtest: chown %s to postgres: %w", path, err)
	}
	return nil
}

// copyTree copies the folder src to dst (which must not exist), keeping permissions and
// giving every entry to the server user.
func (env *environment) copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			if err := os.Mkdir(target, info.Mode().Perm()); err != nil {
				return err
			}
			// Mkdir is subject to the umask; the data folder must keep exactly 0700 or 0750.
			if err := os.Chmod(target, info.Mode().Perm()); err != nil {
				return err
			}
		case d.Type()&fs.ModeSymlink != 0:
			link, err := os.Readlink(path)
			if err != nil {
				return err
			}
			if err := os.Symlink(link, target); err != nil {
				return err
			}
		case d.Type().IsRegular():
			if err := copyFile(path, target, info.Mode().Perm()); err != nil {
				return err
			}
		default:
			return fmt.Errorf("pgtest: copy %s: unexpected file type %v", path, d.Type())
		}
		return env.chown(target)
	})
}

func copyFile(src, dst string, perm fs.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Close(); err != nil {
		return err
	}
	return os.Chmod(dst, perm)
}

// logTail returns the end of the log at path from byte offset on, for error messages.
func logTail(path string, offset int64) string {
	const maxTail = 4 << 10
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	if offset > 0 && offset <= int64(len(data)) {
		data = data[offset:]
	}
	if len(data) > maxTail {
		data = data[len(data)-maxTail:]
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			data = data[i+1:]
		}
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return fmt.Sprintf("(log %s is empty)", path)
	}
	return fmt.Sprintf("--- tail of %s ---\n%s", path, strings.TrimRight(string(data), "\n"))
}

// spawner starts server processes from one goroutine locked to its OS thread. The kernel sends
// the parent-death signal (SIGKILL) when the thread that forked a child exits, not the process,
// and the Go runtime may retire an ordinary thread while the test process lives on
// (go.dev/issue/27505); this thread lives until Main has stopped every server.
type spawner struct {
	requests chan spawnRequest
	done     chan struct{}
	mu       sync.Mutex
	stopped  bool
}

type spawnRequest struct {
	cmd    *exec.Cmd
	result chan error
}

func startSpawner() *spawner {
	s := &spawner{requests: make(chan spawnRequest), done: make(chan struct{})}
	go func() {
		// Never unlocked: when this goroutine returns, the runtime ends the thread, and with it
		// (through the parent-death signal) any server that was somehow left running.
		runtime.LockOSThread()
		defer close(s.done)
		for r := range s.requests {
			r.result <- r.cmd.Start()
		}
	}()
	return s
}

func (s *spawner) start(cmd *exec.Cmd) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return errors.New("pgtest: servers cannot start after Main stopped them")
	}
	r := spawnRequest{cmd: cmd, result: make(chan error, 1)}
	s.requests <- r
	return <-r.result
}

func (s *spawner) stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return
	}
	s.stopped = true
	close(s.requests)
	<-s.done
}

// waitTimeout bounds every wait for a server: startup, shutdown, template connections.
const waitTimeout = 30 * time.Second
