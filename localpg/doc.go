// Package localpg starts throwaway PostgreSQL servers on this machine: for braid's tests
// (tests/pgtest), for `braid dev` and for `braid bench`. It owns finding the server binaries,
// running initdb, starting, stopping and crashing servers on loopback, and the role braid.
//
// # Use
//
//	g, err := localpg.Start(ctx, localpg.Options{Dir: dir, Servers: 3, Durability: localpg.CrashSafe})
//	defer g.Stop(ctx)                                   // every server, bounded by ctx
//	s := g.Servers()[0]
//	err = s.AdminExec(ctx, "CREATE DATABASE app OWNER braid")
//	pool, err := pgxpool.New(ctx, s.DSN("app"))        // as braid, not a superuser
//
// A Group is the servers made from one initdb: Start runs initdb once into Dir/proto, and each
// server (Start's, and any added later with Group.Add) starts from a copy of that folder, in
// Dir/sN/{data,sock,postgres.log}. Each listens on 127.0.0.1 on a free port, keeps its unix
// socket in its own folder and trusts every local connection (no passwords: loopback only).
// At its first start each server gets the role braid (LOGIN, CREATEDB, not a superuser), which
// braid's migrations run as; Server.AdminDSN connects as the superuser postgres.
//
// Durability is chosen per server (Durability): Throwaway switches fsync, full_page_writes and
// synchronous_commit off; CrashSafe keeps synchronous_commit on, so a commit that returned
// survives a crash of the server, not of the machine; Durable keeps PostgreSQL's defaults.
//
// # Finding the binaries
//
// Options.BinDir, else initdb on PATH (followed through symlinks), then `pg_config --bindir`,
// then /usr/lib/postgresql/*/bin (Debian and Ubuntu keep the server binaries off PATH), newest
// major version first. A folder counts only if it holds both initdb and postgres. When none is
// found the error says how to install the PostgreSQL server package.
//
// # Running as root
//
// PostgreSQL refuses to run as root. When this process is root, initdb and the servers run as
// the system user postgres (SysProcAttr credentials), who is given Dir and everything in it;
// Dir and its parents must then be reachable by that user (os.TempDir() is).
//
// # No server outlives its process
//
// The postgres binary is started directly (not through pg_ctl, which daemonizes), in its own
// process group (a Ctrl-C meant for this process does not reach it; Stop ends it in order),
// from one OS thread that lives as long as the group, with a parent-death signal of SIGKILL: a
// process killed by a panic, a signal or a test timeout leaves no server behind. Its folder is
// left behind; TempDir names folders after the process id so that RemoveStaleTempDirs can
// remove those of dead processes for callers whose folders are always throwaway.
//
// # Must never
//
// localpg never connects to a server it did not start, never writes outside Dir (TempDir and
// RemoveStaleTempDirs work on their own prefix in os.TempDir() only), and reads the
// environment only to find the binaries (PATH) and to hand it on to the servers, less libpq's
// PG* and the locale variables (which could point a server at another folder or translate the
// log lines localpg reads). It imports pgx only.
//
// # Locks
//
// The group's lock guards its list of servers and its stopped flag; a server's lock guards its
// running process (Start, Stop, Crash, Destroy). The group's lock is never held while waiting
// for a server.
package localpg
