package shard_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/sony/gobreaker/v2"
	"github.com/stretchr/testify/require"

	"github.com/braidq/braid/engine"
	"github.com/braidq/braid/health"
	"github.com/braidq/braid/shard"
	"github.com/braidq/braid/tests/pgtest"
)

// shardDBs makes one migrated database per shared cluster: shard i+1 on cluster i. A copy of
// a migrated template costs about a second, so the subtests of a test share these.
func shardDBs(t *testing.T) []string {
	t.Helper()
	dsns := make([]string, 3)
	var wg sync.WaitGroup
	for i := range dsns {
		c := pgtest.Shared(t, i)
		wg.Go(func() { dsns[i] = migratedDB(t, c, i+1) })
	}
	wg.Wait()
	return dsns
}

func open(t *testing.T, cfg shard.Config) *shard.Shard {
	t.Helper()
	s, err := shard.Open(t.Context(), cfg, shard.Deps{})
	require.NoError(t, err)
	t.Cleanup(s.Close)
	return s
}

func TestShard(t *testing.T) {
	t.Parallel()
	dsns := shardDBs(t)
	cfg := func(id int, dsn string) shard.Config {
		return shard.Config{ID: id, Name: fmt.Sprintf("pg-%d", id), DSN: dsn, Cluster: cluster}
	}

	t.Run("a migrated database with the configured identity opens", func(t *testing.T) {
		t.Parallel()
		s := open(t, cfg(2, dsns[1]))
		require.Equal(t, 2, s.ID())
		require.Equal(t, "pg-2", s.Name())
		require.Equal(t, 2, s.Engine().Identity().ShardID)
		require.Equal(t, gobreaker.StateClosed, s.BreakerState())
		res, err := shard.Call(t.Context(), s, time.Second, func(ctx context.Context) (engine.EnqueueResult, error) {
			return s.Engine().Enqueue(ctx, engine.Job{Queue: "open", Kind: "k"})
		})
		require.NoError(t, err)
		require.Equal(t, 2, engine.ShardOf(res.JobID))
	})

	t.Run("a database that carries another identity is refused, naming both", func(t *testing.T) {
		t.Parallel()
		wrongCluster := cfg(2, dsns[1])
		wrongCluster.Cluster = "prod"
		for name, c := range map[string]shard.Config{
			"another shard id":     cfg(3, dsns[1]),
			"another cluster name": wrongCluster,
		} {
			_, err := shard.Open(t.Context(), c, shard.Deps{})
			var idErr *engine.IdentityError
			require.ErrorAs(t, err, &idErr, name)
			require.Equal(t, engine.Identity{ShardID: c.ID, Cluster: c.Cluster}, idErr.Want)
			require.Equal(t, 2, idErr.Got.ShardID)
			require.ErrorContains(t, err, fmt.Sprintf(`shard %d (%s): database identity is shard 2 of cluster "test"`, c.ID, c.Name))
		}
	})

	t.Run("an unreachable shard is unavailable, named, without its password", func(t *testing.T) {
		t.Parallel()
		l, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		addr := l.Addr().String()
		require.NoError(t, l.Close()) // nothing listens there now
		_, err = shard.Open(t.Context(), shard.Config{
			ID: 4, Name: "pg-d", DSN: "postgres://braid:s3cret@" + addr + "/x?sslmode=disable", Cluster: cluster,
			ConnectTimeout: time.Second,
		}, shard.Deps{})
		var un *shard.UnavailableError
		require.ErrorAs(t, err, &un)
		require.Equal(t, 4, un.ShardID)
		require.ErrorContains(t, err, "shard 4 (pg-d) is unavailable")
		require.NotContains(t, err.Error(), "s3cret")
	})

	t.Run("a bad configuration names every problem", func(t *testing.T) {
		t.Parallel()
		err := shard.Config{ID: 0, Name: "Bad Name", MinConns: -1, Engine: engine.Config{Lanes: 999}}.Validate()
		for _, want := range []string{"id: 0 must be 1..32767", `name: "Bad Name"`, "dsn: required", "cluster: required", "min_conns: -1", "invalid lanes 999"} {
			require.ErrorContains(t, err, want)
		}
		err = shard.ValidateAll([]shard.Config{
			{ID: 1, Name: "a", DSN: "postgres://x@127.0.0.1/a", Cluster: "c"},
			{ID: 1, Name: "a", DSN: "postgres://x@127.0.0.1/b", Cluster: "c"},
			{ID: 2, Name: "b", Engine: engine.Config{MaxAttempts: -1, Lanes: 300}},
		})
		require.ErrorContains(t, err, "shards[2].dsn: required")
		require.ErrorContains(t, err, "shards[2].cluster: required")
		require.ErrorContains(t, err, "shards[2].engine: invalid lanes 300")
		require.ErrorContains(t, err, "shards[2].engine: invalid max_attempts -1")
		require.ErrorContains(t, err, "shards[1].id: 1 duplicates shards[0].id")
		require.ErrorContains(t, err, `shards[1].name: "a" duplicates shards[0].name`)
		_, err = shard.OpenSet(t.Context(), nil, shard.Deps{})
		require.ErrorContains(t, err, "at least one shard")
	})

	t.Run("a set opens every shard, by id", func(t *testing.T) {
		t.Parallel()
		set, err := shard.OpenSet(t.Context(), []shard.Config{cfg(3, dsns[2]), cfg(1, dsns[0]), cfg(2, dsns[1])}, shard.Deps{})
		require.NoError(t, err)
		defer set.Close()
		require.Equal(t, []int{1, 2, 3}, set.IDs())
		for _, id := range set.IDs() {
			s, ok := set.Get(id)
			require.True(t, ok)
			require.Equal(t, id, s.Engine().Identity().ShardID)
		}
		_, ok := set.Get(9)
		require.False(t, ok)
	})

	t.Run("a set is all or nothing: one wrong identity refuses it, naming the shard", func(t *testing.T) {
		t.Parallel()
		_, err := shard.OpenSet(t.Context(), []shard.Config{cfg(1, dsns[0]), cfg(2, dsns[1]), cfg(3, dsns[0])}, shard.Deps{})
		var idErr *engine.IdentityError
		require.ErrorAs(t, err, &idErr)
		require.ErrorContains(t, err, "shard 3 (pg-3): database identity is shard 1")
	})

	t.Run("migrate all reports per shard and refuses a database of another shard", func(t *testing.T) {
		t.Parallel()
		all, err := engine.Migrations()
		require.NoError(t, err)
		fresh := []shard.Config{cfg(1, pgtest.Shared(t, 1).NewDB(t, "")), cfg(2, pgtest.Shared(t, 2).NewDB(t, ""))}
		_, err = shard.Open(t.Context(), fresh[0], shard.Deps{})
		require.ErrorContains(t, err, "braid migrate", "an unmigrated database is refused with the command to run")

		cfgs := append(fresh, cfg(4, dsns[2])) // that database is shard 3
		reports, err := shard.MigrateAll(t.Context(), cfgs)
		var idErr *engine.IdentityError
		require.ErrorAs(t, err, &idErr)
		require.ErrorContains(t, err, "shard 4 (pg-4)")
		require.Len(t, reports, 3)
		for i, r := range reports[:2] {
			require.NoError(t, r.Err)
			require.Equal(t, i+1, r.ShardID)
			require.Len(t, r.Applied, len(all))
			require.Equal(t, len(all), r.Current)
		}
		require.Equal(t, 4, reports[2].ShardID)
		require.ErrorAs(t, reports[2].Err, &idErr)

		reports, err = shard.MigrateAll(t.Context(), fresh)
		require.NoError(t, err)
		for _, r := range reports {
			require.Empty(t, r.Applied, "a second run applies nothing")
		}
		set, err := shard.OpenSet(t.Context(), fresh, shard.Deps{})
		require.NoError(t, err)
		set.Close()
	})

	t.Run("call counts only infrastructure errors and fails fast once open", func(t *testing.T) {
		t.Parallel()
		c := cfg(1, dsns[0])
		c.Breaker = health.BreakerSettings{ConsecutiveFailures: 2, OpenTimeout: time.Hour}
		s := open(t, c)
		ctx := t.Context()
		infra := &net.OpError{Op: "read", Net: "tcp", Err: errors.New("connection reset by peer")}
		app := errors.New("handler: bad args")

		_, err := shard.Call(ctx, s, 0, func(context.Context) (int, error) { return 0, app })
		require.Equal(t, app, err, "an application error is returned as is and counts as an answer")

		cancelled, cancel := context.WithCancel(ctx)
		_, err = shard.Call(cancelled, s, 0, func(context.Context) (int, error) { cancel(); return 0, infra })
		require.ErrorIs(t, err, infra)
		var un *shard.UnavailableError
		require.False(t, errors.As(err, &un), "a caller that left gets the error, not a verdict on the shard")

		for range 2 {
			_, err = shard.Call(ctx, s, 0, func(context.Context) (int, error) { return 0, infra })
			require.ErrorAs(t, err, &un)
			require.Equal(t, 1, un.ShardID)
			require.False(t, un.BreakerOpen())
		}
		require.Equal(t, gobreaker.StateOpen, s.BreakerState())
		_, err = shard.Call(ctx, s, 0, func(context.Context) (int, error) {
			t.Error("an open breaker ran the call")
			return 0, nil
		})
		require.ErrorAs(t, err, &un)
		require.True(t, un.BreakerOpen())
		require.ErrorIs(t, err, gobreaker.ErrOpenState)
		require.EqualError(t, err, "shard 1 (pg-1) is unavailable: circuit breaker open after repeated failures")

		// braid's own timeout while the caller still waits is the shard's fault.
		s2 := open(t, cfg(1, dsns[0]))
		_, err = shard.Call(ctx, s2, 50*time.Millisecond, func(ctx context.Context) (int, error) {
			_, err := s2.Pool().Exec(ctx, "SELECT pg_sleep(10)")
			return 0, err
		})
		require.ErrorAs(t, err, &un)
		require.ErrorIs(t, err, context.DeadlineExceeded)
	})
}
