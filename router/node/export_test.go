package node

import "context"

// Crash simulates the node's process dying, for tests: gossip stops without a leave, claim
// loops, listeners and maintainers stop, heartbeats stop. Handlers in flight are abandoned:
// whatever they return later is acked against attempts the shards have long rescued.
func (n *Node) Crash() {
	_ = n.members.Crash()
	n.cancelBg()
	n.bg.Wait()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_ = n.beats.Stop(ctx)
}

// Running is how many handlers are in flight.
func (n *Node) Running() int { return n.running.len() }

// MaintainedShards is how many shards this node is the maintenance candidate of.
func (n *Node) MaintainedShards() int { return int(n.met.maintained.Load()) }
