package engine

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.opentelemetry.io/otel/metric"
)

// MaintainerConfig configures a Maintainer. Zero durations and limits take the defaults.
type MaintainerConfig struct {
	Holder   string        // lease holder name (the node id); required
	LeaseTTL time.Duration // lease lifetime by the database clock, renewed every TTL/3; default 15s
	// AcquireRetry is how often Run tries to take the lease while another holder's is live;
	// default LeaseTTL/3.
	AcquireRetry time.Duration

	PromoteInterval time.Duration // due deferred jobs made available; default 250ms
	RescueInterval  time.Duration // default 5s
	// RescueStale: an attempt without heartbeat (or claim) for this long is rescued; default
	// 90s, three of the worker's default 30s heartbeats (DESIGN.md §2.7).
	RescueStale    time.Duration
	RehomeInterval time.Duration // default 10s
	// RehomeAfter: open attempts claimed longer ago move to the current claim slot, so they do
	// not pin the claim ring; default 10s.
	RehomeAfter    time.Duration
	RotateInterval time.Duration // both rings; default 1s
	RotateMinAge   time.Duration // a ring's generation rotates once at least this old; default 1s
	PruneInterval  time.Duration // claim and queue slot prune, each on its own; default 1s
	LockTimeout    time.Duration // prune's wait for a slot's ACCESS EXCLUSIVE locks; default 100ms
	FoldInterval   time.Duration // default 5s
	// MaxPin: the counter fold stands down while the MVCC horizon has been pinned for longer;
	// default 5s.
	MaxPin                 time.Duration
	DeadLetterTrimInterval time.Duration // default 1h
	DeadLetterRetention    time.Duration // default 30 days (720h)
	StatsInterval          time.Duration // MaintenanceStats into the gauges; default 10s
	// LedgerTrimInterval: how often the rings' generation ledgers are trimmed to one generation
	// per slot (TrimRingLedger); default 1m.
	LedgerTrimInterval time.Duration
	// RebuildInterval: how often one counter bucket is rebuilt online (RebuildCounters), the
	// buckets in turn, so a full pass takes 256 intervals; default 1m.
	RebuildInterval time.Duration
	// MaxBackoff caps the doubling wait after skipped, blocked, standing-down or failed runs
	// (never below the step's interval); default 5s.
	MaxBackoff time.Duration
	// BatchLimit bounds the jobs one promote, rescue, rehome or dead-letter trim call handles; a
	// call that hits it runs again at once. Default 1000.
	BatchLimit int

	Logger        *slog.Logger         // default: discard
	MeterProvider metric.MeterProvider // default: noop
}

func (c MaintainerConfig) withDefaults() MaintainerConfig {
	c.LeaseTTL = cmp.Or(c.LeaseTTL, 15*time.Second)
	c.AcquireRetry = cmp.Or(c.AcquireRetry, c.LeaseTTL/3)
	c.PromoteInterval = cmp.Or(c.PromoteInterval, 250*time.Millisecond)
	c.RescueInterval = cmp.Or(c.RescueInterval, 5*time.Second)
	c.RescueStale = cmp.Or(c.RescueStale, 90*time.Second)
	c.RehomeInterval = cmp.Or(c.RehomeInterval, 10*time.Second)
	c.RehomeAfter = cmp.Or(c.RehomeAfter, 10*time.Second)
	c.RotateInterval = cmp.Or(c.RotateInterval, time.Second)
	c.RotateMinAge = cmp.Or(c.RotateMinAge, time.Second)
	c.PruneInterval = cmp.Or(c.PruneInterval, time.Second)
	c.LockTimeout = cmp.Or(c.LockTimeout, 100*time.Millisecond)
	c.FoldInterval = cmp.Or(c.FoldInterval, 5*time.Second)
	c.MaxPin = cmp.Or(c.MaxPin, 5*time.Second)
	c.DeadLetterTrimInterval = cmp.Or(c.DeadLetterTrimInterval, time.Hour)
	c.DeadLetterRetention = cmp.Or(c.DeadLetterRetention, 30*24*time.Hour)
	c.StatsInterval = cmp.Or(c.StatsInterval, 10*time.Second)
	c.LedgerTrimInterval = cmp.Or(c.LedgerTrimInterval, time.Minute)
	c.RebuildInterval = cmp.Or(c.RebuildInterval, time.Minute)
	c.MaxBackoff = cmp.Or(c.MaxBackoff, 5*time.Second)
	c.BatchLimit = cmp.Or(c.BatchLimit, 1000)
	return c
}

// Validate returns every problem of the configuration at once.
func (c MaintainerConfig) Validate() error {
	c = c.withDefaults()
	var errs []error
	if c.Holder == "" {
		errs = append(errs, &ValidationError{Field: "holder", Value: c.Holder, Problem: "is required (the node id)"})
	}
	for _, d := range []struct {
		field string
		v     time.Duration
	}{
		{"lease_ttl", c.LeaseTTL}, {"acquire_retry", c.AcquireRetry},
		{"promote_interval", c.PromoteInterval}, {"rescue_interval", c.RescueInterval},
		{"rescue_stale", c.RescueStale}, {"rehome_interval", c.RehomeInterval},
		{"rotate_interval", c.RotateInterval}, {"prune_interval", c.PruneInterval},
		{"lock_timeout", c.LockTimeout}, {"fold_interval", c.FoldInterval}, {"max_pin", c.MaxPin},
		{"dead_letter_trim_interval", c.DeadLetterTrimInterval},
		{"dead_letter_retention", c.DeadLetterRetention}, {"stats_interval", c.StatsInterval},
		{"ledger_trim_interval", c.LedgerTrimInterval}, {"rebuild_interval", c.RebuildInterval},
		{"max_backoff", c.MaxBackoff}, {"rehome_after", c.RehomeAfter}, {"rotate_min_age", c.RotateMinAge},
	} {
		if d.v < 0 {
			errs = append(errs, &ValidationError{Field: d.field, Value: d.v, Problem: "must be > 0 (zero takes the default)"})
		}
	}
	if c.LeaseTTL > 0 && c.LeaseTTL < 30*time.Millisecond {
		errs = append(errs, &ValidationError{Field: "lease_ttl", Value: c.LeaseTTL, Problem: "must be >= 30ms (it is renewed every third of it)"})
	}
	if c.BatchLimit < 0 {
		errs = append(errs, &ValidationError{Field: "batch_limit", Value: c.BatchLimit, Problem: "must be >= 1 (zero takes the default)"})
	}
	return errors.Join(errs...)
}

// Maintainer runs one shard's maintenance (DESIGN.md §2.8) while it holds the shard's lease:
// each step on its own goroutine with its own interval and back-off (see the package doc).
type Maintainer struct {
	e       *Engine
	cfg     MaintainerConfig
	log     *slog.Logger
	metrics *maintenanceMetrics
	steps   []step
	running atomic.Bool
	// rebuildNext is the next counter bucket the rebuild step works on (mod Buckets).
	rebuildNext atomic.Int64

	mu     sync.Mutex
	lease  Lease
	held   bool
	status map[string]StepStatus
}

// StepStatus is the last outcome of one maintenance step.
type StepStatus struct {
	Step     string        // promote, rescue, rehome, rotate_queue, rotate_claim, prune_claim, prune_queue, fold, ledger_trim, rebuild, dead_letter_trim, stats
	Outcome  string        // the step's outcome (e.g. pruned, skipped, blocked, nothing), error or lease_lost
	Reason   string        // why (skipped, blocked, error) or what it did
	Duration time.Duration // how long the run took
	At       time.Time     // when it ended
	Runs     int64         // runs since NewMaintainer
	Delay    time.Duration // the wait before its next run (the interval, doubled by back-off)
}

// step is one scheduled maintenance step. run reports what happened.
type step struct {
	name     string
	interval time.Duration
	run      func(ctx context.Context, e *Engine, l Lease) (stepResult, error)
}

type stepResult struct {
	outcome string
	reason  string
	backoff bool // skipped, blocked or standing down: wait longer before the next try
	again   bool // a full batch or a pruned slot: more may be waiting, run again at once
}

// NewMaintainer returns a maintainer for the engine's shard. It does no I/O.
func NewMaintainer(e *Engine, cfg MaintainerConfig) (*Maintainer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("shard %d: maintainer: %w", e.id.ShardID, err)
	}
	cfg = cfg.withDefaults()
	metrics, err := newMaintenanceMetrics(cfg.MeterProvider, e.id.ShardID)
	if err != nil {
		return nil, fmt.Errorf("shard %d: maintainer: %w", e.id.ShardID, err)
	}
	m := &Maintainer{
		e:       e,
		cfg:     cfg,
		log:     cmp.Or(cfg.Logger, slog.New(slog.DiscardHandler)).With("component", "maintainer", "shard_id", e.id.ShardID, "holder", cfg.Holder),
		metrics: metrics,
		status:  map[string]StepStatus{},
	}
	m.steps = m.schedule()
	return m, nil
}

// schedule is the Maintainer's list of steps.
func (m *Maintainer) schedule() []step {
	c := m.cfg
	counted := func(n int, did string) stepResult {
		if n == 0 {
			return stepResult{outcome: "nothing"}
		}
		return stepResult{outcome: did, reason: fmt.Sprintf("%d jobs", n), again: n >= c.BatchLimit}
	}
	rotate := func(ring Ring) func(context.Context, *Engine, Lease) (stepResult, error) {
		return func(ctx context.Context, e *Engine, l Lease) (stepResult, error) {
			res, err := e.Rotate(ctx, l, ring, c.RotateMinAge)
			if err != nil {
				return stepResult{}, err
			}
			m.metrics.ringGeneration(ctx, ring, res.Generation)
			return stepResult{outcome: res.Outcome, reason: fmt.Sprintf("generation %d, slot %d", res.Generation, res.Slot),
				backoff: res.Outcome == "next_slot_busy"}, nil
		}
	}
	prune := func(name string, fn func(*Engine, context.Context, Lease, time.Duration) (PruneResult, error)) func(context.Context, *Engine, Lease) (stepResult, error) {
		return func(ctx context.Context, e *Engine, l Lease) (stepResult, error) {
			res, err := fn(e, ctx, l, c.LockTimeout)
			if err != nil {
				return stepResult{}, err
			}
			m.metrics.prunePhases(ctx, name, res)
			r := stepResult{outcome: res.Outcome}
			switch res.Outcome {
			case "skipped":
				r.reason, r.backoff = fmt.Sprintf("slot %d: %d open attempts", res.Slot, res.Open), true
			case "blocked":
				r.reason, r.backoff = fmt.Sprintf("slot %d: lock timeout after %s", res.Slot, res.LockWait), true
			case "pruned":
				// More sealed slots may be waiting (a ring that filled while prunes were
				// skipped): drain them now rather than one per interval.
				r.again = true
				r.reason = fmt.Sprintf("slot %d: lock wait %s, truncate %s, commit %s, carried %d",
					res.Slot, res.LockWait, res.Truncate, res.Commit, res.Carried)
			}
			return r, nil
		}
	}
	return []step{
		{"promote", c.PromoteInterval, func(ctx context.Context, e *Engine, _ Lease) (stepResult, error) {
			n, err := e.Promote(ctx, c.BatchLimit)
			return counted(n, "promoted"), err
		}},
		{"rescue", c.RescueInterval, func(ctx context.Context, e *Engine, _ Lease) (stepResult, error) {
			res, err := e.Rescue(ctx, c.RescueStale, c.BatchLimit)
			r := counted(res.Retried+res.DeadLettered+res.Failed, "rescued")
			if r.outcome == "rescued" {
				r.reason = fmt.Sprintf("%d retried, %d dead-lettered, %d failed", res.Retried, res.DeadLettered, res.Failed)
			}
			return r, err
		}},
		{"rehome", c.RehomeInterval, func(ctx context.Context, e *Engine, _ Lease) (stepResult, error) {
			n, err := e.Rehome(ctx, c.RehomeAfter, c.BatchLimit)
			return counted(n, "rehomed"), err
		}},
		{"rotate_queue", c.RotateInterval, rotate(QueueRing)},
		{"rotate_claim", c.RotateInterval, rotate(ClaimRing)},
		{"prune_claim", c.PruneInterval, prune("prune_claim", (*Engine).PruneClaimSlot)},
		{"prune_queue", c.PruneInterval, prune("prune_queue", (*Engine).PruneQueueSlot)},
		{"fold", c.FoldInterval, afterWrites(func(ctx context.Context, e *Engine, l Lease) (stepResult, error) {
			res, err := e.FoldCounters(ctx, l, c.MaxPin)
			r := stepResult{outcome: res.Outcome, backoff: res.Outcome == "standing_down"}
			switch res.Outcome {
			case "folded":
				r.reason = fmt.Sprintf("%d counter_log rows", res.Rows)
			case "standing_down":
				r.reason = fmt.Sprintf("MVCC horizon pinned for more than %s", c.MaxPin)
			}
			return r, err
		}, "folded", "counter_log", "counter", "maintenance_lease")},
		{"ledger_trim", c.LedgerTrimInterval, afterWrites(func(ctx context.Context, e *Engine, l Lease) (stepResult, error) {
			res, err := e.TrimRingLedger(ctx, l, 1, c.MaxPin)
			r := stepResult{outcome: res.Outcome, backoff: res.Outcome == "standing_down"}
			if res.Outcome == "trimmed" {
				r.reason = fmt.Sprintf("%d generations", res.Deleted)
			}
			return r, err
		}, "trimmed", "ring_gen")},
		{"rebuild", c.RebuildInterval, func(ctx context.Context, e *Engine, l Lease) (stepResult, error) {
			bucket := int(m.rebuildNext.Load() % Buckets)
			res, err := e.RebuildCounters(ctx, l, bucket, c.MaxPin)
			if err != nil {
				return stepResult{}, err
			}
			if res.Outcome != "standing_down" {
				m.rebuildNext.Add(1)
			}
			return stepResult{outcome: res.Outcome, reason: fmt.Sprintf("bucket %d", bucket), backoff: res.Outcome == "standing_down"}, nil
		}},
		{"dead_letter_trim", c.DeadLetterTrimInterval, func(ctx context.Context, e *Engine, _ Lease) (stepResult, error) {
			n, err := e.DeadLetterTrim(ctx, c.DeadLetterRetention, c.BatchLimit)
			return counted(n, "trimmed"), err
		}},
		{"stats", c.StatsInterval, func(ctx context.Context, e *Engine, _ Lease) (stepResult, error) {
			s, err := e.MaintenanceStats(ctx)
			if err != nil {
				return stepResult{}, err
			}
			m.metrics.stats(ctx, s)
			return stepResult{outcome: "recorded", reason: fmt.Sprintf("%d dead tuples, horizon pinned for %s", s.DeadTuples, s.HorizonPinnedFor)}, nil
		}},
	}
}

// ErrMaintainerRunning is returned by Run while another Run of the same Maintainer is active.
var ErrMaintainerRunning = errors.New("maintainer is already running")

// Run takes the shard's maintenance lease (trying every AcquireRetry while another holder's
// lease is live), renews it every LeaseTTL/3 on its own goroutine and runs every step on its own
// goroutine until ctx ends or the lease is lost. It returns an error wrapping ErrLeaseLost as
// soon as a renewal or a step finds the lease lost (or no renewal succeeded for a whole TTL),
// after cancelling and waiting for every step; the caller may Run again to compete for the lease
// anew. When ctx ends it waits for the steps, releases the lease so that a successor takes it at
// once, and returns nil.
func (m *Maintainer) Run(ctx context.Context) error {
	if !m.running.CompareAndSwap(false, true) {
		return fmt.Errorf("shard %d: maintainer %q: %w", m.e.id.ShardID, m.cfg.Holder, ErrMaintainerRunning)
	}
	defer m.running.Store(false)

	// The Maintainer's own pool, one connection per step plus one for the lease: steps never
	// wait for a connection, for traffic or for each other, and traffic never waits for them.
	pc := m.e.pool.Config().Copy()
	pc.MaxConns = int32(len(m.steps) + 1)
	pc.MinConns, pc.MinIdleConns = 0, 0
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return fmt.Errorf("shard %d: maintainer %q: open pool: %w", m.e.id.ShardID, m.cfg.Holder, err)
	}
	defer pool.Close()
	e := m.e.withPool(pool)

	l, ok := m.acquire(ctx, e)
	if !ok {
		return nil
	}
	m.setLease(l, true)
	defer m.setLease(Lease{}, false)
	m.log.Info("maintenance lease acquired", "epoch", l.Epoch)

	runCtx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var wg sync.WaitGroup
	wg.Go(func() { m.renew(runCtx, e, cancel, l) })
	for _, s := range m.steps {
		wg.Go(func() { m.loop(runCtx, e, cancel, l, s) })
	}
	wg.Wait()

	if cause := context.Cause(runCtx); errors.Is(cause, ErrLeaseLost) {
		m.log.Warn("maintenance lease lost: stepped down", "epoch", l.Epoch, "err", cause)
		return fmt.Errorf("shard %d: maintainer %q epoch %d: %w", m.e.id.ShardID, l.Holder, l.Epoch, cause)
	}
	// ctx ended: hand the lease over at once. The release is bounded by the TTL: after it the
	// lease has expired anyway.
	relCtx, relCancel := context.WithTimeout(context.WithoutCancel(ctx), m.cfg.LeaseTTL)
	defer relCancel()
	released, err := e.LeaseRelease(relCtx, l)
	switch {
	case err != nil:
		m.log.Warn("maintenance lease release failed: it expires after its TTL", "epoch", l.Epoch, "err", err)
	case released:
		m.log.Info("maintenance lease released", "epoch", l.Epoch)
	}
	return nil
}

// acquire tries to take the lease every AcquireRetry until it holds it or ctx ends.
func (m *Maintainer) acquire(ctx context.Context, e *Engine) (Lease, bool) {
	for {
		l, ok, err := e.LeaseAcquire(ctx, m.cfg.Holder, m.cfg.LeaseTTL)
		switch {
		case err != nil && ctx.Err() == nil:
			m.log.Warn("maintenance lease acquire failed", "err", err)
		case ok:
			return l, true
		}
		select {
		case <-ctx.Done():
			return Lease{}, false
		case <-time.After(m.cfg.AcquireRetry):
		}
	}
}

// renew extends the lease every TTL/3. Lost, or no success for a whole TTL (measured from the
// send of the last successful renewal, so never later than the database's expiry): cancel
// everything with ErrLeaseLost.
func (m *Maintainer) renew(ctx context.Context, e *Engine, cancel context.CancelCauseFunc, l Lease) {
	every := m.cfg.LeaseTTL / 3
	lastOK := time.Now()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		sent := time.Now()
		callCtx, callCancel := context.WithTimeout(ctx, every)
		ok, err := e.LeaseRenew(callCtx, l, m.cfg.LeaseTTL)
		callCancel()
		switch {
		case ctx.Err() != nil:
			return
		case err == nil && ok:
			lastOK = sent
		case err == nil:
			cancel(fmt.Errorf("renew: %w", ErrLeaseLost))
			return
		case time.Since(lastOK) >= m.cfg.LeaseTTL:
			cancel(fmt.Errorf("no renewal succeeded for the lease TTL %s (last: %v): %w", m.cfg.LeaseTTL, err, ErrLeaseLost))
			return
		default:
			m.log.Warn("maintenance lease renewal failed", "epoch", l.Epoch, "err", err)
		}
	}
}

// loop runs one step at its interval until ctx ends, backing off after skipped, blocked,
// standing-down and failed runs. A step that finds the lease lost cancels the whole Run.
func (m *Maintainer) loop(ctx context.Context, e *Engine, cancel context.CancelCauseFunc, l Lease, s step) {
	delay := s.interval
	for {
		start := time.Now()
		res, err := s.run(ctx, e, l)
		if ctx.Err() != nil {
			return // cancelled mid-run: not an outcome
		}
		took := time.Since(start)
		if err != nil {
			res = stepResult{outcome: "error", reason: err.Error(), backoff: true}
			if errors.Is(err, ErrLeaseLost) {
				res.outcome = "lease_lost"
			}
		}
		delay = nextDelay(s.interval, m.cfg.MaxBackoff, delay, res.backoff)
		if res.again {
			delay = 0
		}
		m.record(ctx, s.name, res, took, delay)
		if res.outcome == "lease_lost" {
			cancel(err)
			return
		}
		if err != nil {
			m.log.Warn("maintenance step failed", "step", s.name, "err", err, "next_in", delay)
		}
		if delay > 0 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(delay):
			}
		}
	}
}

// nextDelay is the wait before a step's next run: its interval after a run that did its work or
// found nothing to do; after a skipped, blocked, standing-down or failed run (backoff) twice the
// previous wait, at most max(maxBackoff, interval).
func nextDelay(interval, maxBackoff, prev time.Duration, backoff bool) time.Duration {
	if !backoff {
		return interval
	}
	return min(max(prev, interval)*2, max(maxBackoff, interval))
}

func (m *Maintainer) record(ctx context.Context, name string, res stepResult, took, delay time.Duration) {
	m.metrics.step(ctx, name, res.outcome, took)
	m.mu.Lock()
	defer m.mu.Unlock()
	st := m.status[name]
	m.status[name] = StepStatus{Step: name, Outcome: res.outcome, Reason: res.reason, Duration: took,
		At: time.Now(), Runs: st.Runs + 1, Delay: delay}
}

func (m *Maintainer) setLease(l Lease, held bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.lease, m.held = l, held
}

// Lease returns the lease this maintainer holds while Run is active after acquiring it. Held
// is this process's belief: the database is the judge (LeaseHistory), and a lost lease is
// noticed at the latest one TTL later.
func (m *Maintainer) Lease() (Lease, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.lease, m.held
}

// Status returns the last outcome of each step that has run, in schedule order.
func (m *Maintainer) Status() []StepStatus {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []StepStatus
	for _, s := range m.steps {
		if st, ok := m.status[s.name]; ok {
			out = append(out, st)
		}
	}
	return out
}

// afterWrites wraps a step that DELETEs or UPDATEs rows of small warm tables (a fold's DELETE
// from counter_log and UPDATEs of counter, a ledger trim's DELETE). After a run whose outcome
// was wrote it VACUUMs those tables as soon as the MVCC horizon has passed the write: once no
// backend of the database runs a transaction or holds a snapshot older than the write's commit
// (polled every horizonPoll for at most horizonWait), the dead row versions are removable, so
// they live for milliseconds, not until the next run or autovacuum's next visit (a fold every
// few seconds leaves a few hundred each time). When the horizon stays pinned for
// longer, the next run VACUUMs first. The step's goroutine is the only user of the flag.
func afterWrites(run func(context.Context, *Engine, Lease) (stepResult, error), wrote string, tables ...string) func(context.Context, *Engine, Lease) (stepResult, error) {
	dirty := false
	return func(ctx context.Context, e *Engine, l Lease) (stepResult, error) {
		if dirty {
			if err := e.vacuum(ctx, tables...); err != nil {
				return stepResult{}, err
			}
			dirty = false
		}
		r, err := run(ctx, e, l)
		if err != nil || r.outcome != wrote {
			return r, err
		}
		dirty = true
		passed, err := e.awaitHorizon(ctx, horizonPoll, horizonWait)
		if err != nil || !passed {
			return r, err
		}
		if err := e.vacuum(ctx, tables...); err != nil {
			return r, err
		}
		dirty = false
		return r, nil
	}
}

// How often and for how long a step that wrote waits for the MVCC horizon to pass its write
// before it VACUUMs (afterWrites). Hot-path transactions last milliseconds.
const (
	horizonPoll = 10 * time.Millisecond
	horizonWait = time.Second
)

// awaitHorizon waits, polling every poll for at most wait, until the MVCC horizon has passed
// every transaction that had committed when it was called (braid.horizon_passed). False: it had
// not when the wait ended.
func (e *Engine) awaitHorizon(ctx context.Context, poll, wait time.Duration) (bool, error) {
	var next string
	if err := e.pool.QueryRow(ctx, `SELECT pg_snapshot_xmax(pg_current_snapshot())::text`).Scan(&next); err != nil {
		return false, fmt.Errorf("shard %d: await MVCC horizon: %w", e.id.ShardID, err)
	}
	q := inSchema(`SELECT braid.horizon_passed($1::text::xid8)`, e.cfg.Schema)
	for deadline := time.Now().Add(wait); ; {
		var passed bool
		if err := e.pool.QueryRow(ctx, q, next).Scan(&passed); err != nil {
			return false, fmt.Errorf("shard %d: await MVCC horizon past xid %s: %w", e.id.ShardID, next, err)
		}
		if passed || time.Now().After(deadline) {
			return passed, nil
		}
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case <-time.After(poll):
		}
	}
}

// vacuum runs VACUUM (SKIP_LOCKED) on engine tables: a statement of its own, outside any
// transaction. A role that does not own the tables gets a warning and no effect. The table
// names are constants; the schema comes from validated config.
func (e *Engine) vacuum(ctx context.Context, tables ...string) error {
	names := make([]string, len(tables))
	for i, t := range tables {
		names[i] = "braid." + t
	}
	if _, err := e.pool.Exec(ctx, inSchema("VACUUM (SKIP_LOCKED) "+strings.Join(names, ", "), e.cfg.Schema)); err != nil {
		return fmt.Errorf("shard %d: vacuum %s: %w", e.id.ShardID, strings.Join(tables, ", "), err)
	}
	return nil
}

// withPool is the engine working through another pool of the same database.
func (e *Engine) withPool(p *pgxpool.Pool) *Engine {
	c := *e
	c.pool = p
	return &c
}

// LeaseRelease gives a held lease up at once, so a successor takes it without waiting for the
// TTL; the release is recorded in the lease history. False: (holder, epoch) held no live lease.
func (e *Engine) LeaseRelease(ctx context.Context, l Lease) (bool, error) {
	var ok bool
	if err := e.pool.QueryRow(ctx, inSchema(`SELECT braid.maintenance_lease_release($1, $2)`, e.cfg.Schema), l.Holder, l.Epoch).Scan(&ok); err != nil {
		return false, fmt.Errorf("shard %d: release maintenance lease %q epoch %d: %w", e.id.ShardID, l.Holder, l.Epoch, err)
	}
	return ok, nil
}

// LeaseEvent is one change of the maintenance lease's hands, from the shard's append-only
// lease log, by the database clock.
type LeaseEvent struct {
	Seq      int64
	Epoch    int64
	Holder   string
	Released bool      // false: Holder acquired Epoch at At; true: Holder released it at At
	At       time.Time // when it was acquired or released

	// Acquisitions only: the lease before, as read under the lease row's lock. Its
	// PreviousExpiresAt is final (no renewal can move it after the takeover's lock), so
	// At >= PreviousExpiresAt proves the two leases did not overlap. Empty for the first lease.
	PreviousHolder    string
	PreviousEpoch     int64
	PreviousExpiresAt time.Time
}

// LeaseHistory returns the shard's lease log, oldest first.
func (e *Engine) LeaseHistory(ctx context.Context) ([]LeaseEvent, error) {
	rows, err := e.pool.Query(ctx, inSchema(`SELECT * FROM braid.lease_history()`, e.cfg.Schema))
	if err != nil {
		return nil, fmt.Errorf("shard %d: read lease history: %w", e.id.ShardID, err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (LeaseEvent, error) {
		var (
			ev        LeaseEvent
			prevH     *string
			prevE     *int64
			prevUntil *time.Time
		)
		err := r.Scan(&ev.Seq, &ev.Epoch, &ev.Holder, &ev.Released, &ev.At, &prevH, &prevE, &prevUntil)
		if prevH != nil {
			ev.PreviousHolder, ev.PreviousEpoch, ev.PreviousExpiresAt = *prevH, *prevE, *prevUntil
		}
		return ev, err
	})
	if err != nil {
		return nil, fmt.Errorf("shard %d: read lease history: %w", e.id.ShardID, err)
	}
	return out, nil
}
