package node_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/braidq/braid/engine"
	"github.com/braidq/braid/router"
	"github.com/braidq/braid/router/membership"
	"github.com/braidq/braid/router/node"
	"github.com/braidq/braid/router/worker"
	"github.com/braidq/braid/shard"
	"github.com/braidq/braid/tests/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

const cluster = "test"

// world is three shards, shard i+1 in a fresh database on shared cluster i, with the catalog
// on shard 1. Each node opens its own shard set, as separate processes would.
type world struct {
	cfgs []shard.Config
}

func newWorld(t testing.TB) *world {
	t.Helper()
	w := &world{cfgs: make([]shard.Config, 3)}
	var wg sync.WaitGroup
	for i := range w.cfgs {
		wg.Go(func() {
			c := pgtest.Shared(t, i)
			tmpl := c.Template(t, fmt.Sprintf("node-shard-%d", i+1), func(ctx context.Context, dsn string) error {
				pool, err := pgxpool.New(ctx, dsn)
				if err != nil {
					return err
				}
				defer pool.Close()
				if _, err := engine.Migrate(ctx, pool, engine.MigrateOptions{ShardID: i + 1, Cluster: cluster}); err != nil {
					return err
				}
				_, _, err = router.MigrateCatalog(ctx, pool, "")
				return err
			})
			w.cfgs[i] = shard.Config{ID: i + 1, Name: fmt.Sprintf("pg-%d", i+1), DSN: c.NewDB(t, tmpl), Cluster: cluster, MaxConns: 10}
		})
	}
	wg.Wait()
	return w
}

// proc is what one router process holds: its shard set, catalog, client and (maybe) node.
type proc struct {
	set    *shard.Set
	client *router.Client
	node   *node.Node
}

// open opens a process's shard set, catalog and router client, closed at cleanup.
func (w *world) open(t testing.TB, name string) *proc {
	t.Helper()
	cfgs := make([]shard.Config, len(w.cfgs))
	for i, c := range w.cfgs {
		c.Engine.Node = name
		cfgs[i] = c
	}
	set, err := shard.OpenSet(context.Background(), cfgs, shard.Deps{})
	require.NoError(t, err)
	t.Cleanup(set.Close)
	s1, _ := set.Get(1)
	cat, err := router.NewCatalog(context.Background(), s1.Pool(), router.CatalogConfig{})
	require.NoError(t, err)
	client, err := router.New(router.Config{}, router.Deps{Shards: set, Catalog: cat})
	require.NoError(t, err)
	return &proc{set: set, client: client}
}

// fastConfig is a node config tuned for tests: sub-second gossip, short settle and polls, quick
// heartbeats and rescue.
func fastConfig(id string, queues []string, seeds []string) node.Config {
	qs := map[string]node.QueueConfig{}
	for _, q := range queues {
		qs[q] = node.QueueConfig{}
	}
	cfg := node.Config{
		ID:                id,
		Queues:            qs,
		MaxWorkers:        50,
		Settle:            200 * time.Millisecond,
		PollInterval:      200 * time.Millisecond,
		DirectoryInterval: 200 * time.Millisecond,
		QueuesInterval:    500 * time.Millisecond,
		Gossip:            membership.Config{Preset: "fast", Seeds: seeds, ClusterLabel: "braid-test"},
	}
	cfg.Heartbeat.Interval = 300 * time.Millisecond
	cfg.Maintenance.LeaseTTL = 3 * time.Second
	cfg.Maintenance.RescueStale = 5 * time.Second
	cfg.Maintenance.RescueInterval = 300 * time.Millisecond
	cfg.Maintenance.PromoteInterval = 100 * time.Millisecond
	return cfg
}

// startNode starts a node in p with the given workers; Stop runs at cleanup if the test did not.
func startNode(t testing.TB, p *proc, cfg node.Config, ws *worker.Workers, onAcked func([]worker.Acked)) *node.Node {
	t.Helper()
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: logLevel()}))
	n, err := node.New(cfg, node.Deps{Shards: p.set, Client: p.client, Workers: ws, Logger: logger, OnAcked: onAcked})
	require.NoError(t, err)
	require.NoError(t, n.Start(context.Background()))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = n.Stop(ctx)
	})
	p.node = n
	return n
}

// waitFor polls cond until it holds or the timeout passes, then fails with what.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// logLevel is warn, or debug with BRAID_TEST_DEBUG set.
func logLevel() slog.Level {
	if os.Getenv("BRAID_TEST_DEBUG") != "" {
		return slog.LevelDebug
	}
	return slog.LevelWarn
}
