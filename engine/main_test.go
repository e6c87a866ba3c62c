package engine_test

import (
	"context"
	"flag"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/braidq/braid/engine"
	"github.com/braidq/braid/tests/pgtest"
)

func TestMain(m *testing.M) {
	// The default suite runs 40 random sequences per property; ask for more with -rapid.checks.
	flag.Parse()
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == "rapid.checks" })
	if !set {
		_ = flag.Set("rapid.checks", "40")
	}
	pgtest.Main(m)
}

// bundle is one test's engine over its own freshly migrated database.
type bundle struct {
	eng     *engine.Engine
	pool    *pgxpool.Pool
	cluster *pgtest.Cluster
	dsn     string
	ctx     context.Context
}

const testShard = 7

// migratedTemplate returns the template database migrated as shard testShard of cluster "test".
func migratedTemplate(t testing.TB, c *pgtest.Cluster) string {
	return c.Template(t, "engine", func(ctx context.Context, dsn string) error {
		pool, err := pgxpool.New(ctx, dsn)
		if err != nil {
			return err
		}
		defer pool.Close()
		_, err = engine.Migrate(ctx, pool, engine.MigrateOptions{ShardID: testShard, Cluster: "test"})
		return err
	})
}

func newPool(t testing.TB, dsn string, maxConns int32) *pgxpool.Pool {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(dsn)
	require.NoError(t, err)
	cfg.MaxConns = maxConns
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	return pool
}

// setup gives the test an engine over a new database made from the migrated template.
func setup(t testing.TB, cfgs ...engine.Config) *bundle {
	t.Helper()
	c := pgtest.Shared(t, 0)
	dsn := c.NewDB(t, migratedTemplate(t, c))
	pool := newPool(t, dsn, 16)
	var cfg engine.Config
	if len(cfgs) > 0 {
		cfg = cfgs[0]
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	t.Cleanup(cancel)
	eng, err := engine.Open(ctx, pool, cfg)
	require.NoError(t, err)
	return &bundle{eng: eng, pool: pool, cluster: c, dsn: dsn, ctx: ctx}
}

// exec runs SQL with the schema token substituted (tests that poke at the engine's tables).
func (b *bundle) exec(t testing.TB, sql string, args ...any) {
	t.Helper()
	_, err := b.pool.Exec(b.ctx, sql, args...)
	require.NoError(t, err)
}

func (b *bundle) scalar(t testing.TB, sql string, args ...any) int64 {
	t.Helper()
	var n int64
	require.NoError(t, b.pool.QueryRow(b.ctx, sql, args...).Scan(&n))
	return n
}

// rotate advances a ring by one generation, as maintenance does (the slot must be empty).
func (b *bundle) rotate(t testing.TB, ring string) {
	b.exec(t, `INSERT INTO braid.ring_gen (ring, generation)
		SELECT ring, max(generation) + 1 FROM braid.ring_gen WHERE ring = $1 GROUP BY ring`, ring)
}

func job(queue string) engine.Job {
	return engine.Job{Queue: queue, Kind: "test", Args: []byte(`{"n":1}`)}
}
