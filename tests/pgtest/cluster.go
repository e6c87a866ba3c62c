package pgtest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Cluster is one running (or crashed) PostgreSQL server started by pgtest. The exported fields
// describe it; they do not change while the cluster lives (Start keeps the port).
type Cluster struct {
	Host      string // 127.0.0.1
	Port      int    // TCP port on Host
	DataDir   string // the server's data folder
	SocketDir string // folder of its unix socket
	LogFile   string // the server's log (every start appends)

	env *environment
	dir string // holds DataDir, SocketDir and LogFile; removed with the cluster
	// crashable clusters (New) flush WAL at commit: see startCluster.
	crashable bool

	mu  sync.Mutex
	srv *server // nil while stopped

	tmplMu    sync.Mutex
	templates map[string]*templateSlot
}

// server is one run of the postmaster.
type server struct {
	cmd     *exec.Cmd
	exited  chan struct{} // closed when the process has exited; waitErr is set before
	waitErr error
}

// serverRole is the role tests connect as: it can log in and create databases, and owns what
// it creates, but is not a superuser (the engine's migrations must not need one).
const serverRole = "braid"

// DSN returns the URL connecting as braid to database db, e.g.
// postgres://braid@127.0.0.1:PORT/db?sslmode=disable.
func (c *Cluster) DSN(db string) string { return c.dsn(serverRole, db) }

// AdminDSN returns the URL connecting as the superuser postgres to database db.
func (c *Cluster) AdminDSN(db string) string { return c.dsn("postgres", db) }

func (c *Cluster) dsn(role, db string) string {
	u := url.URL{
		Scheme:   "postgres",
		User:     url.User(role),
		Host:     net.JoinHostPort(c.Host, strconv.Itoa(c.Port)),
		Path:     "/" + db,
		RawQuery: "sslmode=disable",
	}
	return u.String()
}

// Crash stops the server like `pg_ctl -m immediate` (SIGQUIT to the postmaster: no shutdown
// checkpoint, crash recovery at the next start) and waits for it to exit.
func (c *Cluster) Crash(t testing.TB) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.srv == nil {
		t.Fatalf("pgtest: Crash: the cluster on port %d is not running", c.Port)
	}
	c.srv.stop()
	c.srv = nil
}

// Start restarts a stopped cluster on the same port and data folder and waits until it accepts
// connections.
func (c *Cluster) Start(t testing.TB) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.srv != nil {
		t.Fatalf("pgtest: Start: the cluster on port %d is already running", c.Port)
	}
	// The port was released by the stop; only a slow exit of the old server's sockets (or
	// another process taking the port meanwhile) makes a bind fail, so retry for a while.
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := c.start()
		if err == nil {
			return
		}
		if !errors.Is(err, errPortTaken) || time.Now().After(deadline) {
			t.Fatalf("pgtest: restart: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (c *Cluster) running() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.srv != nil
}

// startCluster copies the initdb folder, starts a server on a free port and creates the braid
// role. The cluster is registered before anything starts so that Main stops it whatever happens.
//
// A crashable cluster (New) keeps synchronous_commit on: with it off, a commit the client saw
// succeed can vanish in Crash (its WAL was still in the server's memory), and crash tests that
// check "no acknowledged job lost" would fail for the harness's sake. With fsync off, the
// commit-time WAL write costs a write(2), not a disk flush, and survives a server crash.
func (env *environment) startCluster(crashable bool) (*Cluster, error) {
	dir := filepath.Join(env.root, fmt.Sprintf("c%d", proc.seq.Add(1)))
	c := &Cluster{
		Host:      "127.0.0.1",
		DataDir:   filepath.Join(dir, "data"),
		SocketDir: filepath.Join(dir, "sock"),
		LogFile:   filepath.Join(dir, "postgres.log"),
		env:       env,
		dir:       dir,
		crashable: crashable,
	}
	proc.mu.Lock()
	if proc.closed {
		proc.mu.Unlock()
		return nil, errors.New("pgtest: cannot start a cluster after Main stopped the servers")
	}
	if proc.clusters == nil {
		proc.clusters = make(map[*Cluster]struct{})
	}
	proc.clusters[c] = struct{}{}
	proc.mu.Unlock()

	err := c.makeFolders()
	if err == nil {
		err = c.startOnFreePort()
	}
	if err == nil {
		err = c.createRole()
	}
	if err != nil {
		return nil, errors.Join(err, c.destroy())
	}
	return c, nil
}

func (c *Cluster) makeFolders() error {
	if err := os.Mkdir(c.dir, 0o755); err != nil {
		return fmt.Errorf("pgtest: %w", err)
	}
	if err := c.env.chown(c.dir); err != nil {
		return err
	}
	if err := os.Mkdir(c.SocketDir, 0o755); err != nil {
		return fmt.Errorf("pgtest: %w", err)
	}
	if err := c.env.chown(c.SocketDir); err != nil {
		return err
	}
	if err := c.env.copyTree(c.env.proto, c.DataDir); err != nil {
		return fmt.Errorf("pgtest: copy the initdb folder: %w", err)
	}
	return nil
}

// startOnFreePort picks a free port and starts the server on it; another process may take the
// port between our probe and the server's bind, in which case it tries another.
func (c *Cluster) startOnFreePort() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	var err error
	for range 10 {
		if c.Port, err = freePort(); err != nil {
			return err
		}
		if err = c.start(); !errors.Is(err, errPortTaken) {
			return err
		}
	}
	return err
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("pgtest: find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// errPortTaken marks a start that failed only because the port was in use.
var errPortTaken = errors.New("port in use")

// start runs the postmaster and waits until it accepts connections; c.mu must be held.
func (c *Cluster) start() error {
	var logStart int64
	if fi, err := os.Stat(c.LogFile); err == nil {
		logStart = fi.Size()
	}
	logFile, err := os.OpenFile(c.LogFile, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("pgtest: server log: %w", err)
	}
	syncCommit := "off"
	if c.crashable {
		syncCommit = "on"
	}
	cmd := exec.Command(filepath.Join(c.env.binDir, "postgres"),
		"-D", c.DataDir,
		"-p", strconv.Itoa(c.Port),
		"-k", c.SocketDir,
		"-c", "listen_addresses="+c.Host,
		// Test data only: durability costs time and buys nothing here.
		"-c", "fsync=off",
		"-c", "synchronous_commit="+syncCommit,
		"-c", "full_page_writes=off",
		"-c", "max_connections=200",
		"-c", "shared_buffers=128MB",
		// Partitioned tables take a lock per partition.
		"-c", "max_locks_per_transaction=256",
	)
	cmd.Dir = c.env.root
	cmd.Env = serverEnv()
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Credential: c.env.owner,
		// The test process's death (panic, -timeout, signal) kills the server; see spawner.
		Pdeathsig: syscall.SIGKILL,
		// Its own process group: a Ctrl-C meant for `go test` must not race Main's cleanup.
		Setpgid: true,
	}
	err = c.env.spawner.start(cmd)
	logFile.Close() // the child has its own descriptor
	if err != nil {
		return fmt.Errorf("pgtest: start %s: %w", cmd.Path, err)
	}
	srv := &server{cmd: cmd, exited: make(chan struct{})}
	go func() {
		srv.waitErr = cmd.Wait()
		close(srv.exited)
	}()

	if err := c.waitReady(srv); err != nil {
		srv.stop()
		tail := logTail(c.LogFile, logStart)
		if strings.Contains(tail, "could not bind") || strings.Contains(tail, "could not create any TCP/IP sockets") {
			err = fmt.Errorf("%w: %w", errPortTaken, err)
		}
		return fmt.Errorf("pgtest: server on port %d (%s): %w\n%s", c.Port, strings.Join(cmd.Args, " "), err, tail)
	}
	c.srv = srv
	return nil
}

// waitReady polls until the server accepts a connection, fails fast if it exits.
func (c *Cluster) waitReady(srv *server) error {
	deadline := time.Now().Add(waitTimeout)
	var lastErr error
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		conn, err := pgx.Connect(ctx, c.AdminDSN("postgres"))
		if err == nil {
			err = conn.Close(ctx)
		}
		cancel()
		if err == nil {
			return nil
		}
		lastErr = err
		if time.Now().After(deadline) {
			return fmt.Errorf("not accepting connections after %v: %w", waitTimeout, lastErr)
		}
		select {
		case <-srv.exited:
			return fmt.Errorf("exited before accepting connections: %v", srv.waitErr)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// stop shuts the server down like `pg_ctl -m immediate`, killing it if it hangs.
func (s *server) stop() {
	select {
	case <-s.exited:
		return
	default:
	}
	_ = s.cmd.Process.Signal(syscall.SIGQUIT)
	select {
	case <-s.exited:
	case <-time.After(waitTimeout):
		_ = s.cmd.Process.Kill()
		<-s.exited
	}
}

// destroy stops the server and removes the cluster's folder; it is idempotent.
func (c *Cluster) destroy() error {
	proc.mu.Lock()
	delete(proc.clusters, c)
	proc.mu.Unlock()

	c.mu.Lock()
	defer c.mu.Unlock()
	if c.srv != nil {
		c.srv.stop()
		c.srv = nil
	}
	if err := os.RemoveAll(c.dir); err != nil {
		return fmt.Errorf("pgtest: remove %s: %w", c.dir, err)
	}
	return nil
}

func (c *Cluster) createRole() error {
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	return c.adminExec(ctx, "CREATE ROLE "+serverRole+" LOGIN NOSUPERUSER CREATEDB")
}

// adminExec runs one statement as the superuser in the postgres database. A connection per
// call rather than a pool: nothing stays open (or running) between tests.
func (c *Cluster) adminExec(ctx context.Context, sql string, args ...any) error {
	conn, err := pgx.Connect(ctx, c.AdminDSN("postgres"))
	if err != nil {
		return fmt.Errorf("connect to port %d: %w", c.Port, err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, sql, args...); err != nil {
		return fmt.Errorf("%s: %w", sql, err)
	}
	return nil
}
