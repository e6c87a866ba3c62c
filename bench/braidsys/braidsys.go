// Package braidsys is braid as a [bench.System]: the router client enqueues, one worker node
// (router/node) claims and runs the jobs, and a job's completion counts as durable when the
// node's acker reports it applied by its shard (node.Deps.OnAcked).
package braidsys

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"go.opentelemetry.io/otel/metric"

	"github.com/braidq/braid/bench"
	"github.com/braidq/braid/engine"
	"github.com/braidq/braid/router"
	"github.com/braidq/braid/router/membership"
	"github.com/braidq/braid/router/node"
	"github.com/braidq/braid/router/worker"
	"github.com/braidq/braid/shard"
)

// DefaultQueue is the queue the benchmark jobs go to.
const DefaultQueue = "bench"

// Config configures the braid system of a benchmark.
type Config struct {
	// Shards are the (migrated) shards; the catalog lives on the first one (migrated too).
	Shards  []shard.Config
	Queue   string // default "bench"
	Workers int    // the node's handlers, required
	// Lanes per queue on every shard (the engine's default when zero).
	Lanes int
	// ClaimBatch bounds one claim (the node's default when zero).
	ClaimBatch int
}

// Validate returns every problem of the configuration at once.
func (c Config) Validate() error {
	var errs []error
	if len(c.Shards) == 0 {
		errs = append(errs, errors.New("braid bench config: shards: at least one shard is required"))
	}
	if c.Workers < 1 {
		errs = append(errs, fmt.Errorf("braid bench config: workers %d: must be at least 1", c.Workers))
	}
	if c.Lanes < 0 {
		errs = append(errs, fmt.Errorf("braid bench config: lanes %d: must not be negative", c.Lanes))
	}
	if c.Queue != "" {
		if err := engine.ValidateQueue(c.Queue); err != nil {
			errs = append(errs, fmt.Errorf("braid bench config: queue %q: %w", c.Queue, err))
		}
	}
	return errors.Join(errs...)
}

// Deps are what the system works with besides its Config.
type Deps struct {
	Logger        *slog.Logger         // default: discard
	MeterProvider metric.MeterProvider // default: no-op (the node's)
}

// System is braid under benchmark. It owns its shard set, catalog, client and node.
type System struct {
	cfg    Config
	deps   Deps
	set    *shard.Set
	client *router.Client
	opts   *router.InsertOpts

	mu   sync.Mutex
	node *node.Node
	seqs map[int64]int64 // job id -> seq, from the handler's run until its ack applied
}

// Open opens the shards, the catalog and the producer client; the node starts with
// StartWorkers.
func Open(ctx context.Context, cfg Config, deps Deps) (*System, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.Queue = cmp.Or(cfg.Queue, DefaultQueue)
	cfgs := make([]shard.Config, len(cfg.Shards))
	for i, c := range cfg.Shards {
		c.Engine.Lanes = cmp.Or(cfg.Lanes, c.Engine.Lanes)
		c.Engine.Node = "bench"
		c.MaxConns = max(c.MaxConns, 16)
		cfgs[i] = c
	}
	cfg.Shards = cfgs
	set, err := shard.OpenSet(ctx, cfgs, shard.Deps{Logger: deps.Logger})
	if err != nil {
		return nil, fmt.Errorf("braid bench: open shards: %w", err)
	}
	first, _ := set.Get(cfgs[0].ID)
	cat, err := router.NewCatalog(ctx, first.Pool(), router.CatalogConfig{Logger: deps.Logger})
	if err != nil {
		set.Close()
		return nil, fmt.Errorf("braid bench: open catalog on shard %d: %w", cfgs[0].ID, err)
	}
	client, err := router.New(router.Config{}, router.Deps{Shards: set, Catalog: cat, Logger: deps.Logger})
	if err != nil {
		set.Close()
		return nil, fmt.Errorf("braid bench: router client: %w", err)
	}
	return &System{cfg: cfg, deps: deps, set: set, client: client, opts: &router.InsertOpts{Queue: cfg.Queue}, seqs: map[int64]int64{}}, nil
}

// Close closes the shards; call it after Stop.
func (s *System) Close() { s.set.Close() }

func (s *System) Name() string    { return "braid" }
func (s *System) Variant() string { return "default" }

// Settings are the knobs that shape braid's figures, for the results.
func (s *System) Settings() map[string]string {
	return map[string]string{
		"lanes":       strconv.Itoa(cmp.Or(s.cfg.Lanes, s.cfg.Shards[0].Engine.Lanes, 4)),
		"claim_batch": strconv.Itoa(cmp.Or(s.cfg.ClaimBatch, node.DefaultClaimBatch)),
		"ack_batch":   strconv.Itoa(worker.DefaultAckMaxBatch),
		"ack_delay":   worker.DefaultAckMaxDelay.String(),
	}
}

// Databases are the shards' databases (braid's schema).
func (s *System) Databases() []bench.Database {
	out := make([]bench.Database, len(s.cfg.Shards))
	for i, c := range s.cfg.Shards {
		out[i] = bench.Database{Name: c.Name, DSN: c.DSN, Schema: cmp.Or(c.Engine.Schema, "braid")}
	}
	return out
}

// Enqueue inserts the jobs with one InsertMany.
func (s *System) Enqueue(ctx context.Context, jobs []bench.Args) error {
	params := make([]router.InsertManyParams, len(jobs))
	for i, a := range jobs {
		params[i] = router.InsertManyParams{Args: a, InsertOpts: s.opts}
	}
	_, err := s.client.InsertMany(ctx, params)
	return err
}

// StartWorkers starts one worker node for the queue whose handler works through led and
// whose applied completions are reported to led.
func (s *System) StartWorkers(ctx context.Context, led *bench.Ledger) error {
	ws := worker.NewWorkers()
	worker.AddWorker(ws, worker.WorkFunc(func(ctx context.Context, j *worker.Job[bench.Args]) error {
		if err := led.Work(ctx, j.Args.Seq); err != nil {
			return err
		}
		s.mu.Lock()
		s.seqs[j.ID] = j.Args.Seq
		s.mu.Unlock()
		return nil
	}))
	onAcked := func(acks []worker.Acked) {
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, a := range acks {
			if a.Action != worker.Complete || a.Err != nil || a.Outcome != engine.Applied {
				continue
			}
			if seq, ok := s.seqs[a.Receipt.JobID]; ok {
				delete(s.seqs, a.Receipt.JobID)
				led.Completed(seq)
			}
		}
	}
	n, err := node.New(node.Config{
		ID:             "bench",
		Queues:         map[string]node.QueueConfig{s.cfg.Queue: {}},
		MaxWorkers:     s.cfg.Workers,
		ClaimBatch:     s.cfg.ClaimBatch,
		Settle:         100 * time.Millisecond,
		QueuesInterval: time.Second,
		Gossip:         membership.Config{BindAddr: "127.0.0.1", ClusterLabel: "braid-bench"},
	}, node.Deps{Shards: s.set, Client: s.client, Workers: ws, Logger: s.deps.Logger, MeterProvider: s.deps.MeterProvider, OnAcked: onAcked})
	if err != nil {
		return fmt.Errorf("braid bench: worker node: %w", err)
	}
	if err := n.Start(ctx); err != nil {
		return fmt.Errorf("braid bench: start worker node: %w", err)
	}
	s.mu.Lock()
	s.node = n
	s.mu.Unlock()
	return nil
}

// Stop stops the node gracefully (in-flight jobs finish, acknowledgements flush).
func (s *System) Stop(ctx context.Context) error {
	s.mu.Lock()
	n := s.node
	s.mu.Unlock()
	if n == nil {
		return nil
	}
	return n.Stop(ctx)
}
