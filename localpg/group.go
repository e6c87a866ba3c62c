package localpg

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// Durability says which of PostgreSQL's durability guarantees a server keeps. Servers started
// here hold throwaway data; the levels differ in which crash their commits survive.
type Durability int

const (
	// Throwaway turns fsync, full_page_writes and synchronous_commit off: the fastest setting.
	// A commit the client saw return may vanish if the server crashes.
	Throwaway Durability = iota
	// CrashSafe keeps synchronous_commit on (the commit's WAL is written before the commit
	// returns) with fsync and full_page_writes off: a commit that returned survives a crash of
	// the server (SIGQUIT, SIGKILL), not a crash of the machine. Writing WAL at commit costs a
	// write(2), not a disk flush.
	CrashSafe
	// Durable keeps PostgreSQL's defaults: fsync, full_page_writes and synchronous_commit on.
	Durable
)

func (d Durability) String() string {
	switch d {
	case Throwaway:
		return "throwaway"
	case CrashSafe:
		return "crash-safe"
	case Durable:
		return "durable"
	}
	return fmt.Sprintf("Durability(%d)", int(d))
}

// settings are the server options of the level.
func (d Durability) settings() []string {
	switch d {
	case Throwaway:
		return []string{"fsync=off", "synchronous_commit=off", "full_page_writes=off"}
	case CrashSafe:
		return []string{"fsync=off", "synchronous_commit=on", "full_page_writes=off"}
	}
	return nil
}

func (d Durability) valid() bool { return d >= Throwaway && d <= Durable }

// Options configure a Group.
type Options struct {
	// Dir holds everything the group writes: initdb's folder (proto) and one folder per server.
	// It must be empty or not exist yet; Start creates it. Required.
	Dir string
	// Servers is how many servers Start starts (>= 0); Add starts more later.
	Servers int
	// Durability of the servers Start starts.
	Durability Durability
	// BinDir is the folder holding initdb and postgres; empty means search for it (see the
	// package doc).
	BinDir string
	// Logger receives one line per server start and stop; default: discard.
	Logger *slog.Logger
}

// Validate returns every problem of the options at once, each naming its field.
func (o Options) Validate() error {
	var errs []error
	if o.Dir == "" {
		errs = append(errs, errors.New("localpg: options: Dir is required"))
	}
	if o.Servers < 0 {
		errs = append(errs, fmt.Errorf("localpg: options: Servers %d must be >= 0", o.Servers))
	}
	if !o.Durability.valid() {
		errs = append(errs, fmt.Errorf("localpg: options: unknown Durability %d", int(o.Durability)))
	}
	return errors.Join(errs...)
}

// ServerOptions configure one server started by Group.Add.
type ServerOptions struct {
	Durability Durability
}

// Group is a set of local PostgreSQL servers made from one initdb. It is safe for concurrent
// use.
type Group struct {
	dir     string
	binDir  string
	owner   *syscall.Credential // user the servers run as; nil = this process's user
	proto   string              // data folder made by initdb, copied per server
	logger  *slog.Logger
	spawner *spawner

	mu      sync.Mutex
	seq     int
	servers []*Server // started and not destroyed, in start order
	stopped bool
}

// Start finds the server binaries, runs initdb once into opts.Dir and starts opts.Servers
// servers (in parallel), each from a copy of that folder. On error nothing is left running.
func Start(ctx context.Context, opts Options) (*Group, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	g := &Group{dir: opts.Dir, binDir: opts.BinDir, logger: opts.Logger}
	if g.logger == nil {
		g.logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if g.binDir == "" {
		dir, err := findBinDir(os.Getenv("PATH"), []string{debianBinGlob})
		if err != nil {
			return nil, err
		}
		g.binDir = dir
	} else if !hasServerBinaries(g.binDir) {
		return nil, fmt.Errorf("localpg: options: BinDir %q does not hold initdb and postgres; %s", g.binDir, installHint)
	}
	if err := g.makeDir(); err != nil {
		return nil, err
	}
	if os.Geteuid() == 0 {
		owner, err := postgresUser()
		if err != nil {
			return nil, err
		}
		g.owner = owner
	}
	// 0755 so that the postgres user can traverse it when running as root.
	if err := os.Chmod(g.dir, 0o755); err != nil {
		return nil, fmt.Errorf("localpg: chmod %s: %w", g.dir, err)
	}
	if err := g.chown(g.dir); err != nil {
		return nil, err
	}
	g.spawner = startSpawner()
	if err := g.initdb(ctx); err != nil {
		g.spawner.stop()
		return nil, err
	}

	var wg sync.WaitGroup
	errs := make([]error, opts.Servers)
	for i := range opts.Servers {
		wg.Go(func() { _, errs[i] = g.Add(ctx, ServerOptions{Durability: opts.Durability}) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, errors.Join(err, g.Stop(context.WithoutCancel(ctx)))
	}
	return g, nil
}

// makeDir creates the group's folder, refusing one that holds anything: the group owns what is
// inside and names its folders itself.
func (g *Group) makeDir() error {
	if err := os.MkdirAll(g.dir, 0o755); err != nil {
		return fmt.Errorf("localpg: create Dir %s: %w", g.dir, err)
	}
	entries, err := os.ReadDir(g.dir)
	if err != nil {
		return fmt.Errorf("localpg: read Dir %s: %w", g.dir, err)
	}
	if len(entries) > 0 {
		return fmt.Errorf("localpg: options: Dir %s is not empty (it holds %s); give an empty or new folder", g.dir, entries[0].Name())
	}
	return nil
}

func postgresUser() (*syscall.Credential, error) {
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("localpg: running as root, and PostgreSQL refuses to run as root, "+
			"so the servers run as the system user postgres, which was not found (%v); "+
			"create it (`useradd --system --home-dir /var/lib/postgresql postgres`) or %s", err, installHint)
	}
	uid, errU := strconv.ParseUint(u.Uid, 10, 32)
	gid, errG := strconv.ParseUint(u.Gid, 10, 32)
	if errU != nil || errG != nil {
		return nil, fmt.Errorf("localpg: user postgres has a non-numeric uid %q or gid %q", u.Uid, u.Gid)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

// initdb makes the prototype data folder every server copies.
func (g *Group) initdb(ctx context.Context) error {
	g.proto = filepath.Join(g.dir, "proto")
	logPath := filepath.Join(g.dir, "initdb.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return fmt.Errorf("localpg: initdb log: %w", err)
	}
	defer logFile.Close()
	cmd := exec.Command(filepath.Join(g.binDir, "initdb"),
		"-D", g.proto, "--auth=trust", "-U", "postgres", "--encoding=UTF8", "--locale=C", "--no-sync")
	cmd.Dir = g.dir
	cmd.Env = serverEnv()
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: g.owner, Pdeathsig: syscall.SIGKILL}
	if err := g.spawner.start(cmd); err != nil {
		return fmt.Errorf("localpg: start %s: %w", cmd.Path, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	select {
	case err = <-exited:
	case <-ctx.Done():
		_ = cmd.Process.Kill()
		<-exited
		err = ctx.Err()
	}
	if err != nil {
		hint := ""
		if g.owner != nil {
			hint = "\n(running as root: the servers run as the user postgres, who must be able to reach " + g.dir + " through every parent folder)"
		}
		return fmt.Errorf("localpg: %s: %w\n%s%s", strings.Join(cmd.Args, " "), err, logTail(logPath, 0), hint)
	}
	return nil
}

// BinDir returns the folder of the server binaries the group uses.
func (g *Group) BinDir() string { return g.binDir }

// Dir returns the group's folder.
func (g *Group) Dir() string { return g.dir }

// Servers returns the group's servers (running or stopped, not destroyed), in start order.
func (g *Group) Servers() []*Server {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]*Server(nil), g.servers...)
}

// Add starts one more server from the group's initdb folder, on 127.0.0.1 on a free port, and
// creates the role braid in it. On error nothing of it is left running and its folder is gone.
func (g *Group) Add(ctx context.Context, opts ServerOptions) (*Server, error) {
	if !opts.Durability.valid() {
		return nil, fmt.Errorf("localpg: server options: unknown Durability %d", int(opts.Durability))
	}
	g.mu.Lock()
	if g.stopped {
		g.mu.Unlock()
		return nil, errStopped
	}
	g.seq++
	name := fmt.Sprintf("s%d", g.seq)
	dir := filepath.Join(g.dir, name)
	s := &Server{
		Name:       name,
		Host:       "127.0.0.1",
		Dir:        dir,
		DataDir:    filepath.Join(dir, "data"),
		SocketDir:  filepath.Join(dir, "sock"),
		LogFile:    filepath.Join(dir, "postgres.log"),
		Durability: opts.Durability,
		g:          g,
	}
	// Registered before anything starts, so that Stop stops it whatever happens.
	g.servers = append(g.servers, s)
	g.mu.Unlock()

	err := s.makeFolders()
	if err == nil {
		err = s.startOnFreePort(ctx)
	}
	if err == nil {
		err = s.AdminExec(ctx, "CREATE ROLE "+Role+" LOGIN NOSUPERUSER CREATEDB")
	}
	if err != nil {
		return nil, errors.Join(fmt.Errorf("localpg: server %s: %w", name, err), s.Destroy())
	}
	g.logger.Info("postgres started", "server", name, "port", s.Port, "data", s.DataDir, "durability", opts.Durability.String())
	return s, nil
}

// Stop shuts every server down (a fast shutdown: sessions are ended, a checkpoint is written;
// an immediate one for servers still running when ctx ends) and waits for them. It leaves the
// folder in place: the caller removes it or keeps it. Idempotent; no server can be added
// afterwards.
func (g *Group) Stop(ctx context.Context) error {
	g.mu.Lock()
	if g.stopped {
		g.mu.Unlock()
		return nil
	}
	g.stopped = true
	servers := append([]*Server(nil), g.servers...)
	g.mu.Unlock()

	var wg sync.WaitGroup
	errs := make([]error, len(servers))
	for i, s := range servers {
		wg.Go(func() { errs[i] = s.Stop(ctx) })
	}
	wg.Wait()
	if g.spawner != nil {
		g.spawner.stop()
	}
	return errors.Join(errs...)
}

func (g *Group) forget(s *Server) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for i, o := range g.servers {
		if o == s {
			g.servers = append(g.servers[:i], g.servers[i+1:]...)
			return
		}
	}
}
