package pgtest_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/braidq/braid/tests/pgtest"
)

// Main also checks, after stopping the servers, that no goroutine outlived the tests (goleak).
func TestMain(m *testing.M) { pgtest.Main(m) }

func connect(t *testing.T, dsn string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), dsn)
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func queryString(t *testing.T, conn *pgx.Conn, sql string, args ...any) string {
	t.Helper()
	var s string
	require.NoError(t, conn.QueryRow(t.Context(), sql, args...).Scan(&s))
	return s
}

func TestSharedClustersAreDistinctServersThatAcceptBraid(t *testing.T) {
	t.Parallel()
	c0, c1 := pgtest.Shared(t, 0), pgtest.Shared(t, 1)
	require.Same(t, c0, pgtest.Shared(t, 0), "Shared(0) must return the same cluster every time")
	require.NotEqual(t, c0.Port, c1.Port)
	require.NotEqual(t, c0.DataDir, c1.DataDir)
	require.Equal(t, fmt.Sprintf("postgres://braid@127.0.0.1:%d/x?sslmode=disable", c0.Port), c0.DSN("x"))

	for _, c := range []*pgtest.Cluster{c0, c1} {
		conn := connect(t, c.DSN("postgres"))
		require.Equal(t, "braid", queryString(t, conn, "SELECT current_user"))
		require.Equal(t, fmt.Sprint(c.Port), queryString(t, conn, "SELECT inet_server_port()::text"))
	}

	// A database made on one server does not exist on the other.
	dsn := c0.NewDB(t, "")
	cfg, err := pgx.ParseConfig(dsn)
	require.NoError(t, err)
	var onOther bool
	require.NoError(t, connect(t, c1.AdminDSN("postgres")).QueryRow(t.Context(),
		"SELECT EXISTS (SELECT FROM pg_database WHERE datname = $1)", cfg.Database).Scan(&onOther))
	require.False(t, onOther)
}

func TestBraidIsNotSuperuserButCanCreateDatabases(t *testing.T) {
	t.Parallel()
	c := pgtest.Shared(t, 0)
	braid := connect(t, c.DSN("postgres"))
	require.Equal(t, "off", queryString(t, braid, "SHOW is_superuser"))
	var canCreateDB bool
	require.NoError(t, braid.QueryRow(t.Context(), "SELECT rolcreatedb FROM pg_roles WHERE rolname = current_user").Scan(&canCreateDB))
	require.True(t, canCreateDB)

	admin := connect(t, c.AdminDSN("postgres"))
	require.Equal(t, "postgres", queryString(t, admin, "SELECT current_user"))
	require.Equal(t, "on", queryString(t, admin, "SHOW is_superuser"))
}

func TestNewDBGivesIsolatedDatabasesOwnedByBraidAndDropsThem(t *testing.T) {
	t.Parallel()
	c := pgtest.Shared(t, 0)
	var names []string
	t.Run("isolated", func(t *testing.T) {
		a, b := connect(t, c.NewDB(t, "")), connect(t, c.NewDB(t, ""))
		_, err := a.Exec(t.Context(), "CREATE TABLE marker (id int)")
		require.NoError(t, err)

		require.Equal(t, "marker", queryString(t, a, "SELECT coalesce(to_regclass('marker')::text, '')"))
		require.Empty(t, queryString(t, b, "SELECT coalesce(to_regclass('marker')::text, '')"))
		for _, conn := range []*pgx.Conn{a, b} {
			require.Equal(t, "braid", queryString(t, conn,
				"SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = current_database()"))
			names = append(names, queryString(t, conn, "SELECT current_database()"))
		}
		require.NotEqual(t, names[0], names[1])
		// The test leaves both connections open: the drop must not wait for them.
	})

	var left int
	require.NoError(t, connect(t, c.AdminDSN("postgres")).QueryRow(t.Context(),
		"SELECT count(*) FROM pg_database WHERE datname = ANY($1)", names).Scan(&left))
	require.Zero(t, left, "NewDB's databases must be dropped when their test ends")
}

func TestTemplateIsPreparedOnceForConcurrentCallers(t *testing.T) {
	t.Parallel()
	c := pgtest.Shared(t, 0)
	var calls atomic.Int32
	prepare := func(ctx context.Context, dsn string) error {
		calls.Add(1)
		time.Sleep(200 * time.Millisecond) // let the other callers arrive while this runs
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			return err
		}
		defer conn.Close(context.Background())
		_, err = conn.Exec(ctx, "CREATE TABLE jobs (id int); INSERT INTO jobs VALUES (42)")
		return err
	}

	const callers = 8
	names := make([]string, callers)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range callers {
		wg.Go(func() {
			<-start
			names[i] = c.Template(t, "once", prepare)
		})
	}
	close(start)
	wg.Wait()

	require.Equal(t, int32(1), calls.Load())
	for _, name := range names {
		require.Equal(t, names[0], name)
	}
	require.Equal(t, names[0], c.Template(t, "once", prepare))
	require.Equal(t, int32(1), calls.Load())

	// Many copies at once, each with the template's content, each its own.
	dsns := make([]string, 4)
	for i := range dsns {
		dsns[i] = c.NewDB(t, names[0])
	}
	for i, dsn := range dsns {
		conn := connect(t, dsn)
		var id int
		require.NoError(t, conn.QueryRow(t.Context(), "SELECT id FROM jobs").Scan(&id))
		require.Equal(t, 42, id)
		_, err := conn.Exec(t.Context(), "INSERT INTO jobs VALUES ($1)", 100+i)
		require.NoError(t, err)
		require.Equal(t, "2", queryString(t, conn, "SELECT count(*)::text FROM jobs"))
	}
}

// failRecorder records Fatal calls instead of failing the real test, to check that a failed
// prepare fails every caller.
type failRecorder struct {
	testing.TB
	mu     sync.Mutex
	fatals []string
}

func (r *failRecorder) Helper() {}

func (r *failRecorder) Fatalf(format string, args ...any) {
	r.mu.Lock()
	r.fatals = append(r.fatals, fmt.Sprintf(format, args...))
	r.mu.Unlock()
	runtime.Goexit()
}

func (r *failRecorder) Fatal(args ...any) { r.Fatalf("%s", fmt.Sprint(args...)) }

// callConcurrently calls Template from n goroutines at once and returns what each got.
func callConcurrently(c *pgtest.Cluster, tb testing.TB, n int, key string, prepare func(context.Context, string) error) []string {
	names := make([]string, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			defer func() { _ = recover() }() // the caller that runs a panicking prepare
			<-start
			names[i] = c.Template(tb, key, prepare)
		})
	}
	close(start)
	wg.Wait()
	return names
}

func TestTemplateFailureFailsEveryCaller(t *testing.T) {
	t.Parallel()
	c := pgtest.Shared(t, 0)
	tests := []struct {
		name    string
		prepare func(ctx context.Context, dsn string) error
		want    string
	}{
		{"an error from prepare fails every caller with that error", func(context.Context, string) error {
			time.Sleep(100 * time.Millisecond)
			return errors.New("migration 7 is broken")
		}, "migration 7 is broken"},
		{"a panic in prepare fails the other callers instead of hanging them", func(context.Context, string) error {
			time.Sleep(100 * time.Millisecond)
			panic("boom")
		}, "did not return"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var calls atomic.Int32
			prepare := func(ctx context.Context, dsn string) error {
				calls.Add(1)
				return tt.prepare(ctx, dsn)
			}
			rec := &failRecorder{TB: t}
			key := "failing " + t.Name()
			callConcurrently(c, rec, 4, key, prepare)
			callConcurrently(c, rec, 1, key, prepare) // a later caller gets the same failure

			require.Equal(t, int32(1), calls.Load())
			wantFatals := 5
			if strings.Contains(tt.name, "panic") {
				wantFatals = 4 // the caller that ran prepare panicked instead
			}
			require.Len(t, rec.fatals, wantFatals)
			for _, msg := range rec.fatals {
				require.Contains(t, msg, tt.want)
			}
		})
	}
}

func TestTemplateRefusesPrepareThatLeavesConnectionsOpen(t *testing.T) {
	t.Parallel()
	c := pgtest.Shared(t, 0)
	var leaked *pgx.Conn
	t.Cleanup(func() {
		if leaked != nil {
			leaked.Close(context.Background())
		}
	})
	rec := &failRecorder{TB: t}
	callConcurrently(c, rec, 1, "leaky", func(ctx context.Context, dsn string) error {
		var err error
		leaked, err = pgx.Connect(ctx, dsn)
		return err
	})
	require.Len(t, rec.fatals, 1)
	require.Contains(t, rec.fatals[0], "still open")
}

func TestCrashStopsTheServerAndStartRestartsItOnTheSamePort(t *testing.T) {
	t.Parallel()
	c := pgtest.New(t)
	port := c.Port
	admin := connect(t, c.AdminDSN("postgres"))
	// No CHECKPOINT: a commit that returned must survive the crash through the WAL alone.
	_, err := admin.Exec(t.Context(), "CREATE TABLE survivor (id int); INSERT INTO survivor VALUES (7)")
	require.NoError(t, err)

	c.Crash(t)
	_, err = admin.Exec(t.Context(), "SELECT 1")
	require.Error(t, err, "a connection to a crashed server must fail")
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	_, err = pgx.Connect(ctx, c.DSN("postgres"))
	require.Error(t, err, "a crashed server must refuse new connections")

	c.Start(t)
	require.Equal(t, port, c.Port)
	conn := connect(t, c.AdminDSN("postgres"))
	require.Equal(t, "7", queryString(t, conn, "SELECT id::text FROM survivor"), "a committed row must survive Crash and Start")
	require.Equal(t, "braid", queryString(t, connect(t, c.DSN("postgres")), "SELECT current_user"))
}
