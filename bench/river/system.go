package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivermigrate"

	"github.com/braidq/braid/bench"
)

// Variants of River's settings the comparison runs.
const (
	VariantDefault = "default" // River's defaults (MaxWorkers = W, as every system gets W handlers)
	VariantTuned   = "tuned"   // FetchCooldown 5ms, FetchPollInterval 5ms, MaxWorkers = W
)

// subscriptionBuffer holds completion events the ledger has not read yet; River drops events
// beyond its subscription channel, which the ledger would count as lost jobs.
const subscriptionBuffer = 1 << 20

// system is River under benchmark, in a database of its own (River's schema migrated by
// rivermigrate). A completion counts as durable when River emits its job_completed event,
// which its completer sends after the completion's transaction committed.
type system struct {
	variant string
	workers int
	dsn     string
	pool    *pgxpool.Pool
	insert  *river.Client[pgx.Tx] // insert-only: exists before the workers start
	logger  *slog.Logger

	mu     sync.Mutex
	worker *river.Client[pgx.Tx]
	unsub  func()
	events sync.WaitGroup
}

func openSystem(ctx context.Context, variant, dsn string, workers int, logger *slog.Logger) (*system, error) {
	if variant != VariantDefault && variant != VariantTuned {
		return nil, fmt.Errorf("river bench: variant %q: must be %q or %q", variant, VariantDefault, VariantTuned)
	}
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("river bench: dsn: %w", err)
	}
	cfg.MaxConns = int32(max(16, workers/4))
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("river bench: connect: %w", err)
	}
	migrator, err := rivermigrate.New(riverpgxv5.New(pool), nil)
	if err == nil {
		_, err = migrator.Migrate(ctx, rivermigrate.DirectionUp, nil)
	}
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("river bench: migrate: %w", err)
	}
	insert, err := river.NewClient(riverpgxv5.New(pool), &river.Config{Logger: logger})
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("river bench: insert client: %w", err)
	}
	return &system{variant: variant, workers: workers, dsn: dsn, pool: pool, insert: insert, logger: logger}, nil
}

func (s *system) close() { s.pool.Close() }

func (s *system) Name() string    { return "river" }
func (s *system) Variant() string { return s.variant }

func (s *system) config() *river.Config {
	cfg := &river.Config{
		Logger: s.logger,
		Queues: map[string]river.QueueConfig{river.QueueDefault: {MaxWorkers: s.workers}},
	}
	if s.variant == VariantTuned {
		cfg.FetchCooldown = 5 * time.Millisecond
		cfg.FetchPollInterval = 5 * time.Millisecond
	}
	return cfg
}

// Settings are River's version and the knobs of the variant, for the results.
func (s *system) Settings() map[string]string {
	cfg := s.config()
	fc, fp := cfg.FetchCooldown, cfg.FetchPollInterval
	if fc == 0 {
		fc, fp = river.FetchCooldownDefault, river.FetchPollIntervalDefault
	}
	return map[string]string{
		"river_version":       riverVersion,
		"fetch_cooldown":      fc.String(),
		"fetch_poll_interval": fp.String(),
		"max_workers":         strconv.Itoa(s.workers),
		"insert":              "InsertManyFast",
	}
}

func (s *system) Databases() []bench.Database {
	return []bench.Database{{Name: "river", DSN: s.dsn, Schema: "public"}}
}

// Enqueue inserts the jobs with River's bulk insert (COPY).
func (s *system) Enqueue(ctx context.Context, jobs []bench.Args) error {
	params := make([]river.InsertManyParams, len(jobs))
	for i, a := range jobs {
		params[i] = river.InsertManyParams{Args: a}
	}
	_, err := s.insert.InsertManyFast(ctx, params)
	return err
}

// StartWorkers starts a working client whose handler works through led; a goroutine turns
// River's job_completed events into durable completions.
func (s *system) StartWorkers(ctx context.Context, led *bench.Ledger) error {
	workers := river.NewWorkers()
	river.AddWorker(workers, river.WorkFunc(func(ctx context.Context, j *river.Job[bench.Args]) error {
		return led.Work(ctx, j.Args.Seq)
	}))
	cfg := s.config()
	cfg.Workers = workers
	client, err := river.NewClient(riverpgxv5.New(s.pool), cfg)
	if err != nil {
		return fmt.Errorf("river bench: worker client: %w", err)
	}
	events, unsub := client.SubscribeConfig(&river.SubscribeConfig{ChanSize: subscriptionBuffer, Kinds: []river.EventKind{river.EventKindJobCompleted}})
	s.events.Go(func() {
		for ev := range events {
			var a bench.Args
			if err := json.Unmarshal(ev.Job.EncodedArgs, &a); err != nil {
				s.logger.Error("decode completed job's args", "job_id", ev.Job.ID, "err", err)
				continue
			}
			led.Completed(a.Seq)
		}
	})
	if err := client.Start(ctx); err != nil {
		unsub()
		s.events.Wait()
		return fmt.Errorf("river bench: start: %w", err)
	}
	s.mu.Lock()
	s.worker, s.unsub = client, unsub
	s.mu.Unlock()
	return nil
}

// Stop stops the working client gracefully and drains the completion events.
func (s *system) Stop(ctx context.Context) error {
	s.mu.Lock()
	client, unsub := s.worker, s.unsub
	s.worker = nil
	s.mu.Unlock()
	if client == nil {
		return nil
	}
	err := client.Stop(ctx)
	unsub() // closes the event channel once the client stopped sending
	s.events.Wait()
	if err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("river bench: stop: %w", err)
	}
	return err
}
