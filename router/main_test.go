package router_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/braidq/braid/engine"
	"github.com/braidq/braid/health"
	"github.com/braidq/braid/router"
	"github.com/braidq/braid/shard"
	"github.com/braidq/braid/tests/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

const cluster = "test"

// shardDB returns a fresh database on c migrated as shard id of cluster "test", with the
// catalog's series too, so that any shard can host the catalog. A copy costs about a second:
// tests share worlds and use queue names of their own.
func shardDB(t testing.TB, c *pgtest.Cluster, id int) string {
	t.Helper()
	tmpl := c.Template(t, fmt.Sprintf("router-shard-%d", id), func(ctx context.Context, dsn string) error {
		pool, err := pgxpool.New(ctx, dsn)
		if err != nil {
			return err
		}
		defer pool.Close()
		if _, err := engine.Migrate(ctx, pool, engine.MigrateOptions{ShardID: id, Cluster: cluster}); err != nil {
			return err
		}
		_, _, err = router.MigrateCatalog(ctx, pool, "")
		return err
	})
	return c.NewDB(t, tmpl)
}

// world is three shards (shard i+1 on a cluster of its own) and a catalog on shard 1.
type world struct {
	cfgs []shard.Config
	set  *shard.Set
	cat  *router.Catalog
}

func shardConfig(id int, dsn string) shard.Config {
	return shard.Config{ID: id, Name: fmt.Sprintf("pg-%d", id), DSN: dsn, Cluster: cluster, MaxConns: 8}
}

// newWorld makes one database per shared cluster 0..2 (from migrated templates) and opens the
// set and the catalog.
func newWorld(t testing.TB, breaker health.BreakerSettings) *world {
	t.Helper()
	return newWorldOf(t, breaker, func(i int) string { return shardDB(t, pgtest.Shared(t, i), i+1) })
}

// newWorldOf makes the three shards' databases with db(i) for shard i+1.
func newWorldOf(t testing.TB, breaker health.BreakerSettings, db func(i int) string) *world {
	t.Helper()
	w := &world{cfgs: make([]shard.Config, 3)}
	var wg sync.WaitGroup
	for i := range w.cfgs {
		wg.Go(func() {
			w.cfgs[i] = shardConfig(i+1, db(i))
			w.cfgs[i].Breaker = breaker
		})
	}
	wg.Wait()
	set, err := shard.OpenSet(context.Background(), w.cfgs, shard.Deps{})
	require.NoError(t, err)
	t.Cleanup(set.Close)
	s1, _ := set.Get(1)
	cat, err := router.NewCatalog(context.Background(), s1.Pool(), router.CatalogConfig{})
	require.NoError(t, err)
	w.set, w.cat = set, cat
	return w
}

// migratedDB migrates a new empty database on c as shard id: cheaper than a template for a
// private cluster that serves one database.
func migratedDB(t testing.TB, c *pgtest.Cluster, id int) string {
	t.Helper()
	dsn := c.NewDB(t, "")
	pool, err := pgxpool.New(context.Background(), dsn)
	require.NoError(t, err)
	defer pool.Close()
	_, err = engine.Migrate(context.Background(), pool, engine.MigrateOptions{ShardID: id, Cluster: cluster})
	require.NoError(t, err)
	return dsn
}

func (w *world) client(t testing.TB, cfg router.Config) *router.Client {
	return w.clientWith(t, w.cat, cfg)
}

func (w *world) clientWith(t testing.TB, cat *router.Catalog, cfg router.Config) *router.Client {
	t.Helper()
	c, err := router.New(cfg, router.Deps{Shards: w.set, Catalog: cat})
	require.NoError(t, err)
	return c
}

func (w *world) shard(t testing.TB, id int) *shard.Shard {
	t.Helper()
	s, ok := w.set.Get(id)
	require.True(t, ok)
	return s
}

// available is the queue's available count on one shard.
func (w *world) available(t testing.TB, id int, queue string) int64 {
	t.Helper()
	n, err := w.shard(t, id).Engine().Counts(context.Background(), queue)
	require.NoError(t, err)
	return n.Available
}

// EmailArgs are typed job args as users write them.
type EmailArgs struct {
	To string `json:"to"`
	N  int    `json:"n"`
}

func (EmailArgs) Kind() string { return "email" }
