package node

import (
	"context"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/braidq/braid/engine"
	"github.com/braidq/braid/router/worker"
	"github.com/braidq/braid/shard"
)

// unit is one claim unit: a lane of a queue on a shard (DESIGN.md §4).
type unit struct {
	shard int
	queue string
	lane  int
}

// claimLoop claims the unit's jobs while the node owns it: it reserves free handler slots,
// claims that many from the unit's lane, starts a handler per job and gives back the slots the
// claim did not fill. It claims again at once after a full batch, else waits for a wake-up
// (a NOTIFY of the queue on the shard) or the poll interval; with no free slot it waits for a
// release and then ClaimCooldown.
func (n *Node) claimLoop(ctx context.Context, u unit, wake <-chan struct{}) {
	sh, ok := n.shardOf(u.shard)
	if !ok {
		return
	}
	cap := pair{queue: n.queues[u.queue], node: n.global}
	var backoff time.Duration
	for ctx.Err() == nil {
		relQ, relN := cap.queue.released(), cap.node.released()
		want := cap.take(n.cfg.ClaimBatch)
		if want == 0 {
			select {
			case <-ctx.Done():
			case <-relQ:
			case <-relN:
			}
			// Let more handlers finish before claiming, so a busy loop claims in batches
			// rather than one job per freed slot.
			sleep(ctx, n.cfg.ClaimCooldown)
			continue
		}
		// The claim is not interrupted by a stop or a lost unit: a claim cancelled mid-flight can
		// commit on the server without its answer, leaving attempts no handler runs until rescue.
		// CallTimeout bounds it instead.
		start := time.Now()
		claimed, err := shard.Call(context.WithoutCancel(ctx), sh, n.cfg.CallTimeout, func(ctx context.Context) ([]engine.Claimed, error) {
			return sh.Engine().Claim(ctx, engine.ClaimRequest{Queue: u.queue, LaneNo: u.lane, Max: want})
		})
		n.met.claimed(ctx, u, len(claimed), time.Since(start), err)
		cap.give(want - len(claimed))
		if err != nil {
			backoff = min(max(2*backoff, 50*time.Millisecond), 5*time.Second)
			n.log.Warn("claim failed; backing off", "shard_id", u.shard, "queue", u.queue, "lane", u.lane,
				"backoff", backoff, "err", err)
			sleep(ctx, backoff)
			continue
		}
		backoff = 0
		for _, c := range claimed {
			n.jobs.Go(func() { n.run(c, cap) })
		}
		if len(claimed) == want {
			continue // the lane may hold more
		}
		poll := time.NewTimer(jitter(n.cfg.PollInterval))
		select {
		case <-ctx.Done():
		case <-wake:
		case <-poll.C:
		}
		poll.Stop()
	}
}

// run runs one claimed attempt's handler and queues its acknowledgement. The handler's context
// is cancelled with worker.ErrCancelled when an operator cancels the job (a NOTIFY, or a
// heartbeat that finds the attempt ended) and with worker.ErrStopping at Stop's deadline.
func (n *Node) run(c engine.Claimed, cap pair) {
	defer cap.give(1)
	hctx, cancel := context.WithCancelCause(n.handlerCtx)
	defer cancel(nil)
	n.running.add(c, cancel)
	defer n.running.remove(c)
	untrack := n.beats.Track(c.Receipt, func() { cancel(worker.ErrCancelled) })
	res := n.deps.Workers.Execute(hctx, c, n.cfg.JobTimeout)
	n.met.processed(c, res)
	if res.Action == worker.Abandon {
		untrack()
		return
	}
	// The attempt stays open until its acknowledgement commits, so it keeps its heartbeat
	// until then (onAcked untracks it): a slow flush must not let rescue re-run a job that
	// already succeeded. The acknowledgement outlives the handler's context (a handed-back
	// attempt is acked after that context was cancelled); Ack fails only once the acker stopped.
	n.unacked.put(c.Receipt, untrack)
	if err := n.acker.Ack(context.WithoutCancel(hctx), c.Receipt, res); err != nil {
		n.unacked.done(c.Receipt)
		n.log.Warn("acknowledgement not queued; the attempt stays open until rescue",
			"shard_id", c.Receipt.ShardID, "job_id", c.Receipt.JobID, "err", err)
	}
}

// unackedSet holds the heartbeat of each attempt whose handler returned until the acker says
// what became of its acknowledgement.
type unackedSet struct {
	mu sync.Mutex
	m  map[attemptKey]func()
}

func (u *unackedSet) put(r engine.Receipt, untrack func()) {
	u.mu.Lock()
	u.m[attemptKey{r.JobID, r.RunLease}] = untrack
	u.mu.Unlock()
}

// done stops the heartbeat of the attempt of r.
func (u *unackedSet) done(r engine.Receipt) {
	k := attemptKey{r.JobID, r.RunLease}
	u.mu.Lock()
	untrack := u.m[k]
	delete(u.m, k)
	u.mu.Unlock()
	if untrack != nil {
		untrack()
	}
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// jitter spreads d by ±10%, so loops started together do not poll together.
func jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return d
	}
	return d - d/10 + time.Duration(rand.Int64N(int64(d/5)+1))
}
