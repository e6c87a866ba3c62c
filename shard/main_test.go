package shard_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/braidq/braid/engine"
	"github.com/braidq/braid/tests/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

const cluster = "test"

// migratedDB returns a fresh database on c migrated as shard id of cluster "test".
func migratedDB(t testing.TB, c *pgtest.Cluster, id int) string {
	t.Helper()
	tmpl := c.Template(t, fmt.Sprintf("shard-%d", id), func(ctx context.Context, dsn string) error {
		pool, err := pgxpool.New(ctx, dsn)
		if err != nil {
			return err
		}
		defer pool.Close()
		_, err = engine.Migrate(ctx, pool, engine.MigrateOptions{ShardID: id, Cluster: cluster})
		return err
	})
	return c.NewDB(t, tmpl)
}
