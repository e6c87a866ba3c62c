package engine_test

import (
	"context"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/braidq/braid/engine"
	"github.com/braidq/braid/tests/pgtest"
)

func TestMigrate(t *testing.T) {
	t.Parallel()
	c := pgtest.Shared(t, 0)
	ctx := context.Background()

	t.Run("applies every version once, as a non-superuser, and writes the identity", func(t *testing.T) {
		pool := newPool(t, c.NewDB(t, ""), 4)
		var super bool
		require.NoError(t, pool.QueryRow(ctx, `SELECT rolsuper FROM pg_roles WHERE rolname = current_user`).Scan(&super))
		require.False(t, super, "tests must migrate as a non-superuser")

		all, err := engine.Migrations()
		require.NoError(t, err)
		res, err := engine.Migrate(ctx, pool, engine.MigrateOptions{Schema: "braid_alt", ShardID: 3, Cluster: "c1"})
		require.NoError(t, err)
		require.Len(t, res.Applied, len(all))
		require.Equal(t, len(all), res.Current)
		require.Equal(t, 3, res.Identity.ShardID)

		again, err := engine.Migrate(ctx, pool, engine.MigrateOptions{Schema: "braid_alt", ShardID: 3, Cluster: "c1"})
		require.NoError(t, err)
		require.Empty(t, again.Applied)

		var owner string
		require.NoError(t, pool.QueryRow(ctx, `SELECT nspowner::regrole::text FROM pg_namespace WHERE nspname = 'braid_alt'`).Scan(&owner))
		require.Equal(t, "braid", owner)

		eng, err := engine.Open(ctx, pool, engine.Config{Schema: "braid_alt"})
		require.NoError(t, err)
		res2, err := eng.Enqueue(ctx, job("q"))
		require.NoError(t, err)
		require.Equal(t, 3, engine.ShardOf(res2.JobID), "job id %d must name shard 3", res2.JobID)
		lo, hi := engine.JobIDRange(3)
		require.GreaterOrEqual(t, res2.JobID, lo)
		require.LessOrEqual(t, res2.JobID, hi)
	})

	t.Run("refuses a database that carries another identity", func(t *testing.T) {
		pool := newPool(t, c.NewDB(t, ""), 4)
		_, err := engine.Migrate(ctx, pool, engine.MigrateOptions{ShardID: 1, Cluster: "c1"})
		require.NoError(t, err)
		_, err = engine.Migrate(ctx, pool, engine.MigrateOptions{ShardID: 2, Cluster: "c1"})
		var idErr *engine.IdentityError
		require.ErrorAs(t, err, &idErr)
		require.Equal(t, 1, idErr.Got.ShardID)

		_, err = engine.Open(ctx, pool, engine.Config{Expect: &engine.Identity{ShardID: 1, Cluster: "other"}})
		require.ErrorAs(t, err, &idErr)
		require.Contains(t, err.Error(), `cluster "other"`)
	})

	t.Run("Open refuses an unmigrated schema with the command to run", func(t *testing.T) {
		pool := newPool(t, c.NewDB(t, ""), 2)
		_, err := engine.Open(ctx, pool, engine.Config{})
		require.ErrorContains(t, err, "braid migrate")
	})

	t.Run("bad options name every field", func(t *testing.T) {
		pool := newPool(t, c.NewDB(t, ""), 2)
		_, err := engine.Migrate(ctx, pool, engine.MigrateOptions{Schema: "Bad-Name", ShardID: 0, Cluster: ""})
		require.ErrorContains(t, err, `invalid schema "Bad-Name"`)
		require.ErrorContains(t, err, "invalid shard_id 0")
		require.ErrorContains(t, err, `invalid cluster ""`)
		_, err = engine.Migrate(ctx, pool, engine.MigrateOptions{Schema: "pg_x", ShardID: 1, Cluster: "c"})
		require.ErrorContains(t, err, "reserved")
	})

	t.Run("concurrent migrations serialise on the advisory lock", func(t *testing.T) {
		pool := newPool(t, c.NewDB(t, ""), 8)
		errs := make(chan error, 4)
		for range 4 {
			go func() {
				_, err := engine.Migrate(ctx, pool, engine.MigrateOptions{ShardID: 1, Cluster: "c1"})
				errs <- err
			}()
		}
		for range 4 {
			require.NoError(t, <-errs)
		}
		var n int
		require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM braid.schema_migration`).Scan(&n))
		all, _ := engine.Migrations()
		require.Equal(t, len(all), n)
	})
}

func TestMigrationsValidatedAtLoad(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct {
		files fstest.MapFS
		want  string
	}{
		"a gap in the versions is refused": {fstest.MapFS{
			"m/001_a.sql": {Data: []byte("SELECT 1")}, "m/003_c.sql": {Data: []byte("SELECT 1")},
		}, "expected version 2"},
		"a version defined twice is refused": {fstest.MapFS{
			"m/001_a.sql": {Data: []byte("SELECT 1")}, "m/001_b.sql": {Data: []byte("SELECT 1")},
		}, "defined twice"},
		"a badly named file is refused": {fstest.MapFS{
			"m/1_a.sql": {Data: []byte("SELECT 1")},
		}, "must be NNN_name.sql"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := engine.LoadMigrations(tc.files, "m")
			require.ErrorContains(t, err, tc.want)
		})
	}
	all, err := engine.Migrations()
	require.NoError(t, err)
	require.NotEmpty(t, all)
}

func TestEnqueueRefusesBadInput(t *testing.T) {
	t.Parallel()
	b := setup(t, engine.Config{MaxArgsBytes: 64})
	long := strings.Repeat("q", 129)
	for name, tc := range map[string]struct {
		job  engine.Job
		want string
	}{
		"an empty queue name":            {engine.Job{Queue: "", Kind: "k"}, `invalid queue "": must be 1..128`},
		"an over-long queue name":        {engine.Job{Queue: long, Kind: "k"}, "invalid queue"},
		"a queue name with a space":      {engine.Job{Queue: "a b", Kind: "k"}, `invalid queue "a b"`},
		"an empty kind":                  {engine.Job{Queue: "q", Kind: ""}, `invalid kind ""`},
		"an unknown priority":            {engine.Job{Queue: "q", Kind: "k", Priority: 5}, "invalid priority 5: must be 1..4"},
		"a negative priority":            {engine.Job{Queue: "q", Kind: "k", Priority: -1}, "invalid priority -1"},
		"args that are not JSON":         {engine.Job{Queue: "q", Kind: "k", Args: []byte(`{"a":`)}, "invalid args"},
		"args over the configured size":  {engine.Job{Queue: "q", Kind: "k", Args: []byte(`"` + strings.Repeat("x", 80) + `"`)}, "must be at most 64 bytes"},
		"metadata that is not an object": {engine.Job{Queue: "q", Kind: "k", Metadata: []byte(`[1]`)}, "invalid metadata"},
		"max_attempts below one":         {engine.Job{Queue: "q", Kind: "k", MaxAttempts: -2}, "invalid max_attempts -2"},
		"an over-long unique key":        {engine.Job{Queue: "q", Kind: "k", UniqueKey: strings.Repeat("u", 513)}, "invalid unique_key"},
		"an over-long ordering key":      {engine.Job{Queue: "q", Kind: "k", OrderingKey: strings.Repeat("o", 513)}, "invalid ordering_key"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := b.eng.Enqueue(b.ctx, tc.job)
			var ve *engine.ValidationError
			require.ErrorAs(t, err, &ve)
			require.ErrorContains(t, err, tc.want)
		})
	}

	t.Run("a bulk call names the job and refuses the whole call", func(t *testing.T) {
		_, err := b.eng.EnqueueMany(b.ctx, []engine.Job{job("q"), {Queue: "q", Kind: "k", Priority: 9}, {Queue: "", Kind: "k"}})
		require.ErrorContains(t, err, "invalid jobs[1].priority 9")
		require.ErrorContains(t, err, `invalid jobs[2].queue ""`)
	})
	require.Zero(t, b.scalar(t, `SELECT count(*) FROM braid.ready`), "refused input must write nothing")
	require.Zero(t, b.scalar(t, `SELECT count(*) FROM braid.deferred`))

	t.Run("bad claim and complete requests", func(t *testing.T) {
		_, err := b.eng.Claim(b.ctx, engine.ClaimRequest{Queue: "q", LaneNo: -1, Max: 0})
		require.ErrorContains(t, err, "invalid max 0")
		_, err = b.eng.Claim(b.ctx, engine.ClaimRequest{Queue: "", LaneNo: -2, Max: 1})
		require.ErrorContains(t, err, "invalid lane_no -2")
		require.ErrorContains(t, err, "invalid queue")
		_, err = b.eng.Complete(b.ctx, []engine.Receipt{{ShardID: testShard + 1, BatchID: 1, Index: 1}})
		require.ErrorContains(t, err, "receipt belongs to shard 8")
	})
}

func TestRoundTrip(t *testing.T) {
	t.Parallel()
	b := setup(t)
	res, err := b.eng.Enqueue(b.ctx, engine.Job{Queue: "emails", Kind: "send", Args: []byte(`{"to":"a@b"}`),
		Metadata: []byte(`{"trace":"x"}`), Priority: 2, MaxAttempts: 3, UniqueKey: "u1"})
	require.NoError(t, err)
	require.Equal(t, testShard, engine.ShardOf(res.JobID))

	info, err := b.eng.JobGet(b.ctx, res.JobID)
	require.NoError(t, err)
	require.Equal(t, engine.StateAvailable, info.State)
	require.Equal(t, "emails", info.Queue)
	require.Equal(t, 2, info.Priority)
	require.Equal(t, 3, info.MaxAttempts)
	require.JSONEq(t, `{"to":"a@b"}`, string(info.Args))
	require.JSONEq(t, `{"trace":"x"}`, string(info.Metadata))
	require.Equal(t, "u1", info.UniqueKey)

	counts, err := b.eng.Counts(b.ctx, "emails")
	require.NoError(t, err)
	require.Equal(t, engine.Counts{Available: 1}, counts)

	got, err := b.eng.Claim(b.ctx, engine.ClaimRequest{Queue: "emails", LaneNo: -1, Max: 10})
	require.NoError(t, err)
	require.Len(t, got, 1)
	c := got[0]
	require.Equal(t, res.JobID, c.Receipt.JobID)
	require.Equal(t, int64(1), c.Receipt.RunLease)
	require.Equal(t, 1, c.Attempt)
	require.Equal(t, "send", c.Kind)
	require.Equal(t, "u1", c.UniqueKey)
	require.WithinDuration(t, time.Now().Add(5*time.Minute), c.DeadlineAt, time.Minute, "default deadline is 5m after the claim")

	info, err = b.eng.JobGet(b.ctx, res.JobID)
	require.NoError(t, err)
	require.Equal(t, engine.StateRunning, info.State)
	require.Equal(t, int64(1), info.RunLease)
	require.Equal(t, 1, info.Attempt)
	counts, err = b.eng.Counts(b.ctx, "emails")
	require.NoError(t, err)
	require.Equal(t, engine.Counts{Running: 1}, counts)

	// The unique key is held while the job is live.
	_, err = b.eng.Enqueue(b.ctx, engine.Job{Queue: "emails", Kind: "send", UniqueKey: "u1"})
	var conflict *engine.UniqueConflictError
	require.ErrorAs(t, err, &conflict)
	require.Equal(t, res.JobID, conflict.JobID)

	out, err := b.eng.Complete(b.ctx, []engine.Receipt{c.Receipt})
	require.NoError(t, err)
	require.Equal(t, []engine.Outcome{engine.Applied}, out)

	info, err = b.eng.JobGet(b.ctx, res.JobID)
	require.NoError(t, err)
	require.Equal(t, engine.StateCompleted, info.State)
	require.False(t, info.FinishedAt.IsZero())
	counts, err = b.eng.Counts(b.ctx, "emails")
	require.NoError(t, err)
	require.Equal(t, engine.Counts{Completed: 1}, counts)

	// Completion released the unique key.
	again, err := b.eng.Enqueue(b.ctx, engine.Job{Queue: "emails", Kind: "send", UniqueKey: "u1"})
	require.NoError(t, err)
	require.NotEqual(t, res.JobID, again.JobID)

	_, err = b.eng.JobGet(b.ctx, 12345)
	require.ErrorIs(t, err, engine.ErrNotFound)
}
