// Package node is a braid router node: a member of the gossip cluster (router/membership)
// that claims and runs jobs and maintains shards (DESIGN.md §4, §5).
//
// # What runs where
//
// The ownership loop turns the directory (the router client's cache, refreshed every
// DirectoryInterval), each shard's queues and lane counts, and the live members into what this
// node owns: claim units (shard, queue, lane) whose top-k rendezvous owners among the active
// worker members serving the queue include this node, and shards whose top-1 maintenance
// candidate it is. New units start after Settle; lost units stop at once. Two owners of a unit
// for a moment are harmless: the engine's lane try-lock serialises claims and run leases guard
// acknowledgements, so any limit across nodes lives in the shard, not here.
//
// A claim loop per owned unit reserves free handler slots (the queue's and the node's),
// claims that many jobs from its lane through the shard's breaker, and starts a handler per
// job (router/worker executes it). It claims again at once after a full batch, else waits for
// a NOTIFY of its queue on the shard (one LISTEN connection per shard), a slot release, or a
// jittered poll. Failed claims back off exponentially up to 5 s, so an open breaker is not
// hammered.
//
// Acknowledgements go through the worker package's Acker (batched per shard), long attempts
// are kept alive by its Heartbeater (which follows re-homed receipts), and a cancel NOTIFY or
// a stale heartbeat cancels the running handler's context with worker.ErrCancelled.
//
// A maintenance candidate runs the shard's engine.Maintainer, which must win the shard's lease
// first: candidacy alone is never trusted with destructive steps, because gossip can disagree
// during a partition, while the lease is judged by the shard's own clock.
//
// # Stop
//
// Stop announces the leaving state, stops the claim loops and maintainers (releasing leases),
// lets handlers finish until its deadline less FlushReserve, then cancels them with
// worker.ErrStopping so their attempts are handed back (snoozed without consuming an attempt),
// flushes acknowledgements and leaves gossip.
//
// # Must never
//
// Call memberlist from its callbacks (membership signals a coalescing channel), hold a lock
// while calling a shard, or ack an attempt it did not claim.
package node
