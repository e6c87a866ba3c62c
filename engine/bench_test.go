package engine_test

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/braidq/braid/engine"
)

// Benchmarks run against a pgtest cluster on this machine (fsync off, synchronous_commit off:
// the numbers are CPU-bound figures, as in DESIGN.md §2.5). Run them with
//
//	go test -run '^$' -bench . -benchtime 200000x ./engine/
//
// Each reports jobs/s; the lifecycle benchmark also reports WAL bytes per job and dead tuples.

func benchJobs(queue string, n int) []engine.Job {
	jobs := make([]engine.Job, n)
	for i := range jobs {
		jobs[i] = engine.Job{Queue: queue, Kind: "bench", Args: []byte(`{"payload":"0123456789abcdef0123456789abcdef"}`)}
	}
	return jobs
}

func enqueueN(b testing.TB, bd *bundle, queue string, n int) {
	const batch = 1000
	jobs := benchJobs(queue, batch)
	for done := 0; done < n; done += batch {
		_, err := bd.eng.EnqueueMany(bd.ctx, jobs[:min(batch, n-done)])
		require.NoError(b, err)
	}
}

func drain(b testing.TB, bd *bundle, queue string, claimSize, claimers int, want int64) {
	var done atomic.Int64
	var wg sync.WaitGroup
	for range claimers {
		wg.Go(func() {
			for done.Load() < want {
				cs, err := bd.eng.Claim(bd.ctx, engine.ClaimRequest{Queue: queue, LaneNo: -1, Max: claimSize})
				if err != nil {
					b.Error(err)
					return
				}
				if len(cs) == 0 {
					time.Sleep(time.Millisecond)
					continue
				}
				if _, err := bd.eng.Complete(bd.ctx, receipts(cs)); err != nil {
					b.Error(err)
					return
				}
				done.Add(int64(len(cs)))
			}
		})
	}
	wg.Wait()
}

func perSecond(b *testing.B, n int) {
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "jobs/s")
}

func BenchmarkEnqueueMany(b *testing.B) {
	for _, batch := range []int{100, 1000} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			bd := setup(b)
			jobs := benchJobs("bench", batch)
			n := 0
			b.ResetTimer()
			for n < b.N {
				_, err := bd.eng.EnqueueMany(bd.ctx, jobs[:min(batch, b.N-n)])
				require.NoError(b, err)
				n += batch
			}
			perSecond(b, b.N)
		})
	}
}

// BenchmarkClaimComplete drains a pre-enqueued backlog with claim + fast-path completion.
func BenchmarkClaimComplete(b *testing.B) {
	for _, size := range []int{64, 512} {
		b.Run(fmt.Sprintf("batch=%d", size), func(b *testing.B) {
			bd := setup(b)
			require.NoError(b, bd.eng.ConfigureQueue(bd.ctx, "bench", engine.QueueSettings{Lanes: 4, DLQ: true, MaxAttempts: 5, Deadline: time.Minute}))
			enqueueN(b, bd, "bench", b.N)
			b.ResetTimer()
			drain(b, bd, "bench", size, 2, int64(b.N))
			perSecond(b, b.N)
		})
	}
}

// BenchmarkLifecycleWAL enqueues, claims and completes b.N jobs and reports the WAL written per
// job (pg_current_wal_lsn difference) and the dead tuples left on the engine's tables.
func BenchmarkLifecycleWAL(b *testing.B) {
	bd := setup(b)
	require.NoError(b, bd.eng.ConfigureQueue(bd.ctx, "bench", engine.QueueSettings{Lanes: 4, DLQ: true, MaxAttempts: 5, Deadline: time.Minute}))
	startLSN := walLSN(b, bd)
	b.ResetTimer()
	enqueueN(b, bd, "bench", b.N)
	drain(b, bd, "bench", 256, 2, int64(b.N))
	b.StopTimer()
	wal := walLSN(b, bd) - startLSN
	b.ReportMetric(float64(wal)/float64(b.N), "WAL_B/job")
	b.ReportMetric(float64(deadTuples(b, bd)), "dead_tuples")
	perSecond(b, b.N)
}

// BenchmarkSustained runs a producer and claimers at once, holding the backlog near 20k jobs,
// until b.N jobs completed.
func BenchmarkSustained(b *testing.B) {
	bd := setup(b)
	require.NoError(b, bd.eng.ConfigureQueue(bd.ctx, "bench", engine.QueueSettings{Lanes: 4, DLQ: true, MaxAttempts: 5, Deadline: time.Minute}))
	enqueueN(b, bd, "bench", 20_000)
	var l load
	l.enqueued.Store(20_000)
	startLSN := walLSN(b, bd)
	b.ResetTimer()
	sustain(b, bd, "bench", 20_000, 2, &l, func() bool { return l.completed.Load() >= int64(b.N) })
	b.StopTimer()
	perSecond(b, int(l.completed.Load()))
	b.ReportMetric(float64(walLSN(b, bd)-startLSN)/float64(l.completed.Load()), "WAL_B/job")
	b.ReportMetric(float64(deadTuples(b, bd)), "dead_tuples")
}

func walLSN(b testing.TB, bd *bundle) int64 {
	return bd.scalar(b, `SELECT pg_current_wal_lsn() - '0/0'::pg_lsn`)
}

func deadTuples(b testing.TB, bd *bundle) int64 {
	// Statistics reach the shared views asynchronously; give them a moment.
	_, err := bd.pool.Exec(bd.ctx, `SELECT pg_stat_force_next_flush()`)
	require.NoError(b, err)
	time.Sleep(1100 * time.Millisecond)
	return bd.scalar(b, `SELECT coalesce(sum(n_dead_tup), 0) FROM pg_stat_user_tables WHERE schemaname = 'braid'`)
}
