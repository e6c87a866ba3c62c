package node

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"time"

	"go.opentelemetry.io/otel/metric"

	"github.com/braidq/braid/engine"
	"github.com/braidq/braid/router"
	"github.com/braidq/braid/router/membership"
	"github.com/braidq/braid/router/worker"
	"github.com/braidq/braid/shard"
)

// Roles a node can take.
const (
	RoleWorker      = "worker"      // claims and runs jobs of its queues
	RoleMaintenance = "maintenance" // may be elected to run a shard's Maintainer
)

// Defaults for Config fields left zero.
const (
	DefaultMaxWorkers        = 100
	DefaultOwners            = 1
	DefaultClaimBatch        = 256
	DefaultClaimCooldown     = 5 * time.Millisecond
	DefaultPollInterval      = time.Second
	DefaultSettle            = time.Second
	DefaultDirectoryInterval = time.Second
	DefaultQueuesInterval    = 5 * time.Second
	DefaultCallTimeout       = 5 * time.Second
	DefaultJobTimeout        = time.Minute
	DefaultFlushReserve      = time.Second
)

// QueueConfig is how a node works one queue.
type QueueConfig struct {
	// MaxWorkers bounds this node's handlers of the queue at once, default (and at most) the
	// node's MaxWorkers. A limit across nodes belongs in the shard, not here (DESIGN.md §4).
	MaxWorkers int
}

// Config configures a Node. Zero fields take the defaults.
type Config struct {
	// ID names the node; its memberlist name is ID plus a random suffix.
	ID string
	// Roles the node takes, default worker and maintenance.
	Roles []string
	// Queues are the queues this node has workers for (required for the worker role).
	Queues map[string]QueueConfig
	// MaxWorkers bounds the node's handlers at once across queues; it is also the node's
	// capacity, the weight of its share of claim units. Default 100.
	MaxWorkers int
	// Owners is how many live nodes own each claim unit (shard, queue, lane) at once: the
	// unit's top-k by rendezvous hash. Default 1.
	Owners int
	// ClaimBatch bounds one claim; a claim asks for min(free slots, ClaimBatch). Default 256.
	ClaimBatch int
	// ClaimCooldown is how long a claim loop that ran out of free slots waits after the first
	// one is released, so that it claims a batch instead of one job per freed slot. Default 5ms.
	ClaimCooldown time.Duration
	// PollInterval is how often a claim loop polls without a wake-up. Default 1s.
	PollInterval time.Duration
	// Settle is how long a unit must stay this node's before its loop starts (lost units are
	// released at once). Default 1s.
	Settle time.Duration
	// DirectoryInterval is how often the directory is re-read from the catalog. Default 1s.
	DirectoryInterval time.Duration
	// QueuesInterval is how often each shard's queues (and lane counts) are re-read. Default 5s.
	QueuesInterval time.Duration
	// CallTimeout is braid's timeout on each claim call. Default 5s.
	CallTimeout time.Duration
	// JobTimeout is the handler timeout of workers that do not set their own. Default 1m.
	JobTimeout time.Duration
	// FlushReserve is the part of Stop's deadline kept for handing back unfinished attempts and
	// flushing acknowledgements after handlers are told to stop. Default 1s.
	FlushReserve time.Duration

	// Gossip configures membership; NodeID, Roles, Capacity and Queues are filled from the fields
	// above.
	Gossip membership.Config
	// Ack, Heartbeat and Maintenance configure the node's acknowledgement batcher, heartbeats and
	// the Maintainers it runs (Holder is the node's memberlist name).
	Ack         worker.AckerConfig
	Heartbeat   worker.HeartbeaterConfig
	Maintenance engine.MaintainerConfig
}

// Deps are what a Node works with besides its Config. The caller opens and closes them.
type Deps struct {
	Shards        *shard.Set
	Client        *router.Client       // the process's router client: its directory names the claim units
	Workers       *worker.Workers      // required for the worker role
	Logger        *slog.Logger         // default: discard
	MeterProvider metric.MeterProvider // default: no-op
	// OnAcked, when set, is told what became of every acknowledgement after its shard call
	// returned (for example, to count durable completions).
	OnAcked func([]worker.Acked)
}

func (c Config) withDefaults() Config {
	if c.Roles == nil {
		c.Roles = []string{RoleWorker, RoleMaintenance}
	}
	c.MaxWorkers = cmp.Or(c.MaxWorkers, DefaultMaxWorkers)
	c.Owners = cmp.Or(c.Owners, DefaultOwners)
	c.ClaimBatch = cmp.Or(c.ClaimBatch, DefaultClaimBatch)
	c.ClaimCooldown = cmp.Or(c.ClaimCooldown, DefaultClaimCooldown)
	c.PollInterval = cmp.Or(c.PollInterval, DefaultPollInterval)
	c.Settle = cmp.Or(c.Settle, DefaultSettle)
	c.DirectoryInterval = cmp.Or(c.DirectoryInterval, DefaultDirectoryInterval)
	c.QueuesInterval = cmp.Or(c.QueuesInterval, DefaultQueuesInterval)
	c.CallTimeout = cmp.Or(c.CallTimeout, DefaultCallTimeout)
	c.JobTimeout = cmp.Or(c.JobTimeout, DefaultJobTimeout)
	c.FlushReserve = cmp.Or(c.FlushReserve, DefaultFlushReserve)
	qs := make(map[string]QueueConfig, len(c.Queues))
	for name, q := range c.Queues {
		q.MaxWorkers = min(cmp.Or(q.MaxWorkers, c.MaxWorkers), c.MaxWorkers)
		qs[name] = q
	}
	c.Queues = qs
	c.Gossip.NodeID = c.ID
	c.Gossip.Roles = c.Roles
	c.Gossip.Capacity = c.MaxWorkers
	c.Gossip.Queues = slices.Sorted(maps.Keys(c.Queues))
	return c
}

// Validate reports every problem of the configuration (after defaults) at once.
func (c Config) Validate() error {
	c = c.withDefaults()
	var errs []error
	bad := func(field string, value any, problem string) {
		errs = append(errs, fmt.Errorf("node config: %s = %v: %s", field, value, problem))
	}
	for _, r := range c.Roles {
		if r != RoleWorker && r != RoleMaintenance {
			bad("roles", r, `must be "worker" or "maintenance"`)
		}
	}
	if len(c.Roles) == 0 {
		bad("roles", c.Roles, "a node needs at least one role")
	}
	if slices.Contains(c.Roles, RoleWorker) && len(c.Queues) == 0 {
		bad("queues", "{}", "a worker node must name the queues it works")
	}
	for name, q := range c.Queues {
		if err := engine.ValidateQueue(name); err != nil {
			bad("queues", name, err.Error())
		}
		if q.MaxWorkers < 1 {
			bad("queues."+name+".max_workers", q.MaxWorkers, "must be >= 1")
		}
	}
	for _, f := range []struct {
		name string
		v    int
	}{{"max_workers", c.MaxWorkers}, {"owners", c.Owners}, {"claim_batch", c.ClaimBatch}} {
		if f.v < 1 {
			bad(f.name, f.v, "must be >= 1")
		}
	}
	if c.ClaimBatch > 10000 {
		bad("claim_batch", c.ClaimBatch, "must be <= 10000")
	}
	for _, f := range []struct {
		name string
		v    time.Duration
	}{{"claim_cooldown", c.ClaimCooldown}, {"poll_interval", c.PollInterval}, {"settle", c.Settle}, {"directory_interval", c.DirectoryInterval},
		{"queues_interval", c.QueuesInterval}, {"call_timeout", c.CallTimeout}, {"job_timeout", c.JobTimeout},
		{"flush_reserve", c.FlushReserve}} {
		if f.v < 0 {
			bad(f.name, f.v, "must not be negative")
		}
	}
	if err := c.Gossip.Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
