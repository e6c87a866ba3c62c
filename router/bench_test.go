package router_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/braidq/braid/engine"
	"github.com/braidq/braid/router"
	"github.com/braidq/braid/shard"
	"github.com/braidq/braid/tests/pgtest"
)

// benchBatch is the jobs per call in the router-overhead benchmarks.
const benchBatch = 1000

// The router-overhead pair: the same 1000 typed jobs per call into one queue on one shard,
// through the router (InsertMany: encode args, route by the directory cache, group by shard,
// breaker, one EnqueueMany) and directly through the engine (encode args, one EnqueueMany).
// Run them side by side:
//
//	go test -run '^$' -bench 'InsertManyViaRouter|EnqueueManyDirect' -benchtime 30x ./router/
func BenchmarkInsertManyViaRouter(b *testing.B) {
	ctx := context.Background()
	c := pgtest.Shared(b, 0)
	cfg := shardConfig(1, shardDB(b, c, 1))
	set, err := shard.OpenSet(ctx, []shard.Config{cfg}, shard.Deps{})
	require.NoError(b, err)
	defer set.Close()
	s1, _ := set.Get(1)
	cat, err := router.NewCatalog(ctx, s1.Pool(), router.CatalogConfig{})
	require.NoError(b, err)
	cl, err := router.New(router.Config{}, router.Deps{Shards: set, Catalog: cat})
	require.NoError(b, err)

	params := make([]router.InsertManyParams, benchBatch)
	opts := &router.InsertOpts{Queue: "bench"}
	for i := range params {
		params[i] = router.InsertManyParams{Args: EmailArgs{To: "bench@example.com", N: i}, InsertOpts: opts}
	}
	_, err = cl.InsertMany(ctx, params[:1]) // places the queue
	require.NoError(b, err)

	b.ResetTimer()
	for b.Loop() {
		if _, err := cl.InsertMany(ctx, params); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*benchBatch), "ns/job")
}

func BenchmarkEnqueueManyDirect(b *testing.B) {
	ctx := context.Background()
	c := pgtest.Shared(b, 0)
	pcfg, err := pgxpool.ParseConfig(shardDB(b, c, 1))
	require.NoError(b, err)
	pcfg.MaxConns = 8
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	require.NoError(b, err)
	defer pool.Close()
	eng, err := engine.Open(ctx, pool, engine.Config{})
	require.NoError(b, err)

	args := make([]EmailArgs, benchBatch)
	for i := range args {
		args[i] = EmailArgs{To: "bench@example.com", N: i}
	}
	jobs := make([]engine.Job, benchBatch)
	_, err = eng.Enqueue(ctx, engine.Job{Queue: "bench", Kind: "email"})
	require.NoError(b, err)

	b.ResetTimer()
	for b.Loop() {
		for i, a := range args {
			body, err := json.Marshal(a)
			if err != nil {
				b.Fatal(err)
			}
			jobs[i] = engine.Job{Queue: "bench", Kind: a.Kind(), Args: body}
		}
		if _, err := eng.EnqueueMany(ctx, jobs); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*benchBatch), "ns/job")
}
