package router

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
	"time"

	"github.com/braidq/braid/engine"
	"github.com/braidq/braid/router/placement"
	"github.com/braidq/braid/shard"
)

// Defaults for Config fields left zero.
const (
	DefaultQueue            = "default"
	DefaultEnqueueTimeout   = 5 * time.Second
	DefaultPollInterval     = time.Second
	DefaultRedirectAttempts = 8
	DefaultRedirectBackoff  = 10 * time.Millisecond
	maxRedirectBackoff      = time.Second
)

// Config configures a Client. Zero fields take the defaults.
type Config struct {
	// Placement lists the shards a new queue may be placed on, with their weights and states
	// (DESIGN.md §3.1). Empty means every shard of the set, active, weight 1. Every shard listed
	// must be in the set.
	Placement []placement.Shard
	// Pins place the named queues on the given shard ids instead of hashing. Like hashing, they
	// choose a new queue's first home only: the directory routes a known queue.
	Pins map[string]int16
	// DefaultQueue is the queue of jobs whose options name none, default "default".
	DefaultQueue string
	// MaxArgsBytes bounds a job's args and metadata, checked for a whole batch before any
	// write; default 1 MiB. Keep it equal to the shards' engine limit.
	MaxArgsBytes int
	// EnqueueTimeout is braid's own timeout on each shard call (enqueues, job lookups and
	// operations, stats, dead letters); hitting it while the caller still waits counts against
	// the shard's breaker. Default 5s.
	EnqueueTimeout time.Duration
	// PollInterval is how often Start's loop polls the directory version, default 1s.
	PollInterval time.Duration
	// RedirectAttempts bounds the rounds of one insert call that end in redirects, default 8.
	RedirectAttempts int
	// RedirectBackoff is the first wait before retrying a redirected job whose home the
	// directory does not show as moved yet; it doubles per round (jittered, at most 1s).
	// Default 10ms.
	RedirectBackoff time.Duration
}

func (c Config) withDefaults() Config {
	c.DefaultQueue = cmp.Or(c.DefaultQueue, DefaultQueue)
	c.MaxArgsBytes = cmp.Or(c.MaxArgsBytes, 1<<20)
	c.EnqueueTimeout = cmp.Or(c.EnqueueTimeout, DefaultEnqueueTimeout)
	c.PollInterval = cmp.Or(c.PollInterval, DefaultPollInterval)
	c.RedirectAttempts = cmp.Or(c.RedirectAttempts, DefaultRedirectAttempts)
	c.RedirectBackoff = cmp.Or(c.RedirectBackoff, DefaultRedirectBackoff)
	return c
}

// Validate returns every problem of the configuration at once, each naming its field. It does
// not know the shard set: New also checks that Placement and Pins name shards of the set.
func (c Config) Validate() error {
	c = c.withDefaults()
	var errs []error
	bad := func(field string, value any, problem string) {
		errs = append(errs, &engine.ValidationError{Field: field, Value: value, Problem: problem})
	}
	seen := map[int16]int{}
	for i, s := range c.Placement {
		field := fmt.Sprintf("placement[%d]", i)
		if s.ID < 1 {
			bad(field+".id", int(s.ID), "must be 1..32767")
		}
		if j, dup := seen[s.ID]; dup {
			bad(field+".id", int(s.ID), fmt.Sprintf("duplicates placement[%d].id", j))
		}
		seen[s.ID] = i
		if !(s.Weight >= 0) {
			bad(field+".weight", s.Weight, "must be >= 0")
		}
	}
	for q, id := range c.Pins {
		if err := engine.ValidateQueue(q); err != nil {
			bad("pins", q, "queue names must be 1..128 characters of [A-Za-z0-9_.:-]")
		}
		if id < 1 {
			bad("pins."+q, int(id), "must be a shard id 1..32767")
		}
	}
	if err := engine.ValidateQueue(c.DefaultQueue); err != nil {
		bad("default_queue", c.DefaultQueue, "must be 1..128 characters of [A-Za-z0-9_.:-]")
	}
	if c.MaxArgsBytes < 2 {
		bad("max_args_bytes", c.MaxArgsBytes, "must be >= 2")
	}
	for _, d := range []struct {
		field string
		v     time.Duration
	}{{"enqueue_timeout", c.EnqueueTimeout}, {"poll_interval", c.PollInterval}, {"redirect_backoff", c.RedirectBackoff}} {
		if d.v < 0 {
			bad(d.field, d.v, "must be > 0")
		}
	}
	if c.RedirectAttempts < 1 {
		bad("redirect_attempts", c.RedirectAttempts, "must be >= 1")
	}
	return errors.Join(errs...)
}

// Deps are what a Client works with besides its Config. The caller opens and closes them; one
// shard set and one catalog serve every component of a process, so that each shard has one
// breaker.
type Deps struct {
	Shards  *shard.Set
	Catalog *Catalog
	Logger  *slog.Logger // default: discard
}

// Client is braid's producer client: it routes jobs to their queue's shard by the placement
// directory and offers one queue API over every shard. It is safe for concurrent use.
type Client struct {
	cfg    Config
	shards *shard.Set
	cat    *Catalog
	log    *slog.Logger
	dir    *dirCache
	poll   poller
}

// New returns a client over the shard set and the catalog. It does no I/O: the directory is
// read on first use, and kept fresh by redirects and by the loop Start runs.
func New(cfg Config, deps Deps) (*Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("router: %w", err)
	}
	if deps.Shards == nil || deps.Catalog == nil {
		return nil, errors.New("router: deps.Shards and deps.Catalog are required")
	}
	cfg = cfg.withDefaults()
	if len(cfg.Placement) == 0 {
		for _, id := range deps.Shards.IDs() {
			cfg.Placement = append(cfg.Placement, placement.Shard{ID: int16(id), Weight: 1}) //nolint:gosec // shard ids are 1..32767
		}
	}
	var errs []error
	for i, s := range cfg.Placement {
		if _, ok := deps.Shards.Get(int(s.ID)); !ok {
			errs = append(errs, fmt.Errorf("router: placement[%d]: shard %d is not in the shard set", i, s.ID))
		}
	}
	for q, id := range cfg.Pins {
		if _, ok := deps.Shards.Get(int(id)); !ok {
			errs = append(errs, fmt.Errorf("router: pins.%s: shard %d is not in the shard set", q, id))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	c := &Client{
		cfg:    cfg,
		shards: deps.Shards,
		cat:    deps.Catalog,
		log:    cmp.Or(deps.Logger, slog.New(slog.DiscardHandler)).With("component", "router"),
		dir:    newDirCache(),
	}
	c.poll = poller{interval: cfg.PollInterval, run: c.pollOnce}
	return c, nil
}

// Start launches the directory poll loop (about once per PollInterval: one index probe when
// nothing changed). A client works without it, refreshing only on redirects and unknown
// queues, but then learns of moves only when a shard refuses a job. Idempotent.
func (c *Client) Start(ctx context.Context) error { return c.poll.Start(ctx) }

// Stop ends the poll loop and waits for it (or for ctx). Idempotent; safe before Start.
func (c *Client) Stop(ctx context.Context) error { return c.poll.Stop(ctx) }

// pollOnce is one turn of the poll loop. A catalog that is down is logged once per outage;
// meanwhile known queues keep routing from the cache.
func (c *Client) pollOnce(ctx context.Context) {
	err := c.dir.refresh(ctx, c.cat)
	switch {
	case err == nil:
	case ctx.Err() != nil:
	case errors.Is(err, ErrCatalogUnavailable):
		c.log.Debug("directory poll failed; routing known queues from cache", "err", err)
	default:
		c.log.Warn("directory poll failed; routing known queues from cache", "err", err)
	}
}

// Refresh reads the directory changes from the catalog now.
func (c *Client) Refresh(ctx context.Context) error { return c.dir.refresh(ctx, c.cat) }

// Lookup returns the queue's entry as this client's directory cache has it.
func (c *Client) Lookup(queue string) (Entry, bool) { return c.dir.lookup(queue) }

// Directory returns every entry of this client's directory cache, ordered by queue, and the
// directory version they are complete up to. Worker nodes derive their claim units from it.
func (c *Client) Directory() (version int64, entries []Entry) {
	d := c.dir.snap.Load()
	entries = slices.SortedFunc(maps.Values(d.entries), func(a, b Entry) int { return strings.Compare(a.Queue, b.Queue) })
	return d.version, entries
}

// home returns the queue's directory entry: from the cache when known, else from the catalog,
// placing the queue first when it is new: its desired home by weighted rendezvous hashing (or
// pin), inserted first-writer-wins, then its fence created on the winner. A missing fence
// means "accepts", so a crash between the two steps leaves nothing to repair.
func (c *Client) home(ctx context.Context, queue string) (Entry, error) {
	if e, ok := c.dir.lookup(queue); ok {
		return e, nil
	}
	want, err := placement.Home(queue, c.cfg.Placement, c.cfg.Pins)
	if err != nil {
		return Entry{}, err
	}
	e, created, err := c.cat.Claim(ctx, queue, int(want))
	if err != nil {
		return Entry{}, err
	}
	c.dir.install(0, e)
	if created {
		s, err := c.shard(e.ShardID, queue)
		if err != nil {
			return Entry{}, err
		}
		if _, err := shard.Call(ctx, s, c.cfg.EnqueueTimeout, func(ctx context.Context) (engine.Fence, error) {
			return s.Engine().FenceCreate(ctx, queue, e.Epoch)
		}); err != nil {
			return Entry{}, fmt.Errorf("place queue %q on shard %d: %w", queue, e.ShardID, err)
		}
		c.log.Debug("queue placed", "queue", queue, "shard_id", e.ShardID, "desired", want)
	}
	return e, nil
}

// ShardNotConfiguredError says the directory places a queue (or a job id names a shard) that
// this client's shard set does not have: its configuration lags the cluster's.
type ShardNotConfiguredError struct {
	ShardID int
	Queue   string // empty for a job lookup
}

func (e *ShardNotConfiguredError) Error() string {
	if e.Queue == "" {
		return fmt.Sprintf("shard %d is not configured in this client", e.ShardID)
	}
	return fmt.Sprintf("queue %q lives on shard %d, which is not configured in this client", e.Queue, e.ShardID)
}

func (c *Client) shard(id int, queue string) (*shard.Shard, error) {
	s, ok := c.shards.Get(id)
	if !ok {
		return nil, &ShardNotConfiguredError{ShardID: id, Queue: queue}
	}
	return s, nil
}

// backoff is the jittered wait before redirect round n (0-based): uniform in [d/2, d] with
// d = base * 2^n, at most maxRedirectBackoff.
func backoff(n int, base time.Duration) time.Duration {
	d := base
	for range n {
		if d >= maxRedirectBackoff {
			break
		}
		d *= 2
	}
	d = min(d, maxRedirectBackoff)
	return d/2 + rand.N(d/2+1) //nolint:gosec // jitter, not a secret
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
