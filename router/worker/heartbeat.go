package worker

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/braidq/braid/engine"
	"github.com/braidq/braid/shard"
)

// Defaults for HeartbeaterConfig fields left zero.
const (
	DefaultHeartbeatInterval    = 10 * time.Second
	DefaultHeartbeatCallTimeout = 5 * time.Second
)

// HeartbeaterConfig configures a Heartbeater. Zero fields take the defaults.
type HeartbeaterConfig struct {
	// Interval is how often each shard gets a heartbeat for its tracked attempts, default 10s.
	// Keep it well below the rescue staleness window (DESIGN.md §2.7: 3 heartbeats of 30s).
	Interval time.Duration
	// CallTimeout is braid's own timeout on each heartbeat call, default 5s.
	CallTimeout time.Duration
}

func (c HeartbeaterConfig) withDefaults() HeartbeaterConfig {
	c.Interval = cmp.Or(c.Interval, DefaultHeartbeatInterval)
	c.CallTimeout = cmp.Or(c.CallTimeout, DefaultHeartbeatCallTimeout)
	return c
}

// Validate returns every problem of the configuration at once, each naming its field.
func (c HeartbeaterConfig) Validate() error {
	var errs []error
	if c.Interval < 0 {
		errs = append(errs, &engine.ValidationError{Field: "interval", Value: c.Interval, Problem: "must be > 0"})
	}
	if c.CallTimeout < 0 {
		errs = append(errs, &engine.ValidationError{Field: "call_timeout", Value: c.CallTimeout, Problem: "must be > 0"})
	}
	return errors.Join(errs...)
}

// Heartbeater keeps running attempts alive (DESIGN.md §2.7): every Interval it sends each
// shard one Heartbeat call for the tracked attempts not heard of for half an Interval, follows
// re-homed receipts from the answers, and calls an attempt's onStale once when the shard says
// the attempt has ended (an operator cancelled it, or maintenance rescued it): the node then
// cancels the handler with ErrCancelled. A shard that cannot be reached is tried again at the
// next interval; its attempts' claim deadlines and the rescue window are the backstop.
type Heartbeater struct {
	cfg    HeartbeaterConfig
	shards *shard.Set
	logger *slog.Logger

	mu      sync.Mutex
	tracked map[int64][]*trackedAttempt // by job id: rarely more than one attempt of a job

	life     sync.Mutex // guards the run state below
	started  bool
	stopped  bool
	cancel   context.CancelFunc
	done     chan struct{}
	stopOnce sync.Once
}

type trackedAttempt struct {
	receipt  engine.Receipt
	onStale  func()
	lastSeen time.Time // tracked, or the last applied heartbeat
	stale    bool
}

// NewHeartbeater returns a heartbeater for the shards of shards; Start it to send heartbeats.
func NewHeartbeater(cfg HeartbeaterConfig, shards *shard.Set, logger *slog.Logger) (*Heartbeater, error) {
	var errs []error
	if err := cfg.Validate(); err != nil {
		errs = append(errs, err)
	}
	if shards == nil {
		errs = append(errs, errors.New("heartbeater: shards is required"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("new heartbeater: %w", err)
	}
	logger = cmp.Or(logger, slog.New(slog.DiscardHandler))
	return &Heartbeater{cfg: cfg.withDefaults(), shards: shards, logger: logger.With("component", "worker.heartbeater"),
		tracked: map[int64][]*trackedAttempt{}, done: make(chan struct{})}, nil
}

// Track heartbeats the attempt of r until untrack is called. onStale (may be nil) is called at
// most once, from the heartbeater's goroutine, when the shard answers that the attempt has
// ended. Call untrack when the handler returns and before acknowledging its result: a
// heartbeat answered after untrack calls nothing, so the node's own acknowledgement is never
// mistaken for an operator's cancel.
func (h *Heartbeater) Track(r engine.Receipt, onStale func()) (untrack func()) {
	t := &trackedAttempt{receipt: r, onStale: onStale, lastSeen: time.Now()}
	h.mu.Lock()
	h.tracked[r.JobID] = append(h.tracked[r.JobID], t)
	h.mu.Unlock()
	return func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		if rest := slices.DeleteFunc(h.tracked[r.JobID], func(x *trackedAttempt) bool { return x == t }); len(rest) > 0 {
			h.tracked[r.JobID] = rest
		} else {
			delete(h.tracked, r.JobID)
		}
	}
}

// Receipt returns the latest receipt of the job's newest tracked attempt: after maintenance
// re-homed the attempt, the one a heartbeat answer carried. ok is false when no attempt of the
// job is tracked.
func (h *Heartbeater) Receipt(jobID int64) (r engine.Receipt, ok bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, t := range h.tracked[jobID] {
		if !ok || t.receipt.RunLease > r.RunLease {
			r, ok = t.receipt, true
		}
	}
	return r, ok
}

// Start starts the heartbeat loop, which runs until Stop (cancelling ctx afterwards does not
// stop it). Starting a running heartbeater does nothing; a stopped one cannot start again.
func (h *Heartbeater) Start(ctx context.Context) error {
	h.life.Lock()
	defer h.life.Unlock()
	if h.stopped {
		return errors.New("start heartbeater: heartbeater stopped")
	}
	if h.started {
		return nil
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	h.started, h.cancel = true, cancel
	go func() { // owned by Stop, which waits for done
		defer close(h.done)
		h.run(runCtx)
	}()
	return nil
}

// Stop ends the heartbeat loop, cancelling heartbeat calls in flight, and waits for it until
// ctx ends. It is idempotent and safe before Start.
func (h *Heartbeater) Stop(ctx context.Context) error {
	h.life.Lock()
	h.stopped = true
	started := h.started
	h.life.Unlock()
	if !started {
		return nil
	}
	h.stopOnce.Do(h.cancel)
	select {
	case <-h.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("stop heartbeater: %w", context.Cause(ctx))
	}
}

func (h *Heartbeater) run(ctx context.Context) {
	tick := time.NewTicker(h.cfg.Interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			h.beat(ctx)
		}
	}
}

// beat sends one heartbeat call per shard, concurrently, and applies the answers.
func (h *Heartbeater) beat(ctx context.Context) {
	due := map[int][]*trackedAttempt{}
	receipts := map[int][]engine.Receipt{}
	h.mu.Lock()
	cutoff := time.Now().Add(-h.cfg.Interval / 2)
	for _, ts := range h.tracked {
		for _, t := range ts {
			if !t.stale && !t.lastSeen.After(cutoff) {
				id := t.receipt.ShardID
				due[id] = append(due[id], t)
				receipts[id] = append(receipts[id], t.receipt)
			}
		}
	}
	h.mu.Unlock()
	var wg sync.WaitGroup
	for id, rs := range receipts {
		s, ok := h.shards.Get(id)
		if !ok {
			h.logger.Error("tracked attempt of a shard outside the set", "shard_id", id, "attempts", len(rs))
			continue
		}
		wg.Go(func() {
			res, err := h.send(ctx, s, rs)
			if err != nil {
				if ctx.Err() == nil {
					h.logger.Warn("heartbeat failed; trying again next interval", "shard_id", id, "attempts", len(rs), "err", err)
				}
				return
			}
			h.apply(due[id], res)
		})
	}
	wg.Wait()
}

func (h *Heartbeater) send(ctx context.Context, s *shard.Shard, rs []engine.Receipt) ([]engine.HeartbeatResult, error) {
	return shard.Call(ctx, s, h.cfg.CallTimeout, func(ctx context.Context) ([]engine.HeartbeatResult, error) {
		return s.Engine().Heartbeat(ctx, rs, nil)
	})
}

// apply records one shard's answers: applied attempts take the receipt the answer carries,
// stale ones are marked and their onStale called, outside the lock.
func (h *Heartbeater) apply(sent []*trackedAttempt, res []engine.HeartbeatResult) {
	var stale []func()
	now := time.Now()
	h.mu.Lock()
	for i, t := range sent {
		if !slices.Contains(h.tracked[t.receipt.JobID], t) {
			continue // untracked meanwhile: the handler returned and its result is being acknowledged
		}
		switch res[i].Outcome {
		case engine.Applied:
			t.receipt, t.lastSeen = res[i].Receipt, now
		case engine.Stale:
			if !t.stale {
				t.stale = true
				if t.onStale != nil {
					stale = append(stale, t.onStale)
				}
			}
		}
	}
	h.mu.Unlock()
	for _, fn := range stale {
		fn()
	}
}
