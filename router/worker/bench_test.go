package worker_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/braidq/braid/engine"
	"github.com/braidq/braid/router/worker"
)

// BenchmarkExecute measures the runtime's cost around a handler that does nothing: row
// building, args decoding, the timeout context and classification.
func BenchmarkExecute(b *testing.B) {
	ws := worker.NewWorkers()
	worker.AddWorker(ws, worker.WorkFunc(func(context.Context, *worker.Job[SendEmailArgs]) error { return nil }))
	c := claimed("send_email", `{"to":"ada@example.com","subject":"hi"}`)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if res := ws.Execute(ctx, c, time.Minute); res.Action != worker.Complete {
			b.Fatal(res)
		}
	}
}

// BenchmarkAckerComplete measures completions delivered through the Acker to one real shard
// (default batching: 512 receipts or 1ms), from Ack to the last flush at Stop.
func BenchmarkAckerComplete(b *testing.B) {
	bd := setup(b)
	const chunk, claimMax = 5000, 256 // claims the size a node takes
	var cs []engine.Claimed
	for len(cs) < b.N {
		n := min(chunk, b.N-len(cs))
		jobs := make([]engine.Job, n)
		for i := range jobs {
			jobs[i] = engine.Job{Queue: "bench", Kind: "task", Args: []byte(`{}`)}
		}
		_, err := bd.eng.EnqueueMany(bd.ctx, jobs)
		require.NoError(b, err)
		for got := 0; got < n; {
			c, err := bd.eng.Claim(bd.ctx, engine.ClaimRequest{Queue: "bench", LaneNo: -1, Max: min(claimMax, n-got)})
			require.NoError(b, err)
			require.NotEmpty(b, c)
			cs, got = append(cs, c...), got+len(c)
		}
	}
	flushes := 0 // OnAcked runs on the shard's one flushing goroutine
	a, err := worker.NewAcker(worker.AckerConfig{}, worker.AckerDeps{Shards: bd.set, OnAcked: func([]worker.Acked) { flushes++ }})
	require.NoError(b, err)
	require.NoError(b, a.Start(bd.ctx))
	b.ResetTimer()
	for _, c := range cs {
		if err := a.Ack(bd.ctx, c.Receipt, worker.Result{Action: worker.Complete}); err != nil {
			b.Fatal(err)
		}
	}
	require.NoError(b, a.Stop(bd.ctx))
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "acks/s")
	b.ReportMetric(float64(b.N)/float64(flushes), "acks/flush")
	counts, err := bd.eng.Counts(bd.ctx, "bench")
	require.NoError(b, err)
	require.Equal(b, int64(b.N), counts.Completed)
}
