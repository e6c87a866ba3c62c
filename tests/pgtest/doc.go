// Package pgtest starts real PostgreSQL clusters for braid's tests. braid's SQL is never
// tested against a mock: every package that touches SQL runs its tests on servers started here.
//
// # Use
//
//	func TestMain(m *testing.M) { pgtest.Main(m) }
//
//	func TestSomething(t *testing.T) {
//		c := pgtest.Shared(t, 0)                         // the process's first cluster
//		tmpl := c.Template(t, "engine-v3", migrate)      // migrated once per process
//		dsn := c.NewDB(t, tmpl)                          // a fresh database for this test
//		...
//	}
//
// Shared clusters live for the whole test process and are stopped by [Main]. A test that stops
// or crashes a server takes a private one from [New]. Tests connect as the role braid (LOGIN,
// CREATEDB, not a superuser), which owns every database made by [Cluster.NewDB] and
// [Cluster.Template], because the engine's migrations must run as a non-superuser owning its
// schema; [Cluster.AdminDSN] connects as the superuser postgres.
//
// # How servers run
//
// The servers come from package localpg (which also serves `braid dev` and `braid bench`);
// pgtest is the test layer on it: one localpg.Group per test process, templates, per-test
// databases, goleak. The server binaries are looked up on PATH (initdb), then with
// `pg_config --bindir`, then in /usr/lib/postgresql/*/bin, newest major version first. A missing
// binary fails the test with a message saying how to install PostgreSQL; it never skips.
//
// initdb runs once per test process into a temporary folder (pgtest-PID-*) under os.TempDir();
// each cluster starts from a copy of that folder, listens on 127.0.0.1 on a free port, keeps its
// unix socket in its own folder and logs to postgres.log beside its data folder. Durability
// against power loss is switched off (fsync, full_page_writes): these servers hold test data
// only. Shared clusters also run with synchronous_commit off (localpg.Throwaway); private ones
// keep it on (localpg.CrashSafe), so that a commit the client saw return survives Crash (a
// server crash, not a power loss). PostgreSQL refuses to run as root, so when the tests run as
// root the servers run as the `postgres` system user, who owns the temporary folder.
//
// The postgres binary is started directly (not through pg_ctl, which daemonizes) from one
// OS thread that lives as long as the servers, with a parent-death signal of SIGKILL: a test
// binary killed by a panic, a -timeout or a signal leaves no server behind. Its temporary folder
// is removed by the next test process that starts pgtest.
//
// # Must never
//
// pgtest is imported by tests only (DESIGN.md §1). It never reads or writes anything outside its
// temporary folder, never connects to a server it did not start, and never skips a test because
// PostgreSQL is missing.
//
// # State and locks
//
// pgtest keeps process-wide state by nature (one initdb and one set of shared clusters per test
// process). The process lock guards the shared clusters and the closed flag; localpg's locks
// guard each running server (Crash, Start, stop); a cluster's template lock guards its template
// table. No lock is
// held while waiting for another: a caller waiting for a shared cluster or a template being
// prepared waits on a channel.
package pgtest
