package engine

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"regexp"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Config configures an Engine. Zero values take the defaults.
type Config struct {
	Schema string // the engine schema, default "braid"

	// Defaults for a queue's settings row, written on the queue's first enqueue.
	Lanes       int           // lanes per queue, default 4, 1..256
	DisableDLQ  bool          // exhausted jobs become failed instead of dead-lettered
	MaxAttempts int           // default 25
	Deadline    time.Duration // claim batch deadline, default 5m

	MaxArgsBytes int    // largest args (and metadata) document, default 1 MiB
	Node         string // recorded in claim batches as the claiming node, default "engine"

	// Expect, when set, must match the database's identity row or Open refuses.
	Expect *Identity
}

const defaultMaxArgsBytes = 1 << 20

func (c Config) withDefaults() Config {
	c.Schema = cmp.Or(c.Schema, "braid")
	c.Lanes = cmp.Or(c.Lanes, 4)
	c.MaxAttempts = cmp.Or(c.MaxAttempts, 25)
	c.Deadline = cmp.Or(c.Deadline, 5*time.Minute)
	c.MaxArgsBytes = cmp.Or(c.MaxArgsBytes, defaultMaxArgsBytes)
	c.Node = cmp.Or(c.Node, "engine")
	return c
}

// Validate returns every problem of the configuration at once.
func (c Config) Validate() error {
	c = c.withDefaults()
	var errs []error
	errs = append(errs, ValidateSchema(c.Schema))
	if c.Lanes < 1 || c.Lanes > 256 {
		errs = append(errs, &ValidationError{Field: "lanes", Value: c.Lanes, Problem: "must be 1..256"})
	}
	if c.MaxAttempts < 1 {
		errs = append(errs, &ValidationError{Field: "max_attempts", Value: c.MaxAttempts, Problem: "must be >= 1"})
	}
	if c.Deadline <= 0 {
		errs = append(errs, &ValidationError{Field: "deadline", Value: c.Deadline, Problem: "must be > 0"})
	}
	if c.MaxArgsBytes < 2 {
		errs = append(errs, &ValidationError{Field: "max_args_bytes", Value: c.MaxArgsBytes, Problem: "must be >= 2"})
	}
	return errors.Join(errs...)
}

// Identity is what a shard's database says it is.
type Identity struct {
	ShardID   int
	Cluster   string
	CreatedAt time.Time
}

var clusterName = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,63}$`)

func (id Identity) validate() error {
	var errs []error
	if id.ShardID < 1 || id.ShardID > 32767 {
		errs = append(errs, &ValidationError{Field: "shard_id", Value: id.ShardID, Problem: "must be 1..32767"})
	}
	if !clusterName.MatchString(id.Cluster) {
		errs = append(errs, &ValidationError{Field: "cluster", Value: id.Cluster, Problem: "must be 1..63 characters of [A-Za-z0-9_.-]"})
	}
	return errors.Join(errs...)
}

// Engine is one shard's segmented queue engine. It is safe for concurrent use.
type Engine struct {
	pool *pgxpool.Pool
	cfg  Config
	id   Identity
	sql  statements
}

// Open returns an engine over a migrated schema. It refuses a schema that is not at this
// binary's version, a database without identity, and one whose identity differs from
// cfg.Expect.
func Open(ctx context.Context, pool *pgxpool.Pool, cfg Config) (*Engine, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	all, err := Migrations()
	if err != nil {
		return nil, err
	}
	var version int
	if err := pool.QueryRow(ctx, inSchema(`SELECT coalesce(max(version), 0) FROM braid.schema_migration`, cfg.Schema)).Scan(&version); err != nil {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == "42P01" {
			return nil, fmt.Errorf("open engine: schema %s is not migrated (run braid migrate)", cfg.Schema)
		}
		return nil, fmt.Errorf("open engine: read schema version: %w", err)
	}
	if version != len(all) {
		return nil, fmt.Errorf("open engine: schema %s is at version %d, this binary needs %d (run braid migrate)", cfg.Schema, version, len(all))
	}
	var id Identity
	err = pool.QueryRow(ctx, inSchema(`SELECT shard_id, cluster, created_at FROM braid.identity`, cfg.Schema)).Scan(&id.ShardID, &id.Cluster, &id.CreatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("open engine: schema %s has no shard identity (run braid migrate)", cfg.Schema)
	}
	if err != nil {
		return nil, fmt.Errorf("open engine: read identity: %w", err)
	}
	if cfg.Expect != nil && (cfg.Expect.ShardID != id.ShardID || cfg.Expect.Cluster != id.Cluster) {
		return nil, &IdentityError{Want: *cfg.Expect, Got: id}
	}
	return &Engine{pool: pool, cfg: cfg, id: id, sql: newStatements(cfg.Schema)}, nil
}

// Identity returns the shard identity read at Open.
func (e *Engine) Identity() Identity { return e.id }

// ShardOfTx reads the shard id of the database a caller's transaction runs on, through that
// transaction: so a caller can check its transaction is on this shard before EnqueueTx.
func (e *Engine) ShardOfTx(ctx context.Context, tx pgx.Tx) (int, error) {
	var id int
	if err := tx.QueryRow(ctx, e.sql.identityShard).Scan(&id); err != nil {
		return 0, fmt.Errorf("read the transaction's shard identity (is it on a braid shard?): %w", err)
	}
	return id, nil
}

// Schema returns the engine's schema name.
func (e *Engine) Schema() string { return e.cfg.Schema }

// ReadyChannel is the LISTEN channel that enqueues notify with the queue name as payload.
func (e *Engine) ReadyChannel() string { return e.cfg.Schema + ".ready" }

// statements holds the engine's SQL with the schema substituted, built once at Open.
type statements struct {
	enqueue, claim, completeFast, counts, jobGet, queueConfigure, identityShard string

	fail, snooze, heartbeat, rehome, cancel, retry, promote, rescue string

	deadLetterList, deadLetterRetry, deadLetterPurge, deadLetterTrim string

	leaseAcquire, leaseRenew, leaseCheck, ringRotate, claimSlotPrune, queueSlotPrune, counterFold string
}

func newStatements(schema string) statements {
	return statements{
		enqueue:        inSchema(`SELECT ord, job_id, duplicate_of, deferred FROM braid.job_enqueue($1, $2, $3, $4, $5::text[]::jsonb[], $6::text[]::jsonb[], $7, $8, $9, $10, $11, $12, $13, $14)`, schema),
		claim:          inSchema(`SELECT * FROM braid.job_claim($1, $2, $3, $4, $5)`, schema),
		completeFast:   inSchema(`SELECT braid.job_complete_fast($1, $2, $3, $4, $5)`, schema),
		counts:         inSchema(`SELECT * FROM braid.queue_counts($1)`, schema),
		jobGet:         inSchema(`SELECT * FROM braid.job_get($1)`, schema),
		queueConfigure: inSchema(queueConfigureSQL, schema),
		identityShard:  inSchema(`SELECT shard_id FROM braid.identity`, schema),

		fail:      inSchema(`SELECT * FROM braid.job_fail($1, $2, $3, $4, $5::text[]::jsonb[], $6, $7, $8)`, schema),
		snooze:    inSchema(`SELECT braid.job_snooze($1, $2, $3, $4, $5, $6)`, schema),
		heartbeat: inSchema(`SELECT * FROM braid.job_heartbeat($1, $2, $3, $4, $5::text[]::jsonb[], $6)`, schema),
		rehome:    inSchema(`SELECT braid.job_rehome($1, $2, $3)`, schema),
		cancel:    inSchema(`SELECT * FROM braid.job_cancel($1, $2, $3)`, schema),
		retry:     inSchema(`SELECT * FROM braid.job_retry($1, $2)`, schema),
		promote:   inSchema(`SELECT braid.job_promote($1, $2)`, schema),
		rescue:    inSchema(`SELECT * FROM braid.job_rescue($1, $2, $3)`, schema),

		deadLetterList:  inSchema(`SELECT * FROM braid.dead_letter_list($1, $2, $3, $4)`, schema),
		deadLetterRetry: inSchema(`SELECT * FROM braid.dead_letter_retry($1, $2)`, schema),
		deadLetterPurge: inSchema(`SELECT braid.dead_letter_purge($1)`, schema),
		deadLetterTrim:  inSchema(`SELECT braid.dead_letter_trim($1, $2, $3)`, schema),

		leaseAcquire: inSchema(`SELECT braid.maintenance_lease_acquire($1, $2)`, schema),
		leaseRenew:   inSchema(`SELECT braid.maintenance_lease_renew($1, $2, $3)`, schema),
		leaseCheck:   inSchema(`SELECT braid.maintenance_lease_check($1, $2)`, schema),
		ringRotate:   inSchema(`SELECT * FROM braid.ring_rotate($1, $2, $3)`, schema),

		claimSlotPrune: inSchema(`SELECT * FROM braid.claim_slot_prune($1)`, schema),
		queueSlotPrune: inSchema(`SELECT * FROM braid.queue_slot_prune($1)`, schema),
		counterFold:    inSchema(`SELECT * FROM braid.counter_fold($1)`, schema),
	}
}

// dbtx is what the engine needs from a pool or a caller's transaction.
type dbtx interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}
