package pgtest

import (
	"context"
	"sync"
	"testing"

	"github.com/braidq/braid/localpg"
)

// Cluster is one running (or crashed) PostgreSQL server started by pgtest. The exported fields
// describe it; they do not change while the cluster lives (Start keeps the port).
type Cluster struct {
	Host      string // 127.0.0.1
	Port      int    // TCP port on Host
	DataDir   string // the server's data folder
	SocketDir string // folder of its unix socket
	LogFile   string // the server's log (every start appends)

	srv *localpg.Server

	tmplMu    sync.Mutex
	templates map[string]*templateSlot
}

// serverRole is the role tests connect as: it can log in and create databases, and owns what
// it creates, but is not a superuser (the engine's migrations must not need one).
const serverRole = localpg.Role

// DSN returns the URL connecting as braid to database db, e.g.
// postgres://braid@127.0.0.1:PORT/db?sslmode=disable.
func (c *Cluster) DSN(db string) string { return c.srv.DSN(db) }

// AdminDSN returns the URL connecting as the superuser postgres to database db.
func (c *Cluster) AdminDSN(db string) string { return c.srv.AdminDSN(db) }

// Crash stops the server like `pg_ctl -m immediate` (SIGQUIT to the postmaster: no shutdown
// checkpoint, crash recovery at the next start) and waits for it to exit.
func (c *Cluster) Crash(t testing.TB) {
	t.Helper()
	if err := c.srv.Crash(); err != nil {
		t.Fatalf("pgtest: Crash: %v", err)
	}
}

// Start restarts a stopped cluster on the same port and data folder and waits until it accepts
// connections.
func (c *Cluster) Start(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := c.srv.Start(ctx); err != nil {
		t.Fatalf("pgtest: Start: %v", err)
	}
}

func (c *Cluster) running() bool { return c.srv.Running() }

// startCluster starts a server of the process's group: a copy of the initdb folder on a free
// port, with the role braid. Shared clusters are Throwaway; private ones (New) are CrashSafe:
// with synchronous_commit off, a commit the client saw succeed can vanish in Crash (its WAL was
// still in the server's memory), and crash tests that check "no acknowledged job lost" would
// fail for the harness's sake.
func startCluster(g *localpg.Group, d localpg.Durability) (*Cluster, error) {
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	srv, err := g.Add(ctx, localpg.ServerOptions{Durability: d})
	if err != nil {
		return nil, err
	}
	return &Cluster{
		Host:      srv.Host,
		Port:      srv.Port,
		DataDir:   srv.DataDir,
		SocketDir: srv.SocketDir,
		LogFile:   srv.LogFile,
		srv:       srv,
	}, nil
}

// adminExec runs one statement as the superuser in the postgres database.
func (c *Cluster) adminExec(ctx context.Context, sql string, args ...any) error {
	return c.srv.AdminExec(ctx, sql, args...)
}
