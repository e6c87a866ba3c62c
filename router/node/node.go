package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"time"

	"go.opentelemetry.io/otel/metric/noop"

	"github.com/braidq/braid/engine"
	"github.com/braidq/braid/router/membership"
	"github.com/braidq/braid/router/worker"
	"github.com/braidq/braid/shard"
)

// Node is one router node: a member of the gossip cluster that claims and runs the jobs of the
// claim units it owns and runs the Maintainer of the shards it is elected for.
type Node struct {
	cfg  Config
	deps Deps
	log  *slog.Logger
	met  *instruments

	global *slots
	queues map[string]*slots

	acker *worker.Acker
	beats *worker.Heartbeater

	mu       sync.Mutex
	started  bool
	stopped  bool
	members  *membership.Membership
	cancelBg context.CancelFunc // ends the ownership loop, claim loops, listeners and maintainers
	bg       sync.WaitGroup     // those goroutines

	// handlers run under handlerCtx, cancelled with worker.ErrStopping when Stop's deadline
	// nears; jobs waits for them.
	handlerCtx   context.Context
	stopHandlers context.CancelCauseFunc
	jobs         sync.WaitGroup
	running      runningSet
	unacked      unackedSet
	own          *ownership
	stopErr      error
	stopDone     chan struct{}
}

// New checks the configuration and builds a node; Start joins the cluster and starts work.
func New(cfg Config, deps Deps) (*Node, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	var errs []error
	if deps.Shards == nil {
		errs = append(errs, errors.New("node deps: Shards is required"))
	}
	if deps.Client == nil {
		errs = append(errs, errors.New("node deps: Client is required (its directory names the claim units)"))
	}
	if slices.Contains(cfg.Roles, RoleWorker) && deps.Workers == nil {
		errs = append(errs, errors.New("node deps: Workers is required for the worker role"))
	}
	if deps.Workers != nil {
		if kinds := deps.Workers.Kinds(); len(kinds) == 0 && slices.Contains(cfg.Roles, RoleWorker) {
			errs = append(errs, errors.New("node deps: Workers has no worker added (use worker.AddWorker)"))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if deps.Logger == nil {
		deps.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if deps.MeterProvider == nil {
		deps.MeterProvider = noop.NewMeterProvider()
	}
	n := &Node{
		cfg:      cfg,
		deps:     deps,
		log:      deps.Logger.With("component", "node", "node", cfg.ID),
		global:   newSlots(cfg.MaxWorkers),
		queues:   make(map[string]*slots, len(cfg.Queues)),
		stopDone: make(chan struct{}),
	}
	for name, q := range cfg.Queues {
		n.queues[name] = newSlots(q.MaxWorkers)
	}
	n.running.jobs = map[attemptKey]context.CancelCauseFunc{}
	n.unacked.m = map[attemptKey]func(){}
	met, err := newInstruments(deps.MeterProvider, n)
	if err != nil {
		return nil, err
	}
	n.met = met
	onAcked := func(acks []worker.Acked) {
		for _, a := range acks {
			n.unacked.done(a.Receipt)
		}
		n.met.acked(acks)
		if deps.OnAcked != nil {
			deps.OnAcked(acks)
		}
	}
	if n.acker, err = worker.NewAcker(cfg.Ack, worker.AckerDeps{Shards: deps.Shards, Logger: deps.Logger, OnAcked: onAcked}); err != nil {
		return nil, err
	}
	if n.beats, err = worker.NewHeartbeater(cfg.Heartbeat, deps.Shards, deps.Logger); err != nil {
		return nil, err
	}
	return n, nil
}

// Start joins the gossip cluster and starts the ownership loop, which starts claim loops and
// maintainers as units and shards become this node's. It returns once the node is a member.
func (n *Node) Start(ctx context.Context) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.started {
		return errors.New("node: already started")
	}
	if n.stopped {
		return errors.New("node: stopped")
	}
	members, err := membership.Start(ctx, n.cfg.Gossip, membership.Deps{Logger: n.deps.Logger, MeterProvider: n.deps.MeterProvider})
	if err != nil {
		return fmt.Errorf("node %s: join: %w", n.cfg.ID, err)
	}
	if err := n.acker.Start(context.WithoutCancel(ctx)); err != nil {
		_ = members.Crash()
		return err
	}
	if err := n.beats.Start(context.WithoutCancel(ctx)); err != nil {
		_ = n.acker.Stop(ctx)
		_ = members.Crash()
		return err
	}
	n.members = members
	n.handlerCtx, n.stopHandlers = context.WithCancelCause(context.WithoutCancel(ctx))
	bg, cancel := context.WithCancel(context.WithoutCancel(ctx))
	n.cancelBg = cancel
	n.own = newOwnership(n)
	for _, sh := range n.deps.Shards.All() {
		n.bg.Go(func() { n.listen(bg, sh) })
	}
	n.bg.Go(func() { n.own.run(bg) })
	if err := members.SetState(ctx, membership.StateActive); err != nil {
		n.log.Warn("announce active state", "err", err)
	}
	n.started = true
	n.log.Info("node started", "member", members.Self().Name, "addr", members.Addr())
	return nil
}

// Config returns the node's configuration with defaults filled in.
func (n *Node) Config() Config { return n.cfg }

// Members returns the cluster's live members as this node sees them (nil before Start).
func (n *Node) Members() []membership.Member {
	n.mu.Lock()
	m := n.members
	n.mu.Unlock()
	if m == nil {
		return nil
	}
	return m.Members()
}

// Addr returns the node's gossip address (host:port), to give other nodes as a seed.
func (n *Node) Addr() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.members == nil {
		return ""
	}
	return n.members.Addr()
}

// Stop leaves gracefully: it announces that it is leaving (so other nodes take its units),
// stops claiming, lets in-flight handlers finish until ctx's deadline less FlushReserve, hands
// back what did not finish (retry without consuming an attempt), flushes acknowledgements,
// stops its maintainers (releasing their leases) and leaves gossip. Idempotent; safe before
// Start. A handler that ignores its context past the deadline is left behind: its attempt
// stays open until the shard's rescue ends it.
func (n *Node) Stop(ctx context.Context) error {
	n.mu.Lock()
	if n.stopped {
		n.mu.Unlock()
		select {
		case <-n.stopDone:
			return n.stopErr
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	n.stopped = true
	started := n.started
	n.mu.Unlock()
	if !started {
		close(n.stopDone)
		return nil
	}
	n.stopErr = n.stop(ctx)
	close(n.stopDone)
	return n.stopErr
}

func (n *Node) stop(ctx context.Context) error {
	var errs []error
	if err := n.members.SetState(ctx, membership.StateLeaving); err != nil {
		n.log.Warn("announce leaving state", "err", err)
	}
	n.cancelBg()
	n.bg.Wait() // claim loops return as soon as their claim call does

	handlersDone := make(chan struct{})
	go func() { n.jobs.Wait(); close(handlersDone) }()
	grace, cancel := n.handlerGrace(ctx)
	select {
	case <-handlersDone:
	case <-grace.Done():
		n.log.Info("stop deadline near: handing back unfinished attempts", "running", n.running.len())
		n.stopHandlers(worker.ErrStopping)
		select {
		case <-handlersDone:
		case <-ctx.Done():
			errs = append(errs, fmt.Errorf("node %s: stop: %d handlers still running at the deadline: %w",
				n.cfg.ID, n.running.len(), ctx.Err()))
		}
	}
	cancel()
	if err := n.acker.Stop(ctx); err != nil {
		errs = append(errs, err)
	}
	if err := n.beats.Stop(ctx); err != nil {
		errs = append(errs, err)
	}
	n.stopHandlers(worker.ErrStopping)
	if err := n.members.Leave(ctx); err != nil {
		errs = append(errs, fmt.Errorf("node %s: leave: %w", n.cfg.ID, err))
	}
	n.log.Info("node stopped")
	return errors.Join(errs...)
}

// handlerGrace is the part of ctx that handlers may use: its deadline less FlushReserve (or a
// quarter of the time left, whichever is smaller).
func (n *Node) handlerGrace(ctx context.Context) (context.Context, context.CancelFunc) {
	d, ok := ctx.Deadline()
	if !ok {
		return context.WithCancel(ctx)
	}
	reserve := min(n.cfg.FlushReserve, time.Until(d)/4)
	return context.WithDeadline(ctx, d.Add(-reserve))
}

// attemptKey names one attempt: a job id and its run lease.
type attemptKey struct{ job, lease int64 }

// runningSet is the node's handlers in flight, for cancel signals.
type runningSet struct {
	mu   sync.Mutex
	jobs map[attemptKey]context.CancelCauseFunc
}

func (r *runningSet) add(c engine.Claimed, cancel context.CancelCauseFunc) {
	r.mu.Lock()
	r.jobs[attemptKey{c.Receipt.JobID, c.Receipt.RunLease}] = cancel
	r.mu.Unlock()
}

func (r *runningSet) remove(c engine.Claimed) {
	r.mu.Lock()
	delete(r.jobs, attemptKey{c.Receipt.JobID, c.Receipt.RunLease})
	r.mu.Unlock()
}

// cancel cancels the handler of (job, lease) with worker.ErrCancelled if it runs here.
func (r *runningSet) cancel(jobID, lease int64) bool {
	r.mu.Lock()
	cancel, ok := r.jobs[attemptKey{jobID, lease}]
	r.mu.Unlock()
	if ok {
		cancel(worker.ErrCancelled)
	}
	return ok
}

func (r *runningSet) len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.jobs)
}

// shardOf returns the shard of the set with id.
func (n *Node) shardOf(id int) (*shard.Shard, bool) { return n.deps.Shards.Get(id) }
