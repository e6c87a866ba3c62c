package engine_test

import (
	"testing"
	"testing/fstest"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/braidq/braid/engine"
	"github.com/braidq/braid/tests/pgtest"
)

func TestMigrationSets(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	c := pgtest.Shared(t, 0)
	pool := newPool(t, c.NewDB(t, ""), 2)
	load := func(files fstest.MapFS) engine.MigrationSet {
		set, err := engine.LoadMigrationSet("extra", "extra_migration", files, "m")
		require.NoError(t, err)
		return set
	}
	v1 := load(fstest.MapFS{"m/001_a.sql": {Data: []byte(`CREATE TABLE braid.extra_a (x int)`)}})
	v2 := load(fstest.MapFS{
		"m/001_a.sql": {Data: []byte(`CREATE TABLE braid.extra_a (x int)`)},
		"m/002_b.sql": {Data: []byte(`CREATE TABLE braid.extra_b (x int)`)},
	})
	apply := func(schema string, set engine.MigrationSet) ([]int, int, error) {
		var (
			applied []int
			current int
		)
		err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			var err error
			applied, current, err = engine.ApplyMigrations(ctx, tx, schema, set)
			return err
		})
		return applied, current, err
	}

	v, err := engine.MigrationVersion(ctx, pool, "braid_x", v1)
	require.NoError(t, err)
	require.Zero(t, v, "no schema yet reads as version 0")

	// Another series and the engine's share a schema, each recorded in its own table.
	_, err = engine.Migrate(ctx, pool, engine.MigrateOptions{Schema: "braid_x", ShardID: 1, Cluster: "c"})
	require.NoError(t, err)
	applied, current, err := apply("braid_x", v2)
	require.NoError(t, err)
	require.Equal(t, []int{1, 2}, applied)
	require.Equal(t, 2, current)
	_, err = engine.Open(ctx, pool, engine.Config{Schema: "braid_x"})
	require.NoError(t, err, "the engine's version is untouched by the other series")
	v, err = engine.MigrationVersion(ctx, pool, "braid_x", v2)
	require.NoError(t, err)
	require.Equal(t, 2, v)

	// An older binary refuses a schema that is newer than it knows.
	_, _, err = apply("braid_x", v1)
	require.ErrorContains(t, err, "schema braid_x is at extra version 2, newer than this binary knows (1)")

	_, err = engine.LoadMigrationSet("extra", "Bad Table", fstest.MapFS{}, "m")
	require.ErrorContains(t, err, `invalid table "Bad Table"`)
	_, err = engine.LoadMigrationSet("extra", "t", fstest.MapFS{"m/002_b.sql": {Data: []byte(`SELECT 1`)}}, "m")
	require.ErrorContains(t, err, "extra migrations: migration version 2 (b): expected version 1")
}
