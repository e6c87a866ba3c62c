package bench

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"
)

// Deps are what Run works with besides its Config.
type Deps struct {
	Logger *slog.Logger // default: discard
}

// stopTimeout bounds the System's Stop at the end of a run.
const stopTimeout = 30 * time.Second

// paceTick is how much of the offered rate one enqueue call carries (5 ms: 25 jobs at 5k/s),
// capped by Config.Batch.
const paceTick = 5 * time.Millisecond

// Run drives sys with the load cfg describes and returns the measured result. sys must be
// fresh (nothing enqueued); Run starts its workers and stops them before it returns.
func Run(ctx context.Context, cfg Config, sys System, deps Deps) (Result, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return Result{}, err
	}
	logger := cmp.Or(deps.Logger, slog.New(slog.DiscardHandler)).With("component", "bench", "system", sys.Name(), "variant", sys.Variant())
	w, err := openWatcher(ctx, sys.Databases())
	if err != nil {
		return Result{}, err
	}
	defer w.close(context.WithoutCancel(ctx))
	r := &run{cfg: cfg, sys: sys, log: logger, w: w, led: NewLedger(cfg.Work), pad: padding(cfg.PayloadBytes)}
	res, err := r.run(ctx)
	if err != nil {
		return Result{}, fmt.Errorf("bench: run %s/%s: %w", sys.Name(), sys.Variant(), err)
	}
	return res, nil
}

type run struct {
	cfg Config
	sys System
	log *slog.Logger
	w   *watcher
	led *Ledger
	pad string

	reserved atomic.Int64 // jobs handed to enqueue calls (depth mode keeps reserved-completed near Depth)
	pacer    *Pacer

	// sampling state
	started  time.Time
	last     time.Time
	lastEnq  int64
	lastDone int64
	samples  []Sample
	window   []time.Duration // latencies of the measured span
}

// mark is the state of the costs at one moment: a span's costs are two marks' differences.
type mark struct {
	at   time.Time
	wal  []int64
	cpu  time.Duration
	enq  int64
	done int64
}

func (r *run) mark(ctx context.Context) (mark, error) {
	wal, err := r.w.walLSNs(ctx)
	if err != nil {
		return mark{}, err
	}
	enq, done := r.led.Counts()
	return mark{at: time.Now(), wal: wal, cpu: cpuTime(), enq: enq, done: done}, nil
}

func (r *run) run(ctx context.Context) (res Result, err error) {
	cfg := r.cfg
	drain := cfg.Mode == ModeDrain
	var from, to mark
	if drain {
		if from, err = r.mark(ctx); err != nil {
			return res, err
		}
		if err := r.produceBacklog(ctx); err != nil {
			return res, err
		}
	}
	enqueuedAt := time.Now()

	if err := r.sys.StartWorkers(ctx, r.led); err != nil {
		return res, fmt.Errorf("start workers: %w", err)
	}
	stopped := false
	stopWorkers := func() error {
		if stopped {
			return nil
		}
		stopped = true
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), stopTimeout)
		defer cancel()
		if err := r.sys.Stop(sctx); err != nil {
			return fmt.Errorf("stop workers: %w", err)
		}
		return nil
	}
	defer func() { err = errors.Join(err, stopWorkers()) }()
	r.started, r.last = time.Now(), time.Now()
	r.lastEnq, r.lastDone = r.led.Counts()

	stopCtx, stopProducing := context.WithCancel(ctx)
	defer stopProducing()
	producers, pctx := errgroup.WithContext(ctx)
	if !drain {
		if cfg.Mode == ModeOffered {
			if r.pacer, err = NewPacer(cfg.Rate, cfg.CatchUp, min(paceTick, cfg.CatchUp)); err != nil {
				return res, err
			}
		}
		for range cfg.Producers {
			producers.Go(func() error { return r.produce(ctx, stopCtx) })
		}
	}
	defer func() { // on every return: the producers end before the workers stop
		stopProducing()
		_ = producers.Wait() // an error of theirs was returned where it happened
	}()
	phase := PhaseMeasure
	warmupEnd := int(cfg.Warmup / time.Second)
	windowEnd := warmupEnd + int(cfg.Duration/time.Second)
	if !drain && warmupEnd > 0 {
		phase = PhaseWarmup
	} else if !drain {
		if from, err = r.mark(ctx); err != nil {
			return res, err
		}
	}
	var drainFrom time.Time
	producerFailed := pctx.Done() // nil once the producers were waited for

	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	poll := time.NewTicker(10 * time.Millisecond)
	defer poll.Stop()
	for sec := 0; ; {
		finished := false
		select {
		case <-ctx.Done():
			return res, ctx.Err()
		case <-producerFailed:
			if err := producers.Wait(); err != nil {
				return res, err
			}
			return res, fmt.Errorf("producers stopped early: %w", ctx.Err())
		case <-poll.C:
			enq, done := r.led.Counts()
			switch {
			case drain && done >= int64(cfg.Jobs):
				finished = true
			case phase == PhaseDrain && done >= enq:
				finished = true
			}
		case <-tick.C:
			sec++
			r.sample(ctx, phase)
			switch {
			case drain && time.Since(r.started) >= cfg.Duration:
				r.log.Warn("drain backlog not completed within duration", "duration", cfg.Duration)
				finished = true
			case phase == PhaseWarmup && sec >= warmupEnd:
				if from, err = r.mark(ctx); err != nil {
					return res, err
				}
				phase = PhaseMeasure
			case phase == PhaseMeasure && !drain && sec >= windowEnd:
				if to, err = r.mark(ctx); err != nil {
					return res, err
				}
				stopProducing()
				if err := producers.Wait(); err != nil {
					return res, err
				}
				producerFailed = nil
				phase, drainFrom = PhaseDrain, time.Now()
			case phase == PhaseDrain && time.Since(drainFrom) >= cfg.DrainTimeout:
				r.log.Warn("backlog not completed within drain timeout", "drain_timeout", cfg.DrainTimeout)
				finished = true
			}
		}
		if finished {
			if drain {
				if to, err = r.mark(ctx); err != nil {
					return res, err
				}
			}
			r.sample(ctx, phase) // the last, partial second
			break
		}
	}
	if err := stopWorkers(); err != nil {
		return res, err
	}
	final, err := r.w.finalDeadTuples(ctx)
	if err != nil {
		return res, err
	}

	res = r.header()
	completed := to.done - from.done
	span := to.at.Sub(from.at)
	res.Enqueued, res.Completed = to.enq-from.enq, completed
	res.DurationS = span.Seconds()
	res.EnqueuedPerS = float64(res.Enqueued) / span.Seconds()
	res.CompletedPerS = float64(completed) / span.Seconds()
	if drain {
		// The backlog was enqueued before the workers started: time each part on its own.
		res.Enqueued = int64(cfg.Jobs)
		res.EnqueuedPerS = float64(cfg.Jobs) / enqueuedAt.Sub(from.at).Seconds()
		res.DurationS = to.at.Sub(r.started).Seconds()
		res.CompletedPerS = float64(completed) / res.DurationS
	}
	res.E2EMs = percentiles(r.window)
	res.CPUSPerJob = perJob(float64((to.cpu - from.cpu).Seconds()), completed)
	var wal int64
	for i, db := range r.w.dbs {
		c := DatabaseCost{Name: db.Name, WALBytes: to.wal[i] - from.wal[i], DeadTuplesEnd: sum(final[i]), Tables: map[string]TableDead{}}
		c.WALBytesPerJob = perJob(float64(c.WALBytes), completed)
		for table, n := range r.w.max[i] {
			c.Tables[table] = TableDead{End: final[i][table], Max: n}
		}
		wal += c.WALBytes
		res.DeadTuplesEnd += c.DeadTuplesEnd
		res.Databases = append(res.Databases, c)
	}
	res.WALBytesPerJob = perJob(float64(wal), completed)
	for _, s := range r.samples {
		res.DeadTuplesMax = max(res.DeadTuplesMax, s.DeadTuples)
	}
	res.DeadTuplesMax = max(res.DeadTuplesMax, res.DeadTuplesEnd)
	for _, c := range res.Databases {
		res.DeadTuplesMax = max(res.DeadTuplesMax, c.DeadTuplesMax)
	}
	check := r.led.Check()
	res.Lost, res.Duplicates, res.Unknown = check.Lost, check.Duplicates, check.Unknown
	enq, done := r.led.Counts()
	res.Drained = done >= enq
	if r.pacer != nil {
		res.DroppedOffers = r.pacer.Dropped()
	}
	res.Samples = r.samples
	return res, nil
}

func perJob(v float64, jobs int64) float64 {
	if jobs <= 0 {
		return 0
	}
	return v / float64(jobs)
}

func (r *run) header() Result {
	cfg := r.cfg
	res := Result{
		System: r.sys.Name(), Variant: r.sys.Variant(), Mode: cfg.Mode, Workers: cfg.Workers,
		PayloadBytes: cfg.PayloadBytes, WorkMs: float64(cfg.Work) / float64(time.Millisecond),
		StartedAt: r.started.UTC(), Shards: len(r.w.dbs),
	}
	if s, ok := r.sys.(interface{ Settings() map[string]string }); ok {
		res.Settings = s.Settings()
	}
	switch cfg.Mode {
	case ModeOffered:
		res.OfferedPerS = cfg.Rate
	case ModeDepth:
		res.DepthTarget = cfg.Depth
	}
	return res
}

// sample records the time since the previous sample.
func (r *run) sample(ctx context.Context, phase string) {
	now := time.Now()
	el := now.Sub(r.last).Seconds()
	enq, done := r.led.Counts()
	lat := r.led.cut()
	s := Sample{
		T: now.Sub(r.started).Seconds(), Phase: phase,
		EnqueuedPerS: float64(enq-r.lastEnq) / el, CompletedPerS: float64(done-r.lastDone) / el,
		E2EMs: percentiles(lat), Depth: max(0, enq-done), DeadTuples: -1,
	}
	if phase == PhaseMeasure {
		r.window = append(r.window, lat...)
	}
	r.last, r.lastEnq, r.lastDone = now, enq, done
	dctx, cancel := context.WithTimeout(ctx, 900*time.Millisecond)
	defer cancel()
	if dead, err := r.w.deadTuples(dctx); err != nil { // a slow read delays the next sample, whose rates divide by the real time
		r.log.Warn("read dead tuples", "err", err)
	} else {
		s.DeadTuples = 0
		for _, m := range dead {
			s.DeadTuples += sum(m)
		}
	}
	r.samples = append(r.samples, s)
}

// produceBacklog enqueues the drain backlog with every producer.
func (r *run) produceBacklog(ctx context.Context) error {
	var g errgroup.Group
	for range r.cfg.Producers {
		g.Go(func() error {
			for {
				n := int64(r.cfg.Batch)
				if left := int64(r.cfg.Jobs) - r.reserved.Add(n) + n; left < n {
					n = max(0, left)
				}
				if n == 0 {
					return nil
				}
				if err := r.enqueue(ctx, int(n)); err != nil {
					return err
				}
			}
		})
	}
	return g.Wait()
}

// produce loads the System until stop ends: paced (offered) or by depth. Enqueue calls run
// under ctx, never stop: a call cut short would abort its transaction and leave dead tuples.
func (r *run) produce(ctx, stop context.Context) error {
	for stop.Err() == nil {
		var n int
		if r.pacer != nil {
			var err error
			if n, err = r.pacer.Take(stop, r.cfg.Batch); err != nil {
				return nil
			}
		} else {
			_, done := r.led.Counts()
			room := int64(r.cfg.Depth) - (r.reserved.Load() - done)
			if room < int64(max(1, min(r.cfg.Batch, r.cfg.Depth/10))) {
				t := time.NewTimer(time.Millisecond)
				select {
				case <-stop.Done():
				case <-t.C:
				}
				t.Stop()
				continue
			}
			n = int(min(room, int64(r.cfg.Batch)))
			r.reserved.Add(int64(n))
		}
		if err := r.enqueue(ctx, n); err != nil {
			return err
		}
	}
	return nil
}

func (r *run) enqueue(ctx context.Context, n int) error {
	first := r.led.Reserve(n)
	jobs := make([]Args, n)
	for i := range jobs {
		jobs[i] = Args{Seq: first + int64(i), Pad: r.pad}
	}
	err := r.sys.Enqueue(ctx, jobs)
	r.led.Enqueued(first, n, err)
	if err != nil {
		return fmt.Errorf("enqueue %d jobs from seq %d: %w", n, first, err)
	}
	return nil
}
