package router

import (
	"context"

	"github.com/braidq/braid/engine"
	"github.com/braidq/braid/shard"
)

// FenceSeal stops shard shardID from accepting the queue's enqueues (state
// engine.FenceDraining or engine.FenceMoved, pointing at movedTo, 0 when unknown) at the move's
// epoch. It waits for the queue's enqueues in flight on that shard; once it returns, no
// enqueue of the queue commits there, and producers that still send there are redirected. An
// older epoch than the fence in force changes nothing (engine.ErrStaleEpoch). For the
// rebalancer; it goes through the shard's breaker.
func (c *Client) FenceSeal(ctx context.Context, shardID int, queue string, epoch int64, state engine.FenceState, movedTo int) (engine.Fence, error) {
	s, err := c.shard(shardID, queue)
	if err != nil {
		return engine.Fence{}, err
	}
	return shard.Call(ctx, s, c.cfg.EnqueueTimeout, func(ctx context.Context) (engine.Fence, error) {
		return s.Engine().FenceSeal(ctx, queue, epoch, state, movedTo)
	})
}

// FenceOpen makes shard shardID accept the queue's enqueues at the move's epoch (a move's
// target, or the source of a move called off). For the rebalancer.
func (c *Client) FenceOpen(ctx context.Context, shardID int, queue string, epoch int64) (engine.Fence, error) {
	s, err := c.shard(shardID, queue)
	if err != nil {
		return engine.Fence{}, err
	}
	return shard.Call(ctx, s, c.cfg.EnqueueTimeout, func(ctx context.Context) (engine.Fence, error) {
		return s.Engine().FenceOpen(ctx, queue, epoch)
	})
}
