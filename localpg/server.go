package localpg

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
	"time"

	"github.com/jackc/pgx/v5"
)

// Role is the role every server gets at its first start: it can log in and create databases
// and owns what it creates, but is not a superuser (braid's migrations must not need one).
const Role = "braid"

// waitTimeout bounds each wait for a server on top of the caller's context: readiness after a
// start, and a shutdown before the server is killed.
const waitTimeout = 30 * time.Second

// Server is one local PostgreSQL server of a Group. The exported fields describe it; they do not
// change while it lives (Start keeps the port). Its methods are safe for concurrent use.
type Server struct {
	Name       string // its folder's name inside the group's Dir: s1, s2, ...
	Host       string // 127.0.0.1
	Port       int    // TCP port on Host
	Dir        string // holds DataDir, SocketDir and LogFile
	DataDir    string // the server's data folder
	SocketDir  string // folder of its unix socket
	LogFile    string // the server's log (every start appends)
	Durability Durability

	g *Group

	mu  sync.Mutex
	run *run // nil while stopped
}

// run is one run of the postmaster.
type run struct {
	cmd     *exec.Cmd
	exited  chan struct{} // closed when the process has exited; waitErr is set before
	waitErr error
}

// DSN returns the URL connecting as Role to database db, e.g.
// postgres://braid@127.0.0.1:PORT/db?sslmode=disable. No password: the servers trust local
// connections.
func (s *Server) DSN(db string) string { return s.dsn(Role, db) }

// AdminDSN returns the URL connecting as the superuser postgres to database db.
func (s *Server) AdminDSN(db string) string { return s.dsn("postgres", db) }

func (s *Server) dsn(role, db string) string {
	u := url.URL{
		Scheme:   "postgres",
		User:     url.User(role),
		Host:     net.JoinHostPort(s.Host, strconv.Itoa(s.Port)),
		Path:     "/" + db,
		RawQuery: "sslmode=disable",
	}
	return u.String()
}

// AdminExec runs one statement as the superuser in the postgres database. It opens a
// connection per call rather than keeping a pool: nothing stays open between calls.
func (s *Server) AdminExec(ctx context.Context, sql string, args ...any) error {
	conn, err := pgx.Connect(ctx, s.AdminDSN("postgres"))
	if err != nil {
		return fmt.Errorf("connect to port %d: %w", s.Port, err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, sql, args...); err != nil {
		return fmt.Errorf("%s: %w", sql, err)
	}
	return nil
}

// Running says whether the server is running (started and neither stopped nor crashed).
func (s *Server) Running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.run != nil
}

// PID returns the postmaster's process id, 0 while stopped.
func (s *Server) PID() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.run == nil {
		return 0
	}
	return s.run.cmd.Process.Pid
}

// Crash stops the server like `pg_ctl -m immediate` (SIGQUIT to the postmaster: no shutdown
// checkpoint, crash recovery at the next start) and waits for it to exit.
func (s *Server) Crash() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.run == nil {
		return fmt.Errorf("localpg: crash server %s: not running (port %d)", s.Name, s.Port)
	}
	s.run.stop(context.Background(), syscall.SIGQUIT)
	s.run = nil
	return nil
}

// Stop shuts the server down like `pg_ctl -m fast` (SIGINT: sessions are ended, a checkpoint
// is written) and waits for it; when ctx ends first, or after 30 s, it stops it immediately
// (SIGQUIT), and kills it if that hangs too. Idempotent.
func (s *Server) Stop(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.run == nil {
		return nil
	}
	s.run.stop(ctx, syscall.SIGINT)
	s.run = nil
	s.g.logger.Info("postgres stopped", "server", s.Name, "port", s.Port)
	return nil
}

// Start restarts a stopped server on the same port and data folder and waits until it accepts
// connections. The port was released by the stop; only a slow exit of the old server's sockets
// (or another process taking the port meanwhile) makes a bind fail, so it retries for a while.
func (s *Server) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.run != nil {
		return fmt.Errorf("localpg: start server %s: already running (port %d)", s.Name, s.Port)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := s.start(ctx)
		if err == nil {
			return nil
		}
		if !errors.Is(err, errPortTaken) || time.Now().After(deadline) {
			return fmt.Errorf("localpg: restart server %s: %w", s.Name, err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("localpg: restart server %s: %w", s.Name, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Destroy stops the server immediately (its data goes with it), removes its folder and takes
// it out of the group. Idempotent.
func (s *Server) Destroy() error {
	s.g.forget(s)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.run != nil {
		s.run.stop(context.Background(), syscall.SIGQUIT)
		s.run = nil
	}
	if err := os.RemoveAll(s.Dir); err != nil {
		return fmt.Errorf("localpg: remove %s: %w", s.Dir, err)
	}
	return nil
}

func (s *Server) makeFolders() error {
	for _, dir := range []string{s.Dir, s.SocketDir} {
		if err := os.Mkdir(dir, 0o755); err != nil {
			return err
		}
		if err := s.g.chown(dir); err != nil {
			return err
		}
	}
	if err := s.g.copyTree(s.g.proto, s.DataDir); err != nil {
		return fmt.Errorf("copy the initdb folder: %w", err)
	}
	return nil
}

// startOnFreePort picks a free port and starts the server on it; another process may take the
// port between our probe and the server's bind, in which case it tries another.
func (s *Server) startOnFreePort(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var err error
	for range 10 {
		if s.Port, err = freePort(); err != nil {
			return err
		}
		if err = s.start(ctx); !errors.Is(err, errPortTaken) {
			return err
		}
	}
	return err
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// errPortTaken marks a start that failed only because the port was in use.
var errPortTaken = errors.New("port in use")

// start runs the postmaster and waits until it accepts connections; s.mu must be held.
func (s *Server) start(ctx context.Context) error {
	var logStart int64
	if fi, err := os.Stat(s.LogFile); err == nil {
		logStart = fi.Size()
	}
	logFile, err := os.OpenFile(s.LogFile, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("server log: %w", err)
	}
	args := []string{
		"-D", s.DataDir,
		"-p", strconv.Itoa(s.Port),
		"-k", s.SocketDir,
		"-c", "listen_addresses=" + s.Host,
		"-c", "max_connections=200",
		"-c", "shared_buffers=128MB",
		// Partitioned tables take a lock per partition.
		"-c", "max_locks_per_transaction=256",
	}
	for _, setting := range s.Durability.settings() {
		args = append(args, "-c", setting)
	}
	cmd := exec.Command(filepath.Join(s.g.binDir, "postgres"), args...)
	cmd.Dir = s.g.dir
	cmd.Env = serverEnv()
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Credential: s.g.owner,
		// Our process's death (panic, signal, test timeout) kills the server; see spawner.
		Pdeathsig: syscall.SIGKILL,
		// Its own process group: a Ctrl-C meant for us must not reach the server before we
		// stop it in order.
		Setpgid: true,
	}
	err = s.g.spawner.start(cmd)
	logFile.Close() // the child has its own descriptor
	if err != nil {
		return fmt.Errorf("start %s: %w", cmd.Path, err)
	}
	r := &run{cmd: cmd, exited: make(chan struct{})}
	go func() {
		r.waitErr = cmd.Wait()
		close(r.exited)
	}()

	if err := s.waitReady(ctx, r); err != nil {
		r.stop(context.Background(), syscall.SIGQUIT)
		tail := logTail(s.LogFile, logStart)
		if strings.Contains(tail, "could not bind") || strings.Contains(tail, "could not create any TCP/IP sockets") {
			err = fmt.Errorf("%w: %w", errPortTaken, err)
		}
		return fmt.Errorf("server on port %d (%s): %w\n%s", s.Port, strings.Join(cmd.Args, " "), err, tail)
	}
	s.run = r
	return nil
}

// waitReady polls until the server accepts a connection; it fails fast if the server exits,
// and gives up after waitTimeout or when ctx ends.
func (s *Server) waitReady(ctx context.Context, r *run) error {
	ctx, cancel := context.WithTimeout(ctx, waitTimeout)
	defer cancel()
	var lastErr error
	for {
		attempt, cancelAttempt := context.WithTimeout(ctx, 2*time.Second)
		conn, err := pgx.Connect(attempt, s.AdminDSN("postgres"))
		if err == nil {
			err = conn.Close(attempt)
		}
		cancelAttempt()
		if err == nil {
			return nil
		}
		lastErr = err
		select {
		case <-r.exited:
			return fmt.Errorf("exited before accepting connections: %v", r.waitErr)
		case <-ctx.Done():
			return fmt.Errorf("not accepting connections (%w): %w", ctx.Err(), lastErr)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// stop sends sig to the postmaster and waits for it to exit; when ctx ends or waitTimeout
// passes first, it escalates: SIGINT to SIGQUIT, SIGQUIT to SIGKILL.
func (r *run) stop(ctx context.Context, sig syscall.Signal) {
	for {
		select {
		case <-r.exited:
			return
		default:
		}
		_ = r.cmd.Process.Signal(sig)
		timer := time.NewTimer(waitTimeout)
		select {
		case <-r.exited:
			timer.Stop()
			return
		case <-ctx.Done():
		case <-timer.C:
		}
		timer.Stop()
		switch sig {
		case syscall.SIGINT:
			sig = syscall.SIGQUIT
			ctx = context.Background() // the immediate stop gets its own waitTimeout
		default:
			_ = r.cmd.Process.Kill()
			<-r.exited
			return
		}
	}
}
