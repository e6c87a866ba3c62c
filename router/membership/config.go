package membership

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"time"

	"github.com/hashicorp/memberlist"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"

	"github.com/braidq/braid/engine"
)

// Presets name memberlist timing profiles.
const (
	PresetLAN  = "lan"  // memberlist.DefaultLANConfig: production default
	PresetFast = "fast" // sub-second failure detection on loopback, for tests
)

// DefaultRejoinInterval is how often seeds are re-joined when
// Config.RejoinInterval is zero.
const DefaultRejoinInterval = 30 * time.Second

// Config configures a node's membership. The zero value is not valid:
// NodeID and Capacity are required.
type Config struct {
	NodeID   string   // required: 1..64 characters of [A-Za-z0-9_.-]
	Roles    []string // RoleWorker, RoleMaintenance
	Capacity int      // > 0: ownership weight
	Queues   []string // queues this node has workers for; empty = all

	Preset        string // PresetLAN (default) or PresetFast
	BindAddr      string // IP literal; default 127.0.0.1
	BindPort      int    // 0 = any free port
	AdvertiseAddr string // default: the bound address
	AdvertisePort int    // default: the bound port

	// Seeds are host:port addresses of other nodes. They are joined at Start
	// (one that does not answer is logged, not fatal) and again every
	// RejoinInterval, because memberlist never contacts a node it declared
	// dead: without re-joins a healed partition stays split.
	Seeds          []string
	RejoinInterval time.Duration // default DefaultRejoinInterval

	ClusterLabel  string // memberlist Label: packets of other clusters are refused
	SecretKey     []byte // 16, 24 or 32 bytes (AES); gossip is then encrypted and unencrypted peers refused
	AllowInsecure bool   // allow a non-loopback BindAddr without SecretKey

	// Transport optionally wraps the UDP/TCP transport, e.g. with a
	// PartitionTransport in chaos tests. The wrapper owns the transport it
	// is given and must shut it down in its own Shutdown.
	Transport func(memberlist.NodeAwareTransport) memberlist.NodeAwareTransport
}

// Deps are the node's injected dependencies; nil fields get no-op defaults.
type Deps struct {
	Logger        *slog.Logger         // default: discard
	MeterProvider metric.MeterProvider // default: no-op
}

const (
	defaultBindAddr = "127.0.0.1"
	maxNodeIDLen    = 64
)

var nodeIDPattern = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`)

func (c Config) withDefaults() Config {
	c.Preset = cmp.Or(c.Preset, PresetLAN)
	c.BindAddr = cmp.Or(c.BindAddr, defaultBindAddr)
	c.RejoinInterval = cmp.Or(c.RejoinInterval, DefaultRejoinInterval)
	return c
}

// Validate returns every problem of c at once, each naming the field and the
// bad value.
func (c Config) Validate() error {
	c = c.withDefaults()
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	if !nodeIDPattern.MatchString(c.NodeID) {
		bad("membership: NodeID %q: must be 1..%d characters of [A-Za-z0-9_.-]", c.NodeID, maxNodeIDLen)
	}
	for i, r := range c.Roles {
		if !slices.Contains(roles, r) {
			bad("membership: Roles[%d] %q: unknown role (want %q or %q)", i, r, RoleWorker, RoleMaintenance)
		} else if slices.Index(c.Roles, r) < i {
			bad("membership: Roles[%d] %q: listed twice", i, r)
		}
	}
	if c.Capacity <= 0 {
		bad("membership: Capacity %d: must be > 0", c.Capacity)
	}
	for i, q := range c.Queues {
		if err := engine.ValidateQueue(q); err != nil {
			bad("membership: Queues[%d]: %w", i, err)
		} else if slices.Index(c.Queues, q) < i {
			bad("membership: Queues[%d] %q: listed twice", i, q)
		}
	}
	if n := c.maxMetaSize(); n > memberlist.MetaMaxSize {
		bad("membership: NodeID, Roles and Queues (%d queues) encode to %d bytes of node meta, over memberlist's limit of %d: list fewer queues or none (serves every queue)",
			len(c.Queues), n, memberlist.MetaMaxSize)
	}
	if c.Preset != PresetLAN && c.Preset != PresetFast {
		bad("membership: Preset %q: want %q or %q", c.Preset, PresetLAN, PresetFast)
	}
	bindIP, err := netip.ParseAddr(c.BindAddr)
	if err != nil {
		bad("membership: BindAddr %q: must be an IP address", c.BindAddr)
	} else if !bindIP.IsLoopback() && len(c.SecretKey) == 0 && !c.AllowInsecure {
		bad("membership: BindAddr %q is beyond loopback without SecretKey: set SecretKey to encrypt gossip, or AllowInsecure", c.BindAddr)
	}
	if c.BindPort < 0 || c.BindPort > 65535 {
		bad("membership: BindPort %d: must be 0..65535", c.BindPort)
	}
	if c.AdvertiseAddr != "" {
		if _, err := netip.ParseAddr(c.AdvertiseAddr); err != nil {
			bad("membership: AdvertiseAddr %q: must be an IP address", c.AdvertiseAddr)
		}
	}
	if c.AdvertisePort < 0 || c.AdvertisePort > 65535 {
		bad("membership: AdvertisePort %d: must be 0..65535", c.AdvertisePort)
	}
	for i, s := range c.Seeds {
		host, port, err := net.SplitHostPort(s)
		if err != nil {
			bad("membership: Seeds[%d] %q: want host:port", i, s)
			continue
		}
		if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 || host == "" {
			bad("membership: Seeds[%d] %q: want host:port with a port of 1..65535", i, s)
		}
	}
	if c.RejoinInterval < 0 {
		bad("membership: RejoinInterval %s: must not be negative", c.RejoinInterval)
	}
	if len(c.ClusterLabel) > memberlist.LabelMaxSize {
		bad("membership: ClusterLabel of %d bytes: at most %d", len(c.ClusterLabel), memberlist.LabelMaxSize)
	}
	if n := len(c.SecretKey); n != 0 && n != 16 && n != 24 && n != 32 {
		bad("membership: SecretKey of %d bytes: want 16, 24 or 32", n)
	}
	return errors.Join(errs...)
}

// maxMetaSize is the size of the node's meta in its longest state.
func (c Config) maxMetaSize() int {
	n := 0
	for _, s := range states {
		n = max(n, len(encodeMeta(Member{NodeID: c.NodeID, Roles: c.Roles, State: s, Capacity: c.Capacity, Queues: c.Queues})))
	}
	return n
}

// memberlistConfig returns the memberlist settings of c's preset with the
// node's identity and security applied; the caller adds the transport,
// delegates and logger.
func (c Config) memberlistConfig(name string) *memberlist.Config {
	var mc *memberlist.Config
	switch c.Preset {
	case PresetFast:
		mc = fastConfig()
	default:
		mc = memberlist.DefaultLANConfig()
	}
	mc.Name = name
	mc.BindAddr = c.BindAddr
	mc.BindPort = c.BindPort
	mc.AdvertiseAddr = c.AdvertiseAddr
	mc.AdvertisePort = c.AdvertisePort
	mc.Label = c.ClusterLabel
	mc.SecretKey = slices.Clone(c.SecretKey)
	return mc
}

// fastConfig detects a crashed node in well under a second on an idle
// loopback: probe every 100ms, a 300ms suspicion floor (3 × interval) that
// grows to at most 600ms when no other node confirms. It is too eager for a
// real network, where a slow ack would mark a healthy node dead.
func fastConfig() *memberlist.Config {
	mc := memberlist.DefaultLocalConfig()
	mc.TCPTimeout = 500 * time.Millisecond
	mc.ProbeInterval = 100 * time.Millisecond
	mc.ProbeTimeout = 80 * time.Millisecond
	mc.SuspicionMult = 3
	mc.SuspicionMaxTimeoutMult = 2
	mc.GossipInterval = 20 * time.Millisecond
	mc.GossipToTheDeadTime = time.Second
	mc.PushPullInterval = time.Second
	return mc
}

// withDefaults fills d's defaults.
func (d Deps) withDefaults() Deps {
	d.Logger = cmp.Or(d.Logger, slog.New(slog.DiscardHandler))
	if d.MeterProvider == nil {
		d.MeterProvider = noop.NewMeterProvider()
	}
	return d
}
