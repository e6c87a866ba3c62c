package worker_test

import (
	"context"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/braidq/braid/engine"
	"github.com/braidq/braid/health"
	"github.com/braidq/braid/router/worker"
	"github.com/braidq/braid/shard"
	"github.com/braidq/braid/tests/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

const cluster = "test"

// migrate migrates a database as shard 1 of cluster "test".
func migrate(ctx context.Context, dsn string) error {
	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		return err
	}
	defer pool.Close()
	_, err = engine.Migrate(ctx, pool, engine.MigrateOptions{ShardID: 1, Cluster: cluster})
	return err
}

// bundle is one shard (id 1) opened as a set, on a fresh database.
type bundle struct {
	ctx context.Context
	set *shard.Set
	s   *shard.Shard
	eng *engine.Engine
}

// setup opens shard 1 on a fresh database of the first shared cluster.
func setup(t testing.TB) *bundle {
	t.Helper()
	c := pgtest.Shared(t, 0)
	return open(t, c.NewDB(t, c.Template(t, "worker-shard-1", migrate)), health.BreakerSettings{})
}

// open opens shard 1 at dsn with the breaker settings.
func open(t testing.TB, dsn string, breaker health.BreakerSettings) *bundle {
	t.Helper()
	set, err := shard.OpenSet(context.Background(), []shard.Config{{ID: 1, Name: "pg-1", DSN: dsn, Cluster: cluster, MaxConns: 8, Breaker: breaker}}, shard.Deps{})
	require.NoError(t, err)
	t.Cleanup(set.Close)
	s, _ := set.Get(1)
	return &bundle{ctx: context.Background(), set: set, s: s, eng: s.Engine()}
}

// claim enqueues the jobs and claims them all (one lane per queue, so claims come in order).
func (b *bundle) claim(t testing.TB, jobs ...engine.Job) []engine.Claimed {
	t.Helper()
	res, err := b.eng.EnqueueMany(b.ctx, jobs)
	require.NoError(t, err)
	var out []engine.Claimed
	for len(out) < len(res) {
		got, err := b.eng.Claim(b.ctx, engine.ClaimRequest{Queue: jobs[0].Queue, LaneNo: -1, Max: len(res) - len(out)})
		require.NoError(t, err)
		require.NotEmpty(t, got, "every enqueued job is claimable")
		out = append(out, got...)
	}
	return out
}

// job is a job of args in queue.
func job(t testing.TB, queue string, args worker.JobArgs) engine.Job {
	t.Helper()
	b, err := json.Marshal(args)
	require.NoError(t, err)
	return engine.Job{Queue: queue, Kind: args.Kind(), Args: b}
}

func (b *bundle) get(t testing.TB, id int64) engine.JobInfo {
	t.Helper()
	info, err := b.eng.JobGet(b.ctx, id)
	require.NoError(t, err)
	return info
}

func (b *bundle) counts(t testing.TB, queue string) engine.Counts {
	t.Helper()
	n, err := b.eng.Counts(b.ctx, queue)
	require.NoError(t, err)
	return n
}

// errorsOf decodes a job's error history as workers see it.
func errorsOf(t testing.TB, info engine.JobInfo) []worker.AttemptError {
	t.Helper()
	var errs []worker.AttemptError
	if len(info.Errors) > 0 {
		require.NoError(t, json.Unmarshal(info.Errors, &errs))
	}
	return errs
}

// acks records what an Acker reported, batch by batch.
type acks struct {
	mu      sync.Mutex
	batches [][]worker.Acked
	byJob   map[int64][]worker.Acked
	changed chan struct{}
}

func newAcks() *acks {
	return &acks{byJob: map[int64][]worker.Acked{}, changed: make(chan struct{}, 1)}
}

func (a *acks) onAcked(batch []worker.Acked) {
	a.mu.Lock()
	a.batches = append(a.batches, append([]worker.Acked(nil), batch...))
	for _, x := range batch {
		a.byJob[x.Receipt.JobID] = append(a.byJob[x.Receipt.JobID], x)
	}
	a.mu.Unlock()
	select {
	case a.changed <- struct{}{}:
	default:
	}
}

// total is how many acknowledgements were reported.
func (a *acks) total() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	n := 0
	for _, b := range a.batches {
		n += len(b)
	}
	return n
}

// wait waits until n acknowledgements were reported, or fails after a generous bound.
func (a *acks) wait(t testing.TB, n int) {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for a.total() < n {
		select {
		case <-a.changed:
		case <-deadline:
			t.Fatalf("%d acknowledgements reported, want %d", a.total(), n)
		}
	}
}

// waitJob waits until the job's acknowledgement was reported and returns its reports.
func (a *acks) waitJob(t testing.TB, id int64) []worker.Acked {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for len(a.of(id)) == 0 {
		select {
		case <-a.changed:
		case <-deadline:
			t.Fatalf("no acknowledgement of job %d reported", id)
		}
	}
	return a.of(id)
}

func (a *acks) of(id int64) []worker.Acked {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]worker.Acked(nil), a.byJob[id]...)
}

func (a *acks) sizes() []int {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []int
	for _, b := range a.batches {
		out = append(out, len(b))
	}
	return out
}

// startAcker starts an acker over b's shards that reports to a new recorder.
func startAcker(t testing.TB, b *bundle, cfg worker.AckerConfig) (*worker.Acker, *acks) {
	t.Helper()
	rec := newAcks()
	a, err := worker.NewAcker(cfg, worker.AckerDeps{Shards: b.set, OnAcked: rec.onAcked})
	require.NoError(t, err)
	require.NoError(t, a.Start(b.ctx))
	t.Cleanup(func() { _ = a.Stop(context.Background()) })
	return a, rec
}
