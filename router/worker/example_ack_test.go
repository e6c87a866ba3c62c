package worker_test

import (
	"context"
	"log"
	"time"

	"github.com/braidq/braid/engine"
	"github.com/braidq/braid/router/worker"
	"github.com/braidq/braid/shard"
)

// How a node runs one claimed batch: heartbeat each attempt while its handler runs, stop
// heartbeating before acknowledging, and let the Acker batch the results per shard. The node
// (router/node) does this with claim loops, concurrency limits and a LISTEN for cancels.
func ExampleAcker() {
	ctx := context.Background()
	shards, err := shard.OpenSet(ctx, []shard.Config{
		{ID: 1, Name: "pg-a", DSN: "postgres://braid@127.0.0.1:54321/braid", Cluster: "dev"},
	}, shard.Deps{})
	if err != nil {
		log.Fatal(err)
	}
	defer shards.Close()

	workers := worker.NewWorkers()
	worker.AddWorker(workers, &SendEmailWorker{})

	acker, err := worker.NewAcker(worker.AckerConfig{MaxBatch: 512, MaxDelay: time.Millisecond}, worker.AckerDeps{
		Shards:  shards,
		OnAcked: func(acks []worker.Acked) { /* metrics, ledgers */ },
	})
	if err != nil {
		log.Fatal(err)
	}
	beats, err := worker.NewHeartbeater(worker.HeartbeaterConfig{Interval: 10 * time.Second}, shards, nil)
	if err != nil {
		log.Fatal(err)
	}
	_ = acker.Start(ctx)
	_ = beats.Start(ctx)
	defer func() {
		stopCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		_ = beats.Stop(stopCtx)
		if err := acker.Stop(stopCtx); err != nil {
			log.Print(err) // names the jobs whose results could not be delivered
		}
	}()

	s, _ := shards.Get(1)
	claimed, err := shard.Call(ctx, s, 5*time.Second, func(ctx context.Context) ([]engine.Claimed, error) {
		return s.Engine().Claim(ctx, engine.ClaimRequest{Queue: "emails", LaneNo: -1, Max: 64})
	})
	if err != nil {
		log.Fatal(err)
	}
	for _, c := range claimed {
		hctx, cancel := context.WithCancelCause(ctx)
		untrack := beats.Track(c.Receipt, func() { cancel(worker.ErrCancelled) })
		res := workers.Execute(hctx, c, time.Minute)
		receipt, _ := beats.Receipt(c.Receipt.JobID) // follows a re-home
		untrack()
		cancel(nil)
		if err := acker.Ack(ctx, receipt, res); err != nil {
			log.Print(err)
		}
	}
}
