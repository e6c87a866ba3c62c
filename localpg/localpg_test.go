package localpg_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/braidq/braid/localpg"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const testPrefix = "localpg-test"

// newDir returns an empty folder the postgres user can reach when the tests run as root
// (t.TempDir's parents are private to root), removed when the test ends.
func newDir(t *testing.T) string {
	t.Helper()
	localpg.RemoveStaleTempDirs(testPrefix)
	dir, err := localpg.TempDir(testPrefix)
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func start(t *testing.T, opts localpg.Options) *localpg.Group {
	t.Helper()
	g, err := localpg.Start(t.Context(), opts)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, g.Stop(context.Background())) })
	return g
}

func connect(t *testing.T, dsn string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), dsn)
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func show(t *testing.T, conn *pgx.Conn, sql string) string {
	t.Helper()
	var s string
	require.NoError(t, conn.QueryRow(t.Context(), sql).Scan(&s))
	return s
}

// alive says whether a process with the pid exists (the group reaps its servers, so an exited
// server leaves no zombie behind).
func alive(pid int) bool { return syscall.Kill(pid, 0) == nil }

func TestGroup(t *testing.T) {
	t.Parallel()
	dir := newDir(t)
	g := start(t, localpg.Options{Dir: dir, Servers: 2})
	require.Len(t, g.Servers(), 2)
	crashSafe, err := g.Add(t.Context(), localpg.ServerOptions{Durability: localpg.CrashSafe})
	require.NoError(t, err)
	durable, err := g.Add(t.Context(), localpg.ServerOptions{Durability: localpg.Durable})
	require.NoError(t, err)
	servers := g.Servers()
	require.Len(t, servers, 4)

	t.Run("servers are distinct, on loopback, and braid logs in without being a superuser", func(t *testing.T) {
		ports := map[int]bool{}
		for _, s := range servers {
			require.True(t, s.Running())
			ports[s.Port] = true
			require.Equal(t, fmt.Sprintf("postgres://braid@127.0.0.1:%d/postgres?sslmode=disable", s.Port), s.DSN("postgres"))
			require.True(t, strings.HasPrefix(s.DataDir, dir+string(filepath.Separator)), "every server lives in Dir")

			braid := connect(t, s.DSN("postgres"))
			require.Equal(t, "braid", show(t, braid, "SELECT current_user"))
			require.Equal(t, "off", show(t, braid, "SHOW is_superuser"))
			require.Equal(t, fmt.Sprint(s.Port), show(t, braid, "SELECT inet_server_port()::text"))
			require.Equal(t, "127.0.0.1/32", show(t, braid, "SELECT inet_server_addr()::text"))
			require.Equal(t, "true", show(t, braid, "SELECT rolcreatedb::text FROM pg_roles WHERE rolname = current_user"))
			admin := connect(t, s.AdminDSN("postgres"))
			require.Equal(t, "on", show(t, admin, "SHOW is_superuser"))

			fi, err := os.Stat(s.DataDir)
			require.NoError(t, err)
			owner := fi.Sys().(*syscall.Stat_t).Uid
			if os.Geteuid() == 0 {
				require.NotZero(t, owner, "as root, the servers run as (and own their folders as) postgres")
			} else {
				require.Equal(t, uint32(os.Geteuid()), owner)
			}
		}
		require.Len(t, ports, 4)
	})

	t.Run("each server keeps the durability it was started with", func(t *testing.T) {
		want := map[*localpg.Server][3]string{ // fsync, synchronous_commit, full_page_writes
			servers[0]: {"off", "off", "off"},
			crashSafe:  {"off", "on", "off"},
			durable:    {"on", "on", "on"},
		}
		for s, w := range want {
			conn := connect(t, s.DSN("postgres"))
			got := [3]string{show(t, conn, "SHOW fsync"), show(t, conn, "SHOW synchronous_commit"), show(t, conn, "SHOW full_page_writes")}
			require.Equal(t, w, got, "server %s (%s)", s.Name, s.Durability)
		}
	})

	t.Run("AdminExec runs as the superuser and names the statement on error", func(t *testing.T) {
		s := servers[1]
		require.NoError(t, s.AdminExec(t.Context(), "CREATE DATABASE app OWNER braid"))
		conn := connect(t, s.DSN("app"))
		require.Equal(t, "braid", show(t, conn, "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = current_database()"))
		err := s.AdminExec(t.Context(), "CREATE DATABASE app")
		require.ErrorContains(t, err, "CREATE DATABASE app")
		require.ErrorContains(t, err, "already exists")
	})

	t.Run("a crash loses no commit of a crash-safe server and Start restarts it on the same port", func(t *testing.T) {
		port := crashSafe.Port
		admin := connect(t, crashSafe.AdminDSN("postgres"))
		_, err := admin.Exec(t.Context(), "CREATE TABLE survivor (id int); INSERT INTO survivor VALUES (7)")
		require.NoError(t, err)
		pid := crashSafe.PID()
		require.NoError(t, crashSafe.Crash())
		require.False(t, crashSafe.Running())
		require.False(t, alive(pid))
		require.ErrorContains(t, crashSafe.Crash(), "not running")

		require.NoError(t, crashSafe.Start(t.Context()))
		require.ErrorContains(t, crashSafe.Start(t.Context()), "already running")
		require.Equal(t, port, crashSafe.Port)
		conn := connect(t, crashSafe.AdminDSN("postgres"))
		require.Equal(t, "7", show(t, conn, "SELECT id::text FROM survivor"))
		log, err := os.ReadFile(crashSafe.LogFile)
		require.NoError(t, err)
		require.Contains(t, string(log), "received immediate shutdown request")
	})
}

func TestStop(t *testing.T) {
	t.Parallel()
	dir := newDir(t)
	g := start(t, localpg.Options{Dir: dir, Servers: 3, Durability: localpg.CrashSafe})
	servers := g.Servers()
	pids := make([]int, len(servers))
	for i, s := range servers {
		pids[i] = s.PID()
		require.True(t, alive(pids[i]))
	}

	// A stop whose context has already ended does not wait for a clean shutdown.
	cancelled, cancel := context.WithCancel(t.Context())
	cancel()
	require.NoError(t, servers[0].Stop(cancelled))
	require.False(t, alive(pids[0]))
	require.NoError(t, servers[0].Stop(cancelled), "Stop is idempotent")

	// The destroyed server is gone with its folder and is no longer the group's.
	require.NoError(t, servers[1].Destroy())
	require.False(t, alive(pids[1]))
	require.NoDirExists(t, servers[1].Dir)
	require.Equal(t, []*localpg.Server{servers[0], servers[2]}, g.Servers())

	require.NoError(t, g.Stop(t.Context()))
	require.False(t, alive(pids[2]))
	require.False(t, servers[2].Running())
	require.NoError(t, g.Stop(t.Context()), "Stop is idempotent")
	require.DirExists(t, servers[2].DataDir, "Stop leaves the folder to the caller")

	for s, want := range map[*localpg.Server]string{
		servers[0]: "received immediate shutdown request",
		servers[2]: "received fast shutdown request",
	} {
		log, err := os.ReadFile(s.LogFile)
		require.NoError(t, err)
		require.Contains(t, string(log), want, "server %s", s.Name)
		require.Contains(t, string(log), "database system is shut down", "server %s", s.Name)
	}

	_, err := g.Add(t.Context(), localpg.ServerOptions{})
	require.ErrorContains(t, err, "stopped")
	require.ErrorContains(t, servers[2].Start(t.Context()), "stopped")
}

func TestBadOptionsAreRefusedNamingTheField(t *testing.T) {
	t.Parallel()
	err := localpg.Options{Servers: -1, Durability: 7}.Validate()
	require.ErrorContains(t, err, "Dir is required")
	require.ErrorContains(t, err, "Servers -1 must be >= 0")
	require.ErrorContains(t, err, "unknown Durability 7")

	dir := newDir(t)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "notes.txt"), nil, 0o644))
	_, err = localpg.Start(t.Context(), localpg.Options{Dir: dir})
	require.ErrorContains(t, err, "is not empty (it holds notes.txt)")

	_, err = localpg.Start(t.Context(), localpg.Options{Dir: newDir(t), BinDir: "/nonexistent/bin"})
	require.ErrorContains(t, err, `BinDir "/nonexistent/bin" does not hold initdb and postgres`)
}

func TestRemoveStaleTempDirsRemovesOnlyDeadProcessesFolders(t *testing.T) {
	t.Parallel()
	const prefix = "localpg-stale-test"
	cmd := exec.Command("true")
	require.NoError(t, cmd.Run())
	deadPID := cmd.Process.Pid
	require.False(t, alive(deadPID))

	dead := filepath.Join(os.TempDir(), fmt.Sprintf("%s-%d-x", prefix, deadPID))
	require.NoError(t, os.MkdirAll(filepath.Join(dead, "s1"), 0o755))
	mine, err := localpg.TempDir(prefix)
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(dead); os.RemoveAll(mine) })

	localpg.RemoveStaleTempDirs(prefix)
	require.NoDirExists(t, dead)
	require.DirExists(t, mine)
}
