package shard

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	"golang.org/x/sync/errgroup"

	"github.com/braidq/braid/engine"
)

// MigrateReport is what migrating one shard did.
type MigrateReport struct {
	ShardID int
	Name    string
	Applied []int // versions applied by this run
	Current int   // the schema version afterwards
	Err     error // nil when the shard is migrated and its identity verified
}

// Migrate applies the engine's pending migrations to one shard and writes its identity on first
// run (or verifies it on later runs: a database of another shard is refused). It opens a pool
// of its own for the job and closes it.
func Migrate(ctx context.Context, cfg Config) (engine.MigrateResult, error) {
	if err := cfg.Validate(); err != nil {
		return engine.MigrateResult{}, fmt.Errorf("shard %d (%s): %w", cfg.ID, cfg.Name, err)
	}
	cfg = cfg.withDefaults()
	cfg.MaxConns, cfg.MinConns = 1, 0
	pool, err := newPool(ctx, cfg)
	if err != nil {
		return engine.MigrateResult{}, err
	}
	defer pool.Close()
	pingCtx, cancel := context.WithTimeout(ctx, cfg.ConnectTimeout)
	err = pool.Ping(pingCtx)
	cancel()
	if err != nil {
		return engine.MigrateResult{}, &UnavailableError{ShardID: cfg.ID, Name: cfg.Name, Err: fmt.Errorf("ping: %w", err)}
	}
	res, err := engine.Migrate(ctx, pool, engine.MigrateOptions{
		Schema:  cmp.Or(cfg.Engine.Schema, "braid"),
		ShardID: cfg.ID,
		Cluster: cfg.Cluster,
	})
	if err != nil {
		return res, fmt.Errorf("shard %d (%s): %w", cfg.ID, cfg.Name, err)
	}
	return res, nil
}

// MigrateAll migrates every configured shard concurrently and reports each, in the order of
// cfgs. One shard's failure does not stop the others; the error joins every failure.
func MigrateAll(ctx context.Context, cfgs []Config) ([]MigrateReport, error) {
	if err := ValidateAll(cfgs); err != nil {
		return nil, err
	}
	reports := make([]MigrateReport, len(cfgs))
	var (
		mu   sync.Mutex
		errs []error
		g    errgroup.Group
	)
	g.SetLimit(openLimit)
	for i, cfg := range cfgs {
		g.Go(func() error {
			res, err := Migrate(ctx, cfg)
			reports[i] = MigrateReport{ShardID: cfg.ID, Name: cfg.Name, Applied: res.Applied, Current: res.Current, Err: err}
			if err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
			return nil
		})
	}
	_ = g.Wait()
	slices.SortStableFunc(errs, func(a, b error) int { return cmp.Compare(a.Error(), b.Error()) })
	return reports, errors.Join(errs...)
}
