package shard

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/sony/gobreaker/v2"

	"github.com/braidq/braid/engine"
	"github.com/braidq/braid/health"
)

// Defaults for Config fields left zero.
const (
	DefaultMaxConns       = 20
	DefaultConnectTimeout = 5 * time.Second
)

// Config configures one shard handle. Zero fields take the defaults.
type Config struct {
	ID      int    // the stable shard id, 1..32767; must match the database's identity
	Name    string // [a-z0-9-]{1,63}, for logs and errors
	DSN     string // a pgx connection string; never printed
	Cluster string // the braid cluster name; must match the database's identity

	MaxConns       int32         // pool size, default 20
	MinConns       int32         // connections kept open, default 0
	ConnectTimeout time.Duration // bounds each new connection and the ping at Open, default 5s

	// Breaker tunes the shard's circuit breaker.
	Breaker health.BreakerSettings
	// Engine configures the shard's engine: schema (default braid), queue defaults, limits.
	// Open sets Engine.Expect from ID and Cluster.
	Engine engine.Config
}

var namePattern = regexp.MustCompile(`^[a-z0-9-]{1,63}$`)

func (c Config) withDefaults() Config {
	c.MaxConns = cmp.Or(c.MaxConns, DefaultMaxConns)
	c.ConnectTimeout = cmp.Or(c.ConnectTimeout, DefaultConnectTimeout)
	return c
}

// Validate returns every problem of the configuration at once, each naming its field.
func (c Config) Validate() error { return errors.Join(c.problems("")...) }

// problems lists what is wrong with c, each problem's field prefixed with prefix.
func (c Config) problems(prefix string) []error {
	c = c.withDefaults()
	var errs []error
	bad := func(field string, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s%s: "+format, append([]any{prefix, field}, args...)...))
	}
	if c.ID < 1 || c.ID > 32767 {
		bad("id", "%d must be 1..32767", c.ID)
	}
	if !namePattern.MatchString(c.Name) {
		bad("name", "%q must match [a-z0-9-]{1,63}", c.Name)
	}
	if c.DSN == "" {
		bad("dsn", "required")
	} else if _, err := pgxpool.ParseConfig(c.DSN); err != nil {
		bad("dsn", "cannot be parsed (details withheld: they could show the password)")
	}
	if c.Cluster == "" {
		bad("cluster", "required")
	}
	if c.MaxConns < 1 {
		bad("max_conns", "%d must be >= 1", c.MaxConns)
	}
	if c.MinConns < 0 || c.MinConns > c.MaxConns {
		bad("min_conns", "%d must be 0..max_conns (%d)", c.MinConns, c.MaxConns)
	}
	if c.ConnectTimeout < 0 {
		bad("connect_timeout", "%s must be > 0", c.ConnectTimeout)
	}
	if c.Engine.Expect != nil {
		bad("engine.expect", "must be left nil: Open checks the identity against id and cluster")
	}
	if err := c.Engine.Validate(); err != nil {
		var joined interface{ Unwrap() []error }
		if errors.As(err, &joined) {
			for _, e := range joined.Unwrap() {
				bad("engine", "%w", e)
			}
		} else {
			bad("engine", "%w", err)
		}
	}
	return errs
}

// Deps are what a shard handle needs besides its Config.
type Deps struct {
	Logger *slog.Logger // default: discard
}

func (d Deps) logger() *slog.Logger {
	return cmp.Or(d.Logger, slog.New(slog.DiscardHandler))
}

// Shard is one open shard: its pool, its engine and its circuit breaker. It is safe for
// concurrent use.
type Shard struct {
	id      int
	name    string
	pool    *pgxpool.Pool
	eng     *engine.Engine
	breaker *gobreaker.CircuitBreaker[struct{}]
	log     *slog.Logger
}

// Open connects to the shard, pings it (a pool connects lazily; Open must not report a shard
// it could not reach as open), checks the database's identity against cfg.ID and cfg.Cluster,
// and opens its engine. A shard that cannot be reached returns *UnavailableError; one whose
// identity differs returns an error wrapping *engine.IdentityError.
func Open(ctx context.Context, cfg Config, deps Deps) (*Shard, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("shard %d (%s): %w", cfg.ID, cfg.Name, err)
	}
	cfg = cfg.withDefaults()
	log := deps.logger().With("component", "shard", "shard_id", cfg.ID, "shard", cfg.Name)

	pool, err := newPool(ctx, cfg)
	if err != nil {
		return nil, err
	}
	pingCtx, cancel := context.WithTimeout(ctx, cfg.ConnectTimeout)
	defer cancel()
	if err := pool.Ping(pingCtx); err != nil {
		pool.Close()
		return nil, &UnavailableError{ShardID: cfg.ID, Name: cfg.Name, Err: fmt.Errorf("ping: %w", err)}
	}
	ecfg := cfg.Engine
	ecfg.Expect = &engine.Identity{ShardID: cfg.ID, Cluster: cfg.Cluster}
	eng, err := engine.Open(pingCtx, pool, ecfg)
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("shard %d (%s): %w", cfg.ID, cfg.Name, err)
	}

	s := &Shard{id: cfg.ID, name: cfg.Name, pool: pool, eng: eng, log: log}
	bs := cfg.Breaker
	user := bs.OnStateChange
	bs.OnStateChange = func(name string, from, to gobreaker.State) {
		// Runs under the breaker's lock: log only, never call back into the breaker.
		level := slog.LevelInfo
		if to == gobreaker.StateOpen {
			level = slog.LevelWarn
		}
		log.Log(context.Background(), level, "shard breaker state changed", "from", from.String(), "to", to.String())
		if user != nil {
			user(name, from, to)
		}
	}
	s.breaker = health.NewBreaker[struct{}](fmt.Sprintf("shard-%d", cfg.ID), bs)
	log.Debug("shard open", "schema", eng.Schema())
	return s, nil
}

// newPool builds the shard's pool without connecting.
func newPool(ctx context.Context, cfg Config) (*pgxpool.Pool, error) {
	pcfg, err := pgxpool.ParseConfig(cfg.DSN)
	if err != nil {
		// pgx redacts the password from its message only on a best-effort basis.
		return nil, fmt.Errorf("shard %d (%s): dsn cannot be parsed", cfg.ID, cfg.Name)
	}
	pcfg.MaxConns = cfg.MaxConns
	pcfg.MinConns = cfg.MinConns
	pcfg.ConnConfig.ConnectTimeout = cfg.ConnectTimeout
	if _, ok := pcfg.ConnConfig.RuntimeParams["application_name"]; !ok {
		pcfg.ConnConfig.RuntimeParams["application_name"] = "braid"
	}
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return nil, fmt.Errorf("shard %d (%s): new pool: %w", cfg.ID, cfg.Name, err)
	}
	return pool, nil
}

// ID returns the shard id.
func (s *Shard) ID() int { return s.id }

// Name returns the shard's configured name.
func (s *Shard) Name() string { return s.name }

// Engine returns the shard's engine. Call its operations through Call, so the breaker sees
// their outcomes.
func (s *Shard) Engine() *engine.Engine { return s.eng }

// Pool returns the shard's connection pool (for a catalog that lives on this shard, and for
// callers that begin their own transactions).
func (s *Shard) Pool() *pgxpool.Pool { return s.pool }

// BreakerState returns the state of the shard's circuit breaker.
func (s *Shard) BreakerState() gobreaker.State { return s.breaker.State() }

// Close closes the pool. In-flight calls end with an error.
func (s *Shard) Close() { s.pool.Close() }

// Call runs fn against the shard through its circuit breaker, for a caller whose context is
// ctx. When timeout > 0, fn gets a context bounded by braid's own deadline (derived from ctx):
// hitting it while ctx is still alive counts against the shard, while an error that arrives
// after ctx is done does not count at all (health.Run). Redirects are not counted either.
//
// An open breaker fails fast and an infrastructure error (health.IsInfraError) fails after
// trying; both return *UnavailableError naming the shard. Every other error is returned as fn
// returned it.
func Call[T any](ctx context.Context, s *Shard, timeout time.Duration, fn func(ctx context.Context) (T, error)) (T, error) {
	var out T
	_, err := health.Run(ctx, s.breaker, func() (struct{}, error) {
		opCtx := ctx
		if timeout > 0 {
			var cancel context.CancelFunc
			opCtx, cancel = context.WithTimeout(ctx, timeout)
			defer cancel()
		}
		v, err := fn(opCtx)
		out = v
		return struct{}{}, err
	})
	if err == nil {
		return out, nil
	}
	if errors.Is(err, gobreaker.ErrOpenState) || errors.Is(err, gobreaker.ErrTooManyRequests) ||
		(ctx.Err() == nil && health.IsInfraError(err)) {
		return out, &UnavailableError{ShardID: s.id, Name: s.name, Err: err}
	}
	return out, err
}
