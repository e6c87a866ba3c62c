package router

import (
	"cmp"
	"context"
	"embed"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/sony/gobreaker/v2"

	"github.com/braidq/braid/engine"
	"github.com/braidq/braid/health"
)

//go:embed migrations/*.sql
var catalogFS embed.FS

// CatalogMigrations returns the catalog's migration series ("catalog", recorded in the
// schema's catalog_migration table). It is applied by the engine's migration runner.
func CatalogMigrations() (engine.MigrationSet, error) {
	return engine.LoadMigrationSet("catalog", "catalog_migration", catalogFS, "migrations")
}

// MigrateCatalog applies the catalog's pending migrations to schema (default "braid") of the
// catalog database, under the schema's migration lock, in one transaction. The catalog may be
// a shard's database: the engine's and the catalog's series live side by side in the schema.
func MigrateCatalog(ctx context.Context, pool *pgxpool.Pool, schema string) (applied []int, current int, err error) {
	schema = cmp.Or(schema, "braid")
	set, err := CatalogMigrations()
	if err != nil {
		return nil, 0, err
	}
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		applied, current, err = engine.ApplyMigrations(ctx, tx, schema, set)
		return err
	})
	if err != nil {
		return nil, 0, fmt.Errorf("migrate catalog schema %s: %w", schema, err)
	}
	return applied, current, nil
}

// EntryState is the state of a queue's directory entry.
type EntryState string

const (
	// EntryActive: the queue lives on ShardID.
	EntryActive EntryState = "active"
	// EntryMoving: a move from DrainFrom to ShardID was decided; the rebalancer is changing
	// fences. Producers already send to ShardID.
	EntryMoving EntryState = "moving"
	// EntryDraining: the queue lives on ShardID; DrainFrom still holds jobs being drained.
	EntryDraining EntryState = "draining"
)

// Entry is one queue's directory entry.
type Entry struct {
	Queue     string
	ShardID   int   // where producers send the queue's jobs
	Epoch     int64 // grows with every move; fences carry it
	State     EntryState
	DrainFrom int   // the shard a move is draining, else 0
	Version   int64 // the directory version of the entry's last change
}

// CatalogConfig configures the catalog client. Zero fields take the defaults.
type CatalogConfig struct {
	Schema   string                 // default "braid"
	Timeout  time.Duration          // braid's timeout on each catalog call, default 5s
	MaxConns int32                  // the size of OpenCatalog's own pool, default 4
	Breaker  health.BreakerSettings // the catalog's circuit breaker
	Logger   *slog.Logger           // default: discard
}

// ErrCatalogUnavailable is wrapped by catalog calls refused by the catalog's open breaker or
// failed for an infrastructure reason. Known queues keep routing from the directory cache.
var ErrCatalogUnavailable = errors.New("catalog unavailable")

// ErrEpochConflict is wrapped by Catalog.Update when the entry's epoch is no longer the one
// the caller expected: another step changed it first.
var ErrEpochConflict = errors.New("epoch conflict")

// Catalog reads and writes the placement directory in the catalog database, through the
// catalog's one circuit breaker. It is safe for concurrent use.
type Catalog struct {
	pool      *pgxpool.Pool
	ownsPool  bool
	schema    string
	timeout   time.Duration
	breaker   *gobreaker.CircuitBreaker[struct{}]
	claimSQL  string
	sinceSQL  string
	updateSQL string
}

var schemaToken = regexp.MustCompile(`\bbraid\.`)

// NewCatalog returns the catalog over pool (a shard's pool when the catalog lives on a shard;
// the caller keeps owning it) after checking that the catalog schema is migrated to this
// binary's version.
func NewCatalog(ctx context.Context, pool *pgxpool.Pool, cfg CatalogConfig) (*Catalog, error) {
	cfg.Schema = cmp.Or(cfg.Schema, "braid")
	cfg.Timeout = cmp.Or(cfg.Timeout, 5*time.Second)
	var errs []error
	errs = append(errs, engine.ValidateSchema(cfg.Schema))
	if cfg.Timeout < 0 {
		errs = append(errs, &engine.ValidationError{Field: "timeout", Value: cfg.Timeout, Problem: "must be > 0"})
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("catalog: %w", err)
	}
	set, err := CatalogMigrations()
	if err != nil {
		return nil, err
	}
	checkCtx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	v, err := engine.MigrationVersion(checkCtx, pool, cfg.Schema, set)
	if err != nil {
		return nil, fmt.Errorf("catalog: %w", err)
	}
	if v != len(set.Migrations) {
		return nil, fmt.Errorf("catalog: schema %s is at catalog version %d, this binary needs %d (run braid migrate)", cfg.Schema, v, len(set.Migrations))
	}
	log := cmp.Or(cfg.Logger, slog.New(slog.DiscardHandler)).With("component", "catalog")
	bs := cfg.Breaker
	user := bs.OnStateChange
	bs.OnStateChange = func(name string, from, to gobreaker.State) {
		log.Warn("catalog breaker state changed", "from", from.String(), "to", to.String())
		if user != nil {
			user(name, from, to)
		}
	}
	in := func(sql string) string { return schemaToken.ReplaceAllLiteralString(sql, cfg.Schema+".") }
	return &Catalog{
		pool:      pool,
		schema:    cfg.Schema,
		timeout:   cfg.Timeout,
		breaker:   health.NewBreaker[struct{}]("catalog", bs),
		claimSQL:  in(`SELECT * FROM braid.directory_claim($1, $2)`),
		sinceSQL:  in(`SELECT * FROM braid.directory_since($1)`),
		updateSQL: in(`SELECT * FROM braid.directory_update($1, $2, $3, $4, $5, $6)`),
	}, nil
}

// OpenCatalog connects to a catalog database of its own (dsn), pings it and returns the
// catalog over a pool it owns: Close closes it.
func OpenCatalog(ctx context.Context, dsn string, cfg CatalogConfig) (*Catalog, error) {
	pcfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, errors.New("catalog: dsn cannot be parsed (details withheld: they could show the password)")
	}
	pcfg.MaxConns = cmp.Or(cfg.MaxConns, 4)
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return nil, fmt.Errorf("catalog: new pool: %w", err)
	}
	pingCtx, cancel := context.WithTimeout(ctx, cmp.Or(cfg.Timeout, 5*time.Second))
	defer cancel()
	if err := pool.Ping(pingCtx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("catalog: ping: %w: %w", ErrCatalogUnavailable, err)
	}
	c, err := NewCatalog(ctx, pool, cfg)
	if err != nil {
		pool.Close()
		return nil, err
	}
	c.ownsPool = true
	return c, nil
}

// Close closes the catalog's pool when OpenCatalog opened it; a pool given to NewCatalog stays
// open.
func (c *Catalog) Close() {
	if c.ownsPool {
		c.pool.Close()
	}
}

// BreakerState returns the state of the catalog's circuit breaker.
func (c *Catalog) BreakerState() gobreaker.State { return c.breaker.State() }

// call runs fn through the catalog's breaker with braid's timeout.
func (c *Catalog) call(ctx context.Context, op string, fn func(ctx context.Context) error) error {
	_, err := health.Run(ctx, c.breaker, func() (struct{}, error) {
		opCtx, cancel := context.WithTimeout(ctx, c.timeout)
		defer cancel()
		return struct{}{}, fn(opCtx)
	})
	if err == nil {
		return nil
	}
	var pgErr *pgconn.PgError
	switch {
	case errors.Is(err, gobreaker.ErrOpenState) || errors.Is(err, gobreaker.ErrTooManyRequests):
		return fmt.Errorf("catalog: %s: %w (circuit breaker open)", op, ErrCatalogUnavailable)
	case ctx.Err() == nil && health.IsInfraError(err):
		return fmt.Errorf("catalog: %s: %w: %w", op, ErrCatalogUnavailable, err)
	case errors.As(err, &pgErr) && (pgErr.Code == "42P01" || pgErr.Code == "42883"):
		return fmt.Errorf("catalog: %s: schema %s is not migrated (run braid migrate): %w", op, c.schema, err)
	}
	return fmt.Errorf("catalog: %s: %w", op, err)
}

// Claim returns the queue's directory entry, placing the queue on shardID when the directory
// does not know it yet (first writer wins). created says this call placed it.
func (c *Catalog) Claim(ctx context.Context, queue string, shardID int) (e Entry, created bool, err error) {
	if err := engine.ValidateQueue(queue); err != nil {
		return Entry{}, false, err
	}
	err = c.call(ctx, fmt.Sprintf("claim %q", queue), func(ctx context.Context) error {
		var err error
		e, created, err = scanEntry(c.pool.QueryRow(ctx, c.claimSQL, queue, int32(shardID))) //nolint:gosec // shard ids are 1..32767
		return err
	})
	return e, created, err
}

// Since returns the directory version and every entry changed after version (all of them for
// 0), read in one snapshot.
func (c *Catalog) Since(ctx context.Context, version int64) (current int64, changed []Entry, err error) {
	err = c.call(ctx, "read directory", func(ctx context.Context) error {
		changed = changed[:0]
		rows, err := c.pool.Query(ctx, c.sinceSQL, version)
		if err != nil {
			return err
		}
		var (
			queue     *string
			shardID   *int32
			epoch     *int64
			state     *string
			drainFrom *int32
			v         *int64
		)
		_, err = pgx.ForEachRow(rows, []any{&current, &queue, &shardID, &epoch, &state, &drainFrom, &v}, func() error {
			if queue == nil {
				return nil
			}
			e := Entry{Queue: *queue, ShardID: int(*shardID), Epoch: *epoch, State: EntryState(*state), Version: *v}
			if drainFrom != nil {
				e.DrainFrom = int(*drainFrom)
			}
			changed = append(changed, e)
			return nil
		})
		return err
	})
	return current, changed, err
}

// Update changes a queue's entry to next (shard, epoch, state, drain_from) if its epoch is
// still expectEpoch; next.Epoch may not be older. The rebalancer moves queues with it. A lost
// race returns the entry in force and an error wrapping ErrEpochConflict; an unknown queue
// returns engine.ErrNotFound.
func (c *Catalog) Update(ctx context.Context, queue string, expectEpoch int64, next Entry) (Entry, error) {
	var errs []error
	errs = append(errs, engine.ValidateQueue(queue))
	if next.ShardID < 1 || next.ShardID > 32767 {
		errs = append(errs, &engine.ValidationError{Field: "shard_id", Value: next.ShardID, Problem: "must be 1..32767"})
	}
	if next.Epoch < expectEpoch || next.Epoch < 1 {
		errs = append(errs, &engine.ValidationError{Field: "epoch", Value: next.Epoch, Problem: fmt.Sprintf("must be >= the expected epoch %d and >= 1", expectEpoch)})
	}
	switch next.State {
	case EntryActive:
		if next.DrainFrom != 0 {
			errs = append(errs, &engine.ValidationError{Field: "drain_from", Value: next.DrainFrom, Problem: "must be 0 for an active entry"})
		}
	case EntryMoving, EntryDraining:
		if next.DrainFrom < 1 || next.DrainFrom > 32767 || next.DrainFrom == next.ShardID {
			errs = append(errs, &engine.ValidationError{Field: "drain_from", Value: next.DrainFrom, Problem: "must be the source shard of the move"})
		}
	default:
		errs = append(errs, &engine.ValidationError{Field: "state", Value: string(next.State), Problem: "must be active, moving or draining"})
	}
	if err := errors.Join(errs...); err != nil {
		return Entry{}, err
	}
	var drainFrom *int32
	if next.DrainFrom != 0 {
		v := int32(next.DrainFrom) //nolint:gosec // validated above
		drainFrom = &v
	}
	var (
		e       Entry
		applied bool
	)
	err := c.call(ctx, fmt.Sprintf("update %q", queue), func(ctx context.Context) error {
		var err error
		e, applied, err = scanEntry(c.pool.QueryRow(ctx, c.updateSQL, queue, expectEpoch,
			int32(next.ShardID), next.Epoch, string(next.State), drainFrom)) //nolint:gosec // validated above
		return err
	})
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return Entry{}, fmt.Errorf("catalog: update %q: %w", queue, engine.ErrNotFound)
	case err != nil:
		return Entry{}, err
	case !applied:
		return e, fmt.Errorf("catalog: update %q: expected epoch %d, found %d: %w", queue, expectEpoch, e.Epoch, ErrEpochConflict)
	}
	return e, nil
}

func scanEntry(row pgx.Row) (Entry, bool, error) {
	var (
		e         Entry
		shardID   int32
		state     string
		drainFrom *int32
		flag      bool
	)
	if err := row.Scan(&e.Queue, &shardID, &e.Epoch, &state, &drainFrom, &e.Version, &flag); err != nil {
		return Entry{}, false, err
	}
	e.ShardID, e.State = int(shardID), EntryState(state)
	if drainFrom != nil {
		e.DrainFrom = int(*drainFrom)
	}
	return e, flag, nil
}
