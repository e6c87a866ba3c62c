package router

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	"golang.org/x/sync/errgroup"

	"github.com/braidq/braid/engine"
	"github.com/braidq/braid/shard"
)

// JobInfo is what JobGet knows about a job.
type JobInfo = engine.JobInfo

// Counts are a queue's exact numbers of jobs per state.
type Counts = engine.Counts

// JobGet returns a job's newest state from the shard its id names (engine.ShardOf), whatever
// the queue's current placement. An unknown id, or a finished job that was pruned, wraps
// ErrNotFound.
func (c *Client) JobGet(ctx context.Context, id int64) (*JobInfo, error) {
	sid := engine.ShardOf(id)
	s, ok := c.shards.Get(sid)
	if !ok {
		return nil, fmt.Errorf("job %d: %w: %w", id, &ShardNotConfiguredError{ShardID: sid}, ErrNotFound)
	}
	j, err := shard.Call(ctx, s, c.cfg.EnqueueTimeout, func(ctx context.Context) (engine.JobInfo, error) {
		return s.Engine().JobGet(ctx, id)
	})
	if err != nil {
		return nil, err
	}
	return &j, nil
}

// QueueStats are a queue's counts summed over the shards that hold its jobs.
type QueueStats struct {
	Queue   string
	Total   Counts
	ByShard map[int]Counts // the shards that hold any of the queue's jobs (or history)
	// Missing lists the shards that could not be asked; Total then undercounts.
	Missing []int
}

// QueueStats returns the queue's exact counts over every shard of the set, asked in parallel:
// a queue's history stays on every shard it ever lived on, and counts add up across shards.
// When some shards cannot be asked, the stats of the others are returned with Missing set and
// an error joining the causes.
func (c *Client) QueueStats(ctx context.Context, queue string) (QueueStats, error) {
	if err := engine.ValidateQueue(queue); err != nil {
		return QueueStats{}, err
	}
	st := QueueStats{Queue: queue, ByShard: map[int]Counts{}}
	var (
		mu   sync.Mutex
		errs []error
		g    errgroup.Group
	)
	for _, s := range c.shards.All() {
		g.Go(func() error {
			n, err := shard.Call(ctx, s, c.cfg.EnqueueTimeout, func(ctx context.Context) (engine.Counts, error) {
				return s.Engine().Counts(ctx, queue)
			})
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				st.Missing = append(st.Missing, s.ID())
				errs = append(errs, err)
				return nil
			}
			if n != (Counts{}) {
				st.ByShard[s.ID()] = n
				st.Total = addCounts(st.Total, n)
			}
			return nil
		})
	}
	_ = g.Wait()
	slices.Sort(st.Missing)
	if len(errs) > 0 {
		return st, fmt.Errorf("queue stats %q: %d of %d shards missing: %w", queue, len(st.Missing), len(c.shards.IDs()), errors.Join(errs...))
	}
	return st, nil
}

func addCounts(a, b Counts) Counts {
	return Counts{
		Available:    a.Available + b.Available,
		Running:      a.Running + b.Running,
		Scheduled:    a.Scheduled + b.Scheduled,
		Retryable:    a.Retryable + b.Retryable,
		Completed:    a.Completed + b.Completed,
		Failed:       a.Failed + b.Failed,
		Cancelled:    a.Cancelled + b.Cancelled,
		DeadLettered: a.DeadLettered + b.DeadLettered,
	}
}
