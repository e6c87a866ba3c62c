package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/braidq/braid/router"
	"github.com/braidq/braid/router/worker"
)

// demoQueues are the demo's queues, one kind of job each (see demoJobFor).
func demoQueues() []string { return []string{"emails", "thumbnails", "reports", "webhooks"} }

// demoPins spreads the demo queues over the shards round-robin, so that every shard has work
// to show: with four queues, hashing alone may leave a shard without any.
func demoPins(shards int) map[string]int16 {
	pins := map[string]int16{}
	for i, q := range demoQueues() {
		pins[q] = int16(i%shards + 1)
	}
	return pins
}

// Shares of the demo's jobs that fail once (and retry) or snooze once before they succeed.
const (
	failOnceShare   = 0.03
	snoozeOnceShare = 0.02
	demoSnooze      = time.Second
)

// demoJob is the body every demo kind shares: how long the handler works and what it does
// before it succeeds.
type demoJob struct {
	N          int64 `json:"n"`
	WorkMS     int   `json:"work_ms"`
	FailOnce   bool  `json:"fail_once,omitempty"`
	SnoozeOnce bool  `json:"snooze_once,omitempty"`
}

func (d demoJob) body() demoJob { return d }

type (
	emailArgs     struct{ demoJob }
	thumbnailArgs struct{ demoJob }
	reportArgs    struct{ demoJob }
	webhookArgs   struct{ demoJob }
)

func (emailArgs) Kind() string     { return "demo.email" }
func (thumbnailArgs) Kind() string { return "demo.thumbnail" }
func (reportArgs) Kind() string    { return "demo.report" }
func (webhookArgs) Kind() string   { return "demo.webhook" }

type demoArgs interface {
	worker.JobArgs
	body() demoJob
}

// demoWorkers registers a worker for every demo kind; each records its outcomes in l.
func demoWorkers(l *ledger) *worker.Workers {
	ws := worker.NewWorkers()
	worker.AddWorker(ws, demoWorker[emailArgs](l))
	worker.AddWorker(ws, demoWorker[thumbnailArgs](l))
	worker.AddWorker(ws, demoWorker[reportArgs](l))
	worker.AddWorker(ws, demoWorker[webhookArgs](l))
	return ws
}

// demoWorker works for d.WorkMS; a job marked FailOnce fails its first attempt (and is
// retried with braid's backoff), one marked SnoozeOnce snoozes once first.
func demoWorker[T demoArgs](l *ledger) worker.Worker[T] {
	return worker.WorkFunc(func(ctx context.Context, j *worker.Job[T]) error {
		d := j.Args.body()
		if d.SnoozeOnce && l.snoozeFirst(j.ID) {
			return worker.JobSnooze(demoSnooze)
		}
		if d.FailOnce && j.Attempt == 1 {
			l.failure()
			return fmt.Errorf("demo: planned failure of job %d, attempt %d", j.ID, j.Attempt)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Duration(d.WorkMS) * time.Millisecond):
		}
		l.success(j.ID)
		return nil
	})
}

// demoJobFor makes the n-th demo job: a random queue, its kind, a few milliseconds of work.
func demoJobFor(n int64, r *rand.Rand) router.InsertManyParams {
	d := demoJob{N: n, WorkMS: 1 + r.IntN(20), FailOnce: r.Float64() < failOnceShare}
	d.SnoozeOnce = !d.FailOnce && r.Float64() < snoozeOnceShare
	queues := demoQueues()
	q := r.IntN(len(queues))
	var args router.JobArgs
	switch q {
	case 0:
		args = emailArgs{d}
	case 1:
		args = thumbnailArgs{d}
	case 2:
		args = reportArgs{d}
	default:
		args = webhookArgs{d}
	}
	return router.InsertManyParams{Args: args, InsertOpts: &router.InsertOpts{Queue: queues[q]}}
}

// produce enqueues about rate jobs per second in batches every tick until ctx ends, recording
// every job InsertMany reports enqueued in l. A failed batch is logged; its jobs that were
// enqueued all the same (a shard failed, others did not) are recorded.
func produce(ctx context.Context, client *router.Client, rate int, l *ledger, logger *slog.Logger) {
	const tick = 100 * time.Millisecond
	r := rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	ticker := time.NewTicker(tick)
	defer ticker.Stop()
	var n int64
	var owed float64 // jobs due but not yet sent: keeps fractional rates exact
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
		owed += float64(rate) * tick.Seconds()
		batch := make([]router.InsertManyParams, int(owed))
		owed -= float64(len(batch))
		for i := range batch {
			n++
			batch[i] = demoJobFor(n, r)
		}
		if len(batch) == 0 {
			continue
		}
		// The batch is not cut short by the stop: a call cancelled midway could commit jobs
		// whose ids the ledger never learns.
		results, err := client.InsertMany(context.WithoutCancel(ctx), batch)
		for _, res := range results {
			if res != nil && !res.UniqueSkippedAsDuplicate {
				l.enqueue(res.JobID)
			}
		}
		if err != nil {
			var batchErr *router.BatchError
			if errors.As(err, &batchErr) {
				logger.Warn("demo producer: some jobs not enqueued", "jobs", len(batchErr.Unhandled()), "err", err)
			} else {
				logger.Warn("demo producer: batch not enqueued", "jobs", len(batch), "err", err)
			}
		}
	}
}
