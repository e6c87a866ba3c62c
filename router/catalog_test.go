package router_test

import (
	"fmt"
	"math"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/braidq/braid/engine"
	"github.com/braidq/braid/router"
	"github.com/braidq/braid/tests/pgtest"
)

func TestCatalog(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	dsn := pgtest.Shared(t, 2).NewDB(t, "")
	pool, err := pgxpool.New(ctx, dsn)
	require.NoError(t, err)
	defer pool.Close()

	_, err = router.NewCatalog(ctx, pool, router.CatalogConfig{})
	require.ErrorContains(t, err, "catalog: schema braid is at catalog version 0, this binary needs 1 (run braid migrate)")

	set, err := router.CatalogMigrations()
	require.NoError(t, err)
	applied, current, err := router.MigrateCatalog(ctx, pool, "")
	require.NoError(t, err)
	require.Len(t, applied, len(set.Migrations))
	require.Equal(t, len(set.Migrations), current)
	applied, _, err = router.MigrateCatalog(ctx, pool, "")
	require.NoError(t, err)
	require.Empty(t, applied)
	var engineTables int
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM pg_tables WHERE schemaname = 'braid' AND tablename = 'schema_migration'`).Scan(&engineTables))
	require.Zero(t, engineTables, "a catalog of its own holds no engine schema")

	cat, err := router.NewCatalog(ctx, pool, router.CatalogConfig{})
	require.NoError(t, err)

	t.Run("the first writer wins; everyone reads the winner", func(t *testing.T) {
		var (
			wg      sync.WaitGroup
			mu      sync.Mutex
			created int
			homes   = map[int]int{}
		)
		start := make(chan struct{})
		for i := range 16 {
			wg.Go(func() {
				<-start
				e, c, err := cat.Claim(ctx, "contested", i%3+1)
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				defer mu.Unlock()
				homes[e.ShardID]++
				if c {
					created++
				}
			})
		}
		close(start)
		wg.Wait()
		require.Equal(t, 1, created)
		require.Len(t, homes, 1, "every claimer got the same home: %v", homes)
	})

	t.Run("since returns exactly the changes after a version", func(t *testing.T) {
		v0, none, err := cat.Since(ctx, math.MaxInt64)
		require.NoError(t, err)
		require.Empty(t, none)
		for i := range 3 {
			_, _, err := cat.Claim(ctx, fmt.Sprintf("since-%d", i), 2)
			require.NoError(t, err)
		}
		v1, changed, err := cat.Since(ctx, v0)
		require.NoError(t, err)
		require.Equal(t, v0+3, v1)
		require.Len(t, changed, 3)
		for _, e := range changed {
			require.Equal(t, router.EntryActive, e.State)
			require.Equal(t, int64(1), e.Epoch)
			require.Greater(t, e.Version, v0)
		}
		_, changed, err = cat.Since(ctx, v1)
		require.NoError(t, err)
		require.Empty(t, changed)
		_, all, err := cat.Since(ctx, 0)
		require.NoError(t, err)
		require.GreaterOrEqual(t, len(all), 3)
	})

	t.Run("update is compare-and-set on the epoch", func(t *testing.T) {
		e, _, err := cat.Claim(ctx, "cas", 1)
		require.NoError(t, err)
		moved, err := cat.Update(ctx, "cas", 1, router.Entry{ShardID: 2, Epoch: 2, State: router.EntryMoving, DrainFrom: 1})
		require.NoError(t, err)
		require.Equal(t, router.Entry{Queue: "cas", ShardID: 2, Epoch: 2, State: router.EntryMoving, DrainFrom: 1, Version: moved.Version}, moved)
		require.Greater(t, moved.Version, e.Version)

		got, err := cat.Update(ctx, "cas", 1, router.Entry{ShardID: 3, Epoch: 2, State: router.EntryMoving, DrainFrom: 1})
		require.ErrorIs(t, err, router.ErrEpochConflict)
		require.Equal(t, moved, got, "the loser sees the entry in force")

		_, err = cat.Update(ctx, "no-such-queue", 1, router.Entry{ShardID: 1, Epoch: 1, State: router.EntryActive})
		require.ErrorIs(t, err, engine.ErrNotFound)

		_, err = cat.Update(ctx, "cas", 2, router.Entry{ShardID: 0, Epoch: 1, State: "gone", DrainFrom: 0})
		for _, want := range []string{"invalid shard_id 0", "invalid epoch", `invalid state "gone"`} {
			require.ErrorContains(t, err, want)
		}
		_, err = cat.Update(ctx, "cas", 2, router.Entry{ShardID: 2, Epoch: 2, State: router.EntryDraining})
		require.ErrorContains(t, err, "invalid drain_from 0")
	})
}
