package node

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/braidq/braid/engine"
	"github.com/braidq/braid/router/membership"
	"github.com/braidq/braid/shard"
)

// ownership keeps the node's claim loops and maintainers in line with what the cluster says
// the node owns. Only its own goroutine (run) changes loops and maint; the listener reads
// loops under mu to deliver wake-ups.
type ownership struct {
	n *Node

	mu    sync.Mutex
	loops map[unit]*task // running claim loops, with their wake-up channel

	lanes     map[int]map[string]int // shard -> queue -> lanes, as last read
	lanesRead map[int]time.Time
	dirRead   time.Time
	pending   map[unit]time.Time // units this node gained, since when (the settle)
	maint     map[int]*task      // maintainers by shard
	kick      chan struct{}      // re-read the shards' queues now (a NOTIFY of an unknown queue)
}

// task is a goroutine the ownership loop started and can stop.
type task struct {
	wake   chan struct{} // claim loops only: buffered 1, coalescing
	cancel context.CancelFunc
	done   chan struct{}
}

func newOwnership(n *Node) *ownership {
	return &ownership{
		n:         n,
		loops:     map[unit]*task{},
		lanes:     map[int]map[string]int{},
		lanesRead: map[int]time.Time{},
		pending:   map[unit]time.Time{},
		maint:     map[int]*task{},
		kick:      make(chan struct{}, 1),
	}
}

// run reconciles whenever membership changes, on a kick, and on a short tick (which also ends
// settles and refreshes the directory and lanes on their intervals), until ctx ends; then it
// stops every loop and maintainer it started and waits for them.
func (o *ownership) run(ctx context.Context) {
	tick := time.NewTicker(min(o.n.cfg.Settle, o.n.cfg.DirectoryInterval, 250*time.Millisecond) + time.Millisecond)
	defer tick.Stop()
	for {
		o.reconcile(ctx)
		select {
		case <-ctx.Done():
			o.stopAll()
			return
		case <-o.n.members.Changes():
		case <-o.kick:
			clear(o.lanesRead)
		case <-tick.C:
		}
	}
}

// wake signals the claim loops of (shard, queue); it reports whether the node runs any.
func (o *ownership) wake(shardID int, queue string) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	found := false
	for u, t := range o.loops {
		if u.shard == shardID && u.queue == queue {
			found = true
			select {
			case t.wake <- struct{}{}:
			default:
			}
		}
	}
	return found
}

// wakeShard signals every claim loop of a shard (after the listener reconnected, when
// notifications may have been missed).
func (o *ownership) wakeShard(shardID int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for u, t := range o.loops {
		if u.shard == shardID {
			select {
			case t.wake <- struct{}{}:
			default:
			}
		}
	}
}

// requestQueues asks the loop to re-read the shards' queues now.
func (o *ownership) requestQueues() {
	select {
	case o.kick <- struct{}{}:
	default:
	}
}

func (o *ownership) reconcile(ctx context.Context) {
	n := o.n
	now := time.Now()
	if now.Sub(o.dirRead) >= n.cfg.DirectoryInterval {
		if err := n.deps.Client.Refresh(ctx); err != nil && ctx.Err() == nil {
			n.log.Debug("directory refresh failed; using the cached directory", "err", err)
		} else {
			o.dirRead = now
		}
	}
	_, entries := n.deps.Client.Directory()
	members := n.members.Members()
	self := n.members.Self().Name

	want := map[unit]bool{}
	if slices.Contains(n.cfg.Roles, RoleWorker) {
		for _, e := range entries {
			if _, ok := n.cfg.Queues[e.Queue]; !ok {
				continue
			}
			eligible := func(m membership.Member) bool {
				return m.State == membership.StateActive && m.HasRole(RoleWorker) && m.Serves(e.Queue)
			}
			for _, sid := range []int{e.ShardID, e.DrainFrom} {
				if sid == 0 {
					continue
				}
				sh, ok := n.shardOf(sid)
				if !ok {
					continue
				}
				for lane := range o.lanesOf(ctx, sh)[e.Queue] {
					u := unit{shard: sid, queue: e.Queue, lane: lane}
					owners := membership.Owners(membership.UnitKey(sid, e.Queue, lane), n.cfg.Owners, members, eligible)
					if slices.ContainsFunc(owners, func(m membership.Member) bool { return m.Name == self }) {
						want[u] = true
					}
				}
			}
		}
	}

	o.mu.Lock()
	for u, t := range o.loops {
		if !want[u] { // release at once
			t.cancel()
			delete(o.loops, u)
			n.log.Debug("claim unit released", "shard_id", u.shard, "queue", u.queue, "lane", u.lane)
		}
	}
	for u := range o.pending {
		if !want[u] {
			delete(o.pending, u)
		}
	}
	for u := range want {
		if _, ok := o.loops[u]; ok {
			continue
		}
		since, ok := o.pending[u]
		if !ok {
			o.pending[u] = now
			since = now
		}
		if now.Sub(since) < n.cfg.Settle && len(members) > 1 {
			continue // take new units after a short settle (alone, there is no one to settle with)
		}
		delete(o.pending, u)
		t := o.start(ctx, func(ctx context.Context, wake <-chan struct{}) { n.claimLoop(ctx, u, wake) })
		o.loops[u] = t
		n.log.Debug("claim unit taken", "shard_id", u.shard, "queue", u.queue, "lane", u.lane)
	}
	o.mu.Unlock()

	if slices.Contains(n.cfg.Roles, RoleMaintenance) {
		eligible := func(m membership.Member) bool {
			return m.State == membership.StateActive && m.HasRole(RoleMaintenance)
		}
		for _, sh := range n.deps.Shards.All() {
			owners := membership.Owners(membership.MaintenanceKey(sh.ID()), 1, members, eligible)
			mine := len(owners) == 1 && owners[0].Name == self
			t, running := o.maint[sh.ID()]
			switch {
			case mine && !running:
				o.maint[sh.ID()] = o.start(ctx, func(ctx context.Context, _ <-chan struct{}) { n.maintain(ctx, sh) })
			case !mine && running:
				t.cancel()
				<-t.done // the lease is released before a successor is expected to win it
				delete(o.maint, sh.ID())
			}
		}
	}
	n.met.setOwned(len(want), len(o.maint))
}

// lanesOf returns the lane counts of the shard's queues, re-read every QueuesInterval; a shard
// that cannot be read keeps its last known lanes.
func (o *ownership) lanesOf(ctx context.Context, sh *shard.Shard) map[string]int {
	id := sh.ID()
	if time.Since(o.lanesRead[id]) < o.n.cfg.QueuesInterval {
		return o.lanes[id]
	}
	qs, err := shard.Call(ctx, sh, o.n.cfg.CallTimeout, func(ctx context.Context) ([]engine.QueueLanes, error) {
		return sh.Engine().Queues(ctx)
	})
	if err != nil {
		if ctx.Err() == nil {
			o.n.log.Debug("reading the shard's queues failed; keeping the last known", "shard_id", id, "err", err)
		}
		return o.lanes[id]
	}
	m := make(map[string]int, len(qs))
	for _, q := range qs {
		m[q.Queue] = q.Lanes
	}
	o.lanes[id], o.lanesRead[id] = m, time.Now()
	return m
}

// start runs fn on a goroutine owned by the node's background group.
func (o *ownership) start(ctx context.Context, fn func(context.Context, <-chan struct{})) *task {
	ctx, cancel := context.WithCancel(ctx)
	t := &task{wake: make(chan struct{}, 1), cancel: cancel, done: make(chan struct{})}
	o.n.bg.Go(func() {
		defer close(t.done)
		fn(ctx, t.wake)
	})
	return t
}

// stopAll stops every claim loop and maintainer and waits for them.
func (o *ownership) stopAll() {
	o.mu.Lock()
	var tasks []*task
	for u, t := range o.loops {
		t.cancel()
		tasks = append(tasks, t)
		delete(o.loops, u)
	}
	o.mu.Unlock()
	for id, t := range o.maint {
		t.cancel()
		tasks = append(tasks, t)
		delete(o.maint, id)
	}
	for _, t := range tasks {
		<-t.done
	}
}
