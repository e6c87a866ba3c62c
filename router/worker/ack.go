package worker

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/braidq/braid/engine"
	"github.com/braidq/braid/shard"
)

// Defaults for AckerConfig fields left zero.
const (
	DefaultAckMaxBatch        = 512
	DefaultAckMaxDelay        = time.Millisecond
	DefaultAckCallTimeout     = 5 * time.Second
	DefaultAckRetryBackoff    = 20 * time.Millisecond
	DefaultAckMaxRetryBackoff = 2 * time.Second
	maxAckBatch               = 10000 // the engine's largest claim: a batch never needs more
)

// AckerConfig configures an Acker. Zero fields take the defaults.
type AckerConfig struct {
	// MaxBatch flushes a shard's queued acknowledgements once this many wait, default 512.
	MaxBatch int
	// MaxDelay flushes a shard's queued acknowledgements this long after the first of them
	// arrived, default 1ms.
	MaxDelay time.Duration
	// QueueSize bounds the acknowledgements waiting per shard; Ack blocks while the shard's
	// queue is full (during an outage, say). Default 4 × MaxBatch.
	QueueSize int
	// CallTimeout is braid's own timeout on each shard call, default 5s.
	CallTimeout time.Duration
	// RetryBackoff is the first wait before repeating a call that failed because the shard was
	// unavailable (or the transaction was rolled back by a serialization failure or deadlock);
	// it doubles per try, jittered, up to MaxRetryBackoff. Defaults 20ms and 2s.
	RetryBackoff    time.Duration
	MaxRetryBackoff time.Duration
}

func (c AckerConfig) withDefaults() AckerConfig {
	c.MaxBatch = cmp.Or(c.MaxBatch, DefaultAckMaxBatch)
	c.MaxDelay = cmp.Or(c.MaxDelay, DefaultAckMaxDelay)
	c.QueueSize = cmp.Or(c.QueueSize, 4*c.MaxBatch)
	c.CallTimeout = cmp.Or(c.CallTimeout, DefaultAckCallTimeout)
	c.RetryBackoff = cmp.Or(c.RetryBackoff, DefaultAckRetryBackoff)
	c.MaxRetryBackoff = cmp.Or(c.MaxRetryBackoff, DefaultAckMaxRetryBackoff)
	return c
}

// Validate returns every problem of the configuration at once, each naming its field.
func (c AckerConfig) Validate() error {
	c = c.withDefaults()
	var errs []error
	bad := func(field string, value any, problem string) {
		errs = append(errs, &engine.ValidationError{Field: field, Value: value, Problem: problem})
	}
	if c.MaxBatch < 1 || c.MaxBatch > maxAckBatch {
		bad("max_batch", c.MaxBatch, fmt.Sprintf("must be 1..%d", maxAckBatch))
	}
	if c.QueueSize < 1 {
		bad("queue_size", c.QueueSize, "must be >= 1")
	}
	for _, d := range []struct {
		field string
		v     time.Duration
	}{{"max_delay", c.MaxDelay}, {"call_timeout", c.CallTimeout}, {"retry_backoff", c.RetryBackoff}, {"max_retry_backoff", c.MaxRetryBackoff}} {
		if d.v < 0 {
			bad(d.field, d.v, "must be > 0")
		}
	}
	if c.MaxRetryBackoff < c.RetryBackoff {
		bad("max_retry_backoff", c.MaxRetryBackoff, fmt.Sprintf("must be >= retry_backoff (%s)", c.RetryBackoff))
	}
	return errors.Join(errs...)
}

// AckerDeps are what an Acker works with besides its Config.
type AckerDeps struct {
	Shards *shard.Set   // required; the caller opens and closes it
	Logger *slog.Logger // default: discard
	// OnAcked, when set, is told what became of every acknowledgement, once, in batches: from
	// the shard's flushing goroutine, so it must be quick and must not call Ack.
	OnAcked func([]Acked)
}

// Acked is what became of one acknowledgement.
type Acked struct {
	Receipt engine.Receipt
	Action  Action
	// Outcome is the engine's answer: Applied, or Stale when the attempt had ended before (a
	// rescue, an operator's cancel, or — when Retried — possibly this acker's own earlier try
	// whose answer was lost). Zero for Abandon, which sends nothing, and when Err is set.
	Outcome engine.Outcome
	State   engine.JobState // with Fail and Outcome Applied: retryable, dead_lettered or failed
	Retried bool            // the call was repeated after the shard was unavailable
	Err     error           // the acknowledgement was not delivered
}

// ErrAckerStopped is returned by Ack when the acker is not running: before Start, and once
// Stop has begun.
var ErrAckerStopped = errors.New("acker not running")

// Acker delivers attempts' results to their shards in batches (DESIGN.md §2.6, §5): per shard,
// completions in one engine call, failures in one, snoozes and give-backs in one, and cancels
// one job at a time, flushed at MaxBatch or MaxDelay. Calls go through the shard's breaker;
// while a shard is unavailable its batch is retried with capped backoff, so acknowledgements
// are neither lost nor applied twice (the engine ends each attempt at most once: a repeat is
// Stale), and the shard's queue fills until Ack blocks. Other shards are not held up.
type Acker struct {
	cfg     AckerConfig
	shards  *shard.Set
	logger  *slog.Logger
	onAcked func([]Acked)
	queues  map[int]chan ackItem

	// mu guards state; Ack holds it shared while it queues, so Stop (exclusive) closes the
	// queues only once no Ack is sending.
	mu       sync.RWMutex
	state    ackerState
	stopping chan struct{} // closed when Stop begins: unblocks Acks waiting on a full queue
	stopOnce sync.Once
	abort    context.CancelFunc // ends the flushing goroutines' calls at Stop's deadline
	done     chan struct{}      // closed when every flushing goroutine has returned
	wg       sync.WaitGroup

	lostMu sync.Mutex
	lost   map[int][]int64 // job ids per shard that could not be delivered by Stop's deadline
}

type ackerState int

const (
	ackerNew ackerState = iota
	ackerRunning
	ackerStopped
)

type ackItem struct {
	receipt engine.Receipt
	res     Result
}

// NewAcker returns an acker for the shards of deps.Shards; Start it before Ack.
func NewAcker(cfg AckerConfig, deps AckerDeps) (*Acker, error) {
	var errs []error
	if err := cfg.Validate(); err != nil {
		errs = append(errs, err)
	}
	if deps.Shards == nil {
		errs = append(errs, errors.New("acker: deps.Shards is required"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("new acker: %w", err)
	}
	cfg = cfg.withDefaults()
	logger := cmp.Or(deps.Logger, slog.New(slog.DiscardHandler))
	a := &Acker{
		cfg: cfg, shards: deps.Shards, logger: logger.With("component", "worker.acker"), onAcked: deps.OnAcked,
		queues: map[int]chan ackItem{}, stopping: make(chan struct{}), done: make(chan struct{}), lost: map[int][]int64{},
	}
	for _, id := range deps.Shards.IDs() {
		a.queues[id] = make(chan ackItem, cfg.QueueSize)
	}
	return a, nil
}

// Start starts one flushing goroutine per shard. The acker runs until Stop: cancelling ctx
// afterwards does not drop acknowledgements. Starting a running acker does nothing; a stopped
// one cannot start again.
func (a *Acker) Start(ctx context.Context) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	switch a.state {
	case ackerRunning:
		return nil
	case ackerStopped:
		return fmt.Errorf("start acker: %w", ErrAckerStopped)
	}
	runCtx, abort := context.WithCancel(context.WithoutCancel(ctx))
	a.abort = abort
	for id, q := range a.queues {
		s, _ := a.shards.Get(id)
		a.wg.Go(func() { a.run(runCtx, s, q) })
	}
	go func() { // owned by Stop, which waits for done
		a.wg.Wait()
		close(a.done)
	}()
	a.state = ackerRunning
	return nil
}

// Ack queues the result of the attempt r for its shard. It blocks while that shard's queue is
// full, and fails only when ctx ends first, the acker is not running, or r names a shard the
// acker does not have. r should be the attempt's latest receipt (Heartbeater.Receipt); older
// receipts of a re-homed attempt work too.
func (a *Acker) Ack(ctx context.Context, r engine.Receipt, res Result) error {
	q, ok := a.queues[r.ShardID]
	if !ok {
		return fmt.Errorf("ack job %d: shard %d is not in the acker's shard set", r.JobID, r.ShardID)
	}
	a.mu.RLock()
	defer a.mu.RUnlock()
	if a.state != ackerRunning {
		return fmt.Errorf("ack job %d on shard %d: %w", r.JobID, r.ShardID, ErrAckerStopped)
	}
	select {
	case q <- ackItem{receipt: r, res: res}:
		return nil
	case <-a.stopping:
		return fmt.Errorf("ack job %d on shard %d: %w", r.JobID, r.ShardID, ErrAckerStopped)
	case <-ctx.Done():
		return fmt.Errorf("ack job %d on shard %d: %w", r.JobID, r.ShardID, context.Cause(ctx))
	}
}

// Stop refuses new acknowledgements and flushes everything queued, retrying unavailable shards
// until ctx ends; then it abandons what is left and returns an error naming, per shard, the
// jobs whose acknowledgements were not delivered (their attempts stay open until maintenance
// rescues them). Stop is idempotent and safe before Start.
func (a *Acker) Stop(ctx context.Context) error {
	a.stopOnce.Do(func() { close(a.stopping) })
	a.mu.Lock()
	if a.state == ackerRunning {
		for _, q := range a.queues {
			close(q)
		}
	}
	a.state = ackerStopped
	started := a.abort != nil
	a.mu.Unlock()
	if !started {
		return nil
	}
	select {
	case <-a.done:
	case <-ctx.Done():
		a.abort()
		<-a.done
	}
	a.abort()
	return a.lostError()
}

func (a *Acker) lostError() error {
	a.lostMu.Lock()
	defer a.lostMu.Unlock()
	var errs []error
	for _, id := range slices.Sorted(maps.Keys(a.lost)) {
		ids := a.lost[id]
		shown := ids[:min(len(ids), 10)]
		var b strings.Builder
		for i, j := range shown {
			if i > 0 {
				b.WriteString(", ")
			}
			fmt.Fprint(&b, j)
		}
		if len(ids) > len(shown) {
			fmt.Fprintf(&b, ", ... (%d more)", len(ids)-len(shown))
		}
		errs = append(errs, fmt.Errorf("stop acker: shard %d: %d acknowledgements not delivered by the deadline (jobs %s)", id, len(ids), b.String()))
	}
	return errors.Join(errs...)
}

// run is one shard's flushing loop: it collects a batch and delivers it, until the queue is
// closed and drained.
func (a *Acker) run(ctx context.Context, s *shard.Shard, q <-chan ackItem) {
	for {
		batch, open := collect(q, a.cfg.MaxBatch, a.cfg.MaxDelay)
		if len(batch) > 0 {
			a.flush(ctx, s, batch)
		}
		if !open {
			return
		}
	}
}

// collect waits for a first item, then gathers more until max are in hand or delay has
// passed since the first arrived. open is false once q is closed and drained.
func collect(q <-chan ackItem, max int, delay time.Duration) (batch []ackItem, open bool) {
	it, ok := <-q
	if !ok {
		return nil, false
	}
	batch = append(batch, it)
	timer := time.NewTimer(delay)
	defer timer.Stop()
	for len(batch) < max {
		select {
		case it, ok := <-q:
			if !ok {
				return batch, false
			}
			batch = append(batch, it)
		case <-timer.C:
			return batch, true
		}
	}
	return batch, true
}

// flush delivers one batch to shard s: one call per kind of acknowledgement (cancels one per
// job), each repeated while the shard is unavailable, and reports every item to OnAcked.
func (a *Acker) flush(ctx context.Context, s *shard.Shard, batch []ackItem) {
	out := make([]Acked, len(batch))
	var complete, fail, snooze, cancel []int
	for i, it := range batch {
		out[i] = Acked{Receipt: it.receipt, Action: it.res.Action}
		switch it.res.Action {
		case Complete:
			complete = append(complete, i)
		case Fail:
			fail = append(fail, i)
		case Snooze, GiveBack:
			snooze = append(snooze, i)
		case Cancel:
			cancel = append(cancel, i)
		case Abandon:
		default:
			out[i].Err = fmt.Errorf("ack job %d: unknown action %d", it.receipt.JobID, int(it.res.Action))
		}
	}
	eng := s.Engine()
	receipts := func(idx []int) []engine.Receipt {
		rs := make([]engine.Receipt, len(idx))
		for k, i := range idx {
			rs[k] = batch[i].receipt
		}
		return rs
	}
	if len(complete) > 0 {
		rs := receipts(complete)
		outcomes, retried, err := call(ctx, a, s, "complete", func(ctx context.Context) ([]engine.Outcome, error) {
			return eng.Complete(ctx, rs)
		})
		for k, i := range complete {
			out[i].Retried, out[i].Err = retried, err
			if err == nil {
				out[i].Outcome = outcomes[k]
			}
		}
	}
	if len(fail) > 0 {
		fs := make([]engine.Failure, len(fail))
		for k, i := range fail {
			fs[k] = batch[i].res.Failure
			fs[k].Receipt = batch[i].receipt
		}
		results, retried, err := call(ctx, a, s, "fail", func(ctx context.Context) ([]engine.FailResult, error) {
			return eng.Fail(ctx, fs)
		})
		for k, i := range fail {
			out[i].Retried, out[i].Err = retried, err
			if err == nil {
				out[i].Outcome, out[i].State = results[k].Outcome, results[k].State
			}
		}
	}
	if len(snooze) > 0 {
		rs := receipts(snooze)
		delays := make([]time.Duration, len(snooze))
		for k, i := range snooze {
			if batch[i].res.Action == Snooze {
				delays[k] = max(batch[i].res.Snooze, 0)
			}
		}
		outcomes, retried, err := call(ctx, a, s, "snooze", func(ctx context.Context) ([]engine.Outcome, error) {
			return eng.Snooze(ctx, rs, delays)
		})
		for k, i := range snooze {
			out[i].Retried, out[i].Err = retried, err
			if err == nil {
				out[i].Outcome = outcomes[k]
			}
		}
	}
	for _, i := range cancel {
		id := batch[i].receipt.JobID
		res, retried, err := call(ctx, a, s, "cancel", func(ctx context.Context) (engine.CancelResult, error) {
			return eng.Cancel(ctx, id)
		})
		out[i].Retried, out[i].Err = retried, err
		if err == nil {
			out[i].Outcome = engine.Stale
			if res.Cancelled {
				out[i].Outcome = engine.Applied
			}
		}
		if err == nil && batch[i].res.Err != nil {
			a.logger.Info("job cancelled by its handler", "shard_id", s.ID(), "job_id", id, "err", batch[i].res.Err)
		}
	}
	var lost []int64
	for _, o := range out {
		if o.Err != nil {
			lost = append(lost, o.Receipt.JobID)
			if ctx.Err() == nil {
				a.logger.Error("acknowledgement refused", "shard_id", s.ID(), "job_id", o.Receipt.JobID,
					"action", o.Action.String(), "err", o.Err)
			}
		}
	}
	if len(lost) > 0 && ctx.Err() != nil {
		a.lostMu.Lock()
		a.lost[s.ID()] = append(a.lost[s.ID()], lost...)
		a.lostMu.Unlock()
	}
	if a.onAcked != nil {
		a.onAcked(out)
	}
}

// call runs one acknowledgement call through the shard's breaker and repeats it, with
// jittered capped backoff, while it fails retryably, until it succeeds or ctx ends (Stop's
// deadline). Repeating is safe: the engine ends an attempt at most once.
func call[T any](ctx context.Context, a *Acker, s *shard.Shard, op string, fn func(context.Context) (T, error)) (v T, retried bool, err error) {
	backoff := a.cfg.RetryBackoff
	for try := 1; ; try++ {
		v, err = shard.Call(ctx, s, a.cfg.CallTimeout, fn)
		if err == nil {
			if try > 1 {
				a.logger.Info("acknowledgements delivered after retrying", "shard_id", s.ID(), "op", op, "tries", try)
			}
			return v, try > 1, nil
		}
		if !retryable(err) || ctx.Err() != nil {
			return v, try > 1, fmt.Errorf("shard %d: ack %s: %w", s.ID(), op, err)
		}
		if try == 1 {
			a.logger.Warn("acknowledgements waiting for an unavailable shard", "shard_id", s.ID(), "op", op, "err", err)
		}
		wait := backoff/2 + rand.N(backoff/2+1)
		backoff = min(2*backoff, a.cfg.MaxRetryBackoff)
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return v, try > 1, fmt.Errorf("shard %d: ack %s: %w (gave up while retrying: %w)", s.ID(), op, err, ctx.Err())
		}
	}
}

// retryable says whether repeating an acknowledgement call can help: the shard was unavailable
// (breaker open or an infrastructure error, as shard.Call decides), or PostgreSQL rolled the
// transaction back (serialization failure, deadlock).
func retryable(err error) bool {
	if _, ok := errors.AsType[*shard.UnavailableError](err); ok {
		return true
	}
	pgErr, ok := errors.AsType[*pgconn.PgError](err)
	return ok && pgerrcode.IsTransactionRollback(pgErr.Code)
}
