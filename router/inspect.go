package router

import (
	"context"
	"fmt"

	"github.com/braidq/braid/engine"
)

// JobInfo is what JobGet knows about a job.
type JobInfo = engine.JobInfo

// Counts are a queue's exact numbers of jobs per state.
type Counts = engine.Counts

// JobGet returns a job's newest state from the shard its id names (engine.ShardOf), whatever
// the queue's current placement. An unknown id, or a finished job that was pruned, wraps
// ErrNotFound; so does an id of a shard this client does not have, with
// *ShardNotConfiguredError. An id that names no shard is a *ValidationError.
func (c *Client) JobGet(ctx context.Context, id int64) (*JobInfo, error) {
	j, err := onJobShard(ctx, c, id, func(ctx context.Context, e *engine.Engine) (JobInfo, error) {
		return e.JobGet(ctx, id)
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
	byShard, missing, err := askAll(ctx, c, func(ctx context.Context, e *engine.Engine) (Counts, error) {
		return e.Counts(ctx, queue)
	})
	st := QueueStats{Queue: queue, ByShard: map[int]Counts{}, Missing: missing}
	for id, n := range byShard {
		if n != (Counts{}) {
			st.ByShard[id] = n
			st.Total = st.Total.Add(n)
		}
	}
	if err != nil {
		return st, fmt.Errorf("queue stats %q: %d of %d shards missing: %w", queue, len(missing), len(c.shards.IDs()), err)
	}
	return st, nil
}
