package configs

import (
	"cmp"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"time"

	"github.com/braidq/braid/router/placement"
)

// Defaults filled in by WithDefaults for fields left zero.
const (
	DefaultSchema           = "braid"
	DefaultWeight           = 1.0
	DefaultLanes            = 4
	DefaultMaxAttempts      = 25
	DefaultDeadline         = 5 * time.Minute
	DefaultMaxConns         = 20
	DefaultConnectTimeout   = 5 * time.Second
	DefaultStatementTimeout = 30 * time.Second
	DefaultEnqueueTimeout   = 5 * time.Second
)

// Config is the root configuration of a braid cluster (DESIGN.md §1).
//
// Zero fields mean "default" (see WithDefaults), except where a field's
// documentation says otherwise.
type Config struct {
	// Cluster is the braid cluster name, written into every shard's identity
	// row: [A-Za-z0-9_.-]{1,63}. Required.
	Cluster string `yaml:"cluster"`
	// Schema is the Postgres schema holding braid's tables on every shard and
	// on the catalog: a lowercase SQL identifier. Default "braid".
	Schema string `yaml:"schema"`
	// Shards are the PostgreSQL primaries. At least one must take new queues.
	Shards []Shard `yaml:"shards"`
	// Catalog says where the placement directory lives. Required.
	Catalog Catalog `yaml:"catalog"`
	// Placement overrides hashing.
	Placement Placement `yaml:"placement"`
	// Queues holds per-queue settings.
	Queues Queues `yaml:"queues"`
	// Pool sizes every shard's connection pool unless a shard overrides it.
	Pool Pool `yaml:"pool"`
	// Timeouts are braid's own timeouts around shard calls.
	Timeouts Timeouts `yaml:"timeouts"`
}

// Shard is one PostgreSQL primary.
type Shard struct {
	// ID is the stable shard id, 1..32767, unique. It is part of every job id
	// the shard creates, so it never changes.
	ID int `yaml:"id"`
	// Name is unique: [a-z0-9-]{1,63}.
	Name string `yaml:"name"`
	// DSN is a pgx connection string (URL or keyword/value form).
	DSN DSN `yaml:"dsn"`
	// Weight is the shard's relative share of new queues. nil means 1. An
	// active or joining shard needs a weight > 0; a draining one may have 0.
	Weight *float64 `yaml:"weight"`
	// State is joining, active (default) or draining.
	State string `yaml:"state"`
	// Pool overrides the root pool; its zero fields inherit the root's.
	Pool *Pool `yaml:"pool"`
}

// Catalog is where the placement directory lives: either on a shard (Shard,
// the shard's name; YAML `catalog: pg-a`) or in its own database (DSN; YAML
// `catalog: {dsn: ...}`). Exactly one is set.
type Catalog struct {
	Shard string
	DSN   DSN
}

// Placement holds the overrides of hashed placement.
type Placement struct {
	// Pins maps a queue name to the name of the shard that must host it.
	Pins map[string]string `yaml:"pins"`
}

// Queues holds the settings every queue gets, and per-queue overrides.
type Queues struct {
	Default QueueSettings `yaml:"default"`
	// Overrides by queue name; their zero fields inherit Default.
	Overrides map[string]QueueSettings `yaml:"overrides"`
}

// QueueSettings are a queue's settings as written in the file. Zero fields
// mean "inherit" (from Default, or from braid's defaults for Default itself).
type QueueSettings struct {
	// Lanes spreads a hot queue over this many FIFO lanes per priority, 1..256.
	Lanes int `yaml:"lanes"`
	// DLQ sends jobs that exhaust their attempts to the dead-letter table
	// instead of a failed row. nil inherits; the default is true.
	DLQ *bool `yaml:"dlq"`
	// MaxAttempts is how many attempts a job gets, >= 1.
	MaxAttempts int `yaml:"max_attempts"`
	// Deadline is how long a claimed attempt may run before it can be
	// rescued, unless it heartbeats.
	Deadline time.Duration `yaml:"deadline"`
}

// Queue is a queue's resolved settings.
type Queue struct {
	Lanes       int
	DLQ         bool
	MaxAttempts int
	Deadline    time.Duration
}

// Pool sizes a shard's connection pool.
type Pool struct {
	MaxConns int32 `yaml:"max_conns"`
	MinConns int32 `yaml:"min_conns"`
}

// Timeouts are braid's own timeouts around shard calls. Hitting one while the
// caller still waits counts against the shard's breaker.
type Timeouts struct {
	Connect   time.Duration `yaml:"connect"`
	Statement time.Duration `yaml:"statement"`
	Enqueue   time.Duration `yaml:"enqueue"`
}

// WithDefaults returns a copy of c with every zero field set to its default.
// It never modifies c, nor anything c points to.
func (c Config) WithDefaults() Config {
	c.Schema = cmp.Or(c.Schema, DefaultSchema)

	c.Pool.MaxConns = cmp.Or(c.Pool.MaxConns, DefaultMaxConns)

	c.Shards = slices.Clone(c.Shards)
	for i := range c.Shards {
		s := &c.Shards[i]
		if s.Weight == nil {
			w := DefaultWeight
			s.Weight = &w
		}
		s.State = cmp.Or(s.State, placement.StateActive.String())
		p := c.Pool
		if s.Pool != nil {
			p.MaxConns = cmp.Or(s.Pool.MaxConns, p.MaxConns)
			p.MinConns = cmp.Or(s.Pool.MinConns, p.MinConns)
		}
		s.Pool = &p
	}

	d := &c.Queues.Default
	d.Lanes = cmp.Or(d.Lanes, DefaultLanes)
	d.MaxAttempts = cmp.Or(d.MaxAttempts, DefaultMaxAttempts)
	d.Deadline = cmp.Or(d.Deadline, DefaultDeadline)
	if d.DLQ == nil {
		dlq := true
		d.DLQ = &dlq
	}

	c.Timeouts.Connect = cmp.Or(c.Timeouts.Connect, DefaultConnectTimeout)
	c.Timeouts.Statement = cmp.Or(c.Timeouts.Statement, DefaultStatementTimeout)
	c.Timeouts.Enqueue = cmp.Or(c.Timeouts.Enqueue, DefaultEnqueueTimeout)
	return c
}

// Queue returns the resolved settings of the named queue: its override, if
// any, over the defaults. Call it on a Config that went through WithDefaults
// (Load and Parse return one).
func (q Queues) Queue(name string) Queue {
	d := q.Default
	o := q.Overrides[name]
	dlq := true
	switch {
	case o.DLQ != nil:
		dlq = *o.DLQ
	case d.DLQ != nil:
		dlq = *d.DLQ
	}
	return Queue{
		Lanes:       cmp.Or(o.Lanes, d.Lanes, DefaultLanes),
		DLQ:         dlq,
		MaxAttempts: cmp.Or(o.MaxAttempts, d.MaxAttempts, DefaultMaxAttempts),
		Deadline:    cmp.Or(o.Deadline, d.Deadline, DefaultDeadline),
	}
}

// Placement returns the shard as placement sees it. The config must be
// valid: an unknown state reads as draining, so it never gets new queues.
func (s Shard) Placement() placement.Shard {
	state, err := placement.ParseState(cmp.Or(s.State, placement.StateActive.String()))
	if err != nil {
		state = placement.StateDraining
	}
	w := DefaultWeight
	if s.Weight != nil {
		w = *s.Weight
	}
	return placement.Shard{ID: int16(s.ID), Weight: w, State: state} //nolint:gosec // ID is validated to 1..32767
}

// PlacementShards returns every shard as placement sees it.
func (c Config) PlacementShards() []placement.Shard {
	out := make([]placement.Shard, len(c.Shards))
	for i, s := range c.Shards {
		out[i] = s.Placement()
	}
	return out
}

// PinnedShardIDs returns the pins with shard names resolved to IDs. A pin to
// an unknown shard (only possible in an invalid config) is left out.
func (c Config) PinnedShardIDs() map[string]int16 {
	ids := make(map[string]int16, len(c.Shards))
	for _, s := range c.Shards {
		ids[s.Name] = int16(s.ID) //nolint:gosec // ID is validated to 1..32767
	}
	out := make(map[string]int16, len(c.Placement.Pins))
	for _, queue := range slices.Sorted(maps.Keys(c.Placement.Pins)) {
		if id, ok := ids[c.Placement.Pins[queue]]; ok {
			out[queue] = id
		}
	}
	return out
}

// LogValue logs a shard without its password.
func (s Shard) LogValue() slog.Value {
	attrs := []slog.Attr{
		slog.Int("shard_id", s.ID),
		slog.String("name", s.Name),
		slog.String("dsn", s.DSN.String()),
		slog.String("state", s.State),
	}
	if s.Weight != nil {
		attrs = append(attrs, slog.Float64("weight", *s.Weight))
	}
	return slog.GroupValue(attrs...)
}

// DSN is a connection string. It prints, logs and marshals redacted; convert
// it with string(dsn) only to connect.
type DSN string

// String returns the DSN with its password replaced by xxxxx.
func (d DSN) String() string { return RedactDSN(string(d)) }

// GoString keeps %#v from printing the password.
func (d DSN) GoString() string { return strconv.Quote(RedactDSN(string(d))) }

// LogValue keeps slog from printing the password.
func (d DSN) LogValue() slog.Value { return slog.StringValue(RedactDSN(string(d))) }

// MarshalText keeps encoders (JSON, YAML) from writing the password.
func (d DSN) MarshalText() ([]byte, error) { return []byte(RedactDSN(string(d))), nil }
