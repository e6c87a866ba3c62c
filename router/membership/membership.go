package membership

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// ErrStopped is returned by SetState after Leave or Crash.
var ErrStopped = errors.New("membership stopped")

// broadcastRounds bounds memberlist's wait for a broadcast (UpdateNode,
// Leave) in gossip intervals. With a live peer a broadcast goes out within a
// few rounds; the margin is for a loaded machine.
const broadcastRounds = 50

// Membership is a node's view of the live router nodes. It is safe for
// concurrent use. Leave (or Crash) ends it.
type Membership struct {
	cfg  Config
	log  *slog.Logger
	name string
	addr string
	ml   *memberlist.Memberlist

	gossipInterval time.Duration // the preset's, for broadcast waits

	self    atomic.Pointer[Member]   // this node, as announced in its meta
	members atomic.Pointer[[]Member] // live members incl. self, sorted by Name
	changes chan struct{}

	// nodes is fed by memberlist's event callbacks (called under its node
	// lock, one at a time); each callback republishes members.
	nodesMu sync.Mutex
	nodes   map[string]Member

	opMu     sync.Mutex // serialises SetState, Leave and Crash
	stopped  bool
	cancel   context.CancelFunc // ends the re-join loop
	loopDone chan struct{}      // closed when the re-join loop has returned

	joinFailing bool // owned by join
	metrics     metric.Registration
}

// Start creates the node's memberlist, announcing cfg's meta with state
// StateStarting, and joins cfg.Seeds. A seed that does not answer is logged,
// not fatal: seeds are re-joined every RejoinInterval until Leave. The join
// is bounded by memberlist's TCP timeout per seed, not by ctx.
func Start(ctx context.Context, cfg Config, deps Deps) (*Membership, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("membership: start node %q: %w", cfg.NodeID, err)
	}
	cfg = cfg.withDefaults()
	cfg.Roles, cfg.Queues, cfg.Seeds = cloneOrNil(cfg.Roles), cloneOrNil(cfg.Queues), cloneOrNil(cfg.Seeds)
	deps = deps.withDefaults()

	name, err := memberName(cfg.NodeID)
	if err != nil {
		return nil, fmt.Errorf("membership: start node %q: %w", cfg.NodeID, err)
	}
	m := &Membership{
		cfg:      cfg,
		name:     name,
		log:      deps.Logger.With("component", "membership", "node", name),
		changes:  make(chan struct{}, 1),
		nodes:    map[string]Member{},
		loopDone: make(chan struct{}),
	}
	m.self.Store(&Member{Name: name, NodeID: cfg.NodeID, Roles: cfg.Roles, State: StateStarting, Capacity: cfg.Capacity, Queues: cfg.Queues})
	m.members.Store(&[]Member{})

	mc := cfg.memberlistConfig(name)
	mc.Logger = newStdLogger(m.log)
	mc.Delegate = delegate{m}
	mc.Events = events{m}
	nt, err := newTransport(cfg, mc.Logger)
	if err != nil {
		return nil, fmt.Errorf("membership: start node %q: %w", cfg.NodeID, err)
	}
	mc.BindPort = nt.GetAutoBindPort()
	mc.AdvertisePort = cmp.Or(cfg.AdvertisePort, mc.BindPort)
	mc.Transport = nt
	if cfg.Transport != nil {
		mc.Transport = cfg.Transport(nt)
	}
	ml, err := memberlist.Create(mc)
	if err != nil {
		_ = mc.Transport.Shutdown() // idempotent; Create may have done it
		return nil, fmt.Errorf("membership: start node %q: create memberlist: %w", cfg.NodeID, err)
	}
	m.ml = ml
	m.gossipInterval = mc.GossipInterval
	m.addr = ml.LocalNode().Address()
	self := *m.self.Load()
	self.Addr = m.addr
	m.self.Store(&self)

	if err := m.registerMetrics(deps.MeterProvider); err != nil {
		_ = ml.Shutdown()
		return nil, fmt.Errorf("membership: start node %q: %w", cfg.NodeID, err)
	}
	m.log.Info("gossip started", "addr", m.addr, "preset", cfg.Preset, "seeds", cfg.Seeds)

	runCtx, cancel := context.WithCancel(context.Background())
	m.cancel = cancel
	if len(cfg.Seeds) == 0 {
		close(m.loopDone)
		return m, nil
	}
	m.join(runCtx)
	go m.rejoinLoop(runCtx)
	return m, nil
}

// cloneOrNil copies s, spelling empty as nil as decoded meta does, so that
// Self compares equal to this node as others see it.
func cloneOrNil(s []string) []string {
	if len(s) == 0 {
		return nil
	}
	return slices.Clone(s)
}

// memberName is the node id plus a random suffix: memberlist does not
// re-admit a known name from a new address for a long time, so a node that
// restarts (on a new port) needs a fresh name.
func memberName(nodeID string) (string, error) {
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("random name suffix: %w", err)
	}
	return nodeID + "-" + hex.EncodeToString(b[:]), nil
}

// newTransport binds cfg's address. A free port (BindPort 0) is picked by
// the kernel for TCP and then claimed for UDP, which can race with another
// process: retried a few times, as memberlist does for its own transport.
func newTransport(cfg Config, logger *log.Logger) (*memberlist.NetTransport, error) {
	attempts := 1
	if cfg.BindPort == 0 {
		attempts = 10
	}
	var err error
	for range attempts {
		var nt *memberlist.NetTransport
		nt, err = memberlist.NewNetTransport(&memberlist.NetTransportConfig{
			BindAddrs: []string{cfg.BindAddr},
			BindPort:  cfg.BindPort,
			Logger:    logger,
		})
		if err == nil {
			return nt, nil
		}
		if !strings.Contains(err.Error(), "address already in use") {
			break
		}
	}
	return nil, fmt.Errorf("bind %s: %w", net.JoinHostPort(cfg.BindAddr, strconv.Itoa(cfg.BindPort)), err)
}

// rejoinLoop joins the seeds every RejoinInterval until ctx ends. Joining a
// seed that is already a member is a cheap state exchange; joining one on the
// other side of a healed partition merges the two views again.
func (m *Membership) rejoinLoop(ctx context.Context) {
	defer close(m.loopDone)
	tick := time.NewTicker(m.cfg.RejoinInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			m.join(ctx)
		}
	}
}

// join joins the seeds. A failing streak is logged once as a warning (and
// again at debug level on every retry), its end once as info. It runs in
// Start and then only in the re-join loop, so joinFailing needs no lock.
func (m *Membership) join(ctx context.Context) {
	n, err := m.ml.Join(m.cfg.Seeds)
	switch {
	case ctx.Err() != nil: // leaving: a failure is expected
	case err != nil && !m.joinFailing:
		m.joinFailing = true
		m.log.Warn("no seed answered; retrying every rejoin interval", "seeds", m.cfg.Seeds, "rejoin_interval", m.cfg.RejoinInterval, "err", err)
	case err != nil:
		m.log.Debug("no seed answered", "seeds", m.cfg.Seeds, "err", err)
	case m.joinFailing:
		m.joinFailing = false
		m.log.Info("joined seeds again", "seeds", m.cfg.Seeds, "contacted", n)
	default:
		m.log.Debug("joined seeds", "seeds", m.cfg.Seeds, "contacted", n)
	}
}

// Self returns this node as it announces itself.
func (m *Membership) Self() Member { return *m.self.Load() }

// Addr returns the advertised gossip address (host:port): give it to other
// nodes as a seed.
func (m *Membership) Addr() string { return m.addr }

// Members returns the live members, this node included, sorted by Name. The
// slice is an immutable snapshot replaced whole on every change: do not
// modify it. After Leave or Crash it is the last view before stopping.
func (m *Membership) Members() []Member { return *m.members.Load() }

// Changes is signalled after Members changed (a join, a leave, a failure, a
// meta update). It is buffered with capacity one and never closed: many
// changes before the receiver looks coalesce into one signal, so receivers
// re-read Members rather than count signals.
func (m *Membership) Changes() <-chan struct{} { return m.changes }

// SetState announces s in this node's meta and gossips it, waiting for the
// broadcast to go out until ctx ends or for at most 50 gossip intervals (10s
// with PresetLAN). The local meta is updated even when the wait times out;
// gossip carries it later.
func (m *Membership) SetState(ctx context.Context, s State) error {
	if !s.valid() {
		return fmt.Errorf("membership: node %s: set state %q: unknown state (want %q, %q or %q)", m.name, s, StateStarting, StateActive, StateLeaving)
	}
	m.opMu.Lock()
	defer m.opMu.Unlock()
	if m.stopped {
		return fmt.Errorf("membership: node %s: set state %q: %w", m.name, s, ErrStopped)
	}
	self := *m.self.Load()
	self.State = s
	m.self.Store(&self)
	if err := m.unlessAlone(m.ml.UpdateNode(m.broadcastWait(ctx))); err != nil {
		return fmt.Errorf("membership: node %s: set state %q: %w", m.name, s, err)
	}
	return nil
}

// Leave broadcasts that this node leaves, so others drop it at once instead
// of after failure detection, then shuts gossip down. It is idempotent. The
// broadcast wait is bounded like SetState's, the wait for the re-join loop
// by ctx.
func (m *Membership) Leave(ctx context.Context) error {
	m.opMu.Lock()
	defer m.opMu.Unlock()
	if m.stopped {
		return nil
	}
	m.stopped = true
	m.cancel()
	var errs []error
	if err := m.unlessAlone(m.ml.Leave(m.broadcastWait(ctx))); err != nil {
		errs = append(errs, fmt.Errorf("membership: node %s: leave: %w", m.name, err))
	}
	if err := m.shutdown(ctx); err != nil {
		errs = append(errs, fmt.Errorf("membership: node %s: leave: %w", m.name, err))
	}
	m.log.Info("left gossip")
	return errors.Join(errs...)
}

// Crash shuts gossip down without announcing a leave, as a killed process
// would: the others notice only by failure detection. Tests use it. It waits
// for the re-join loop, which is bounded by memberlist's TCP timeout per
// seed. Crash after Leave or Crash does nothing.
func (m *Membership) Crash() error {
	m.opMu.Lock()
	defer m.opMu.Unlock()
	if m.stopped {
		return nil
	}
	m.stopped = true
	m.cancel()
	if err := m.shutdown(context.Background()); err != nil {
		return fmt.Errorf("membership: node %s: crash: %w", m.name, err)
	}
	return nil
}

func (m *Membership) shutdown(ctx context.Context) error {
	var errs []error
	if err := m.ml.Shutdown(); err != nil {
		errs = append(errs, fmt.Errorf("shutdown memberlist: %w", err))
	}
	if err := m.metrics.Unregister(); err != nil {
		errs = append(errs, fmt.Errorf("unregister metrics: %w", err))
	}
	select {
	case <-m.loopDone:
	default:
		select {
		case <-m.loopDone:
		case <-ctx.Done():
			errs = append(errs, fmt.Errorf("wait for re-join loop: %w", ctx.Err()))
		}
	}
	return errors.Join(errs...)
}

// broadcastWait is the timeout for memberlist's broadcast waits: a few
// dozen gossip rounds, or less if ctx ends sooner (never 0, which memberlist
// takes as forever).
func (m *Membership) broadcastWait(ctx context.Context) time.Duration {
	wait := broadcastRounds * m.gossipInterval
	if d, ok := ctx.Deadline(); ok {
		wait = min(wait, time.Until(d))
	}
	return max(wait, time.Millisecond)
}

// unlessAlone drops a broadcast wait's error when no other member is left
// to tell. memberlist waits for a broadcast whenever it saw a live peer at
// the start; if the last peers leave at that moment, it has nobody to send
// the broadcast to and times out, which is not a failure.
func (m *Membership) unlessAlone(err error) error {
	if err == nil {
		return nil
	}
	for _, mem := range m.Members() {
		if mem.Name != m.name {
			return err
		}
	}
	m.log.Debug("broadcast had nobody left to reach", "err", err)
	return nil
}

// delegate serves this node's meta to memberlist. It never calls memberlist.
type delegate struct{ m *Membership }

// NodeMeta fits the limit: Validate checked the meta in its longest state
// against memberlist.MetaMaxSize.
func (d delegate) NodeMeta(int) []byte           { return encodeMeta(*d.m.self.Load()) }
func (delegate) NotifyMsg([]byte)                {}
func (delegate) GetBroadcasts(int, int) [][]byte { return nil }
func (delegate) LocalState(bool) []byte          { return nil }
func (delegate) MergeRemoteState([]byte, bool)   {}

// events receives memberlist's membership events. memberlist calls them
// under its node lock, so they must not call memberlist: they update the
// view, publish a new snapshot and signal Changes.
type events struct{ m *Membership }

func (e events) NotifyJoin(n *memberlist.Node)   { e.m.upsert(n) }
func (e events) NotifyUpdate(n *memberlist.Node) { e.m.upsert(n) }
func (e events) NotifyLeave(n *memberlist.Node) {
	e.m.nodesMu.Lock()
	defer e.m.nodesMu.Unlock()
	delete(e.m.nodes, n.Name)
	e.m.publish()
}

func (m *Membership) upsert(n *memberlist.Node) {
	mem := Member{Name: n.Name, Addr: n.Address()}
	if err := decodeMeta(&mem, n.Meta); err != nil {
		m.log.Warn("unreadable node meta: the member gets no roles", "member", n.Name, "addr", mem.Addr, "err", err)
	}
	m.nodesMu.Lock()
	defer m.nodesMu.Unlock()
	m.nodes[n.Name] = mem
	m.publish()
}

// publish replaces the snapshot and signals Changes if the view changed.
// The caller holds nodesMu.
func (m *Membership) publish() {
	view := make([]Member, 0, len(m.nodes))
	for _, mem := range m.nodes {
		view = append(view, mem)
	}
	slices.SortFunc(view, func(a, b Member) int { return strings.Compare(a.Name, b.Name) })
	if slices.EqualFunc(view, *m.members.Load(), sameMember) {
		return
	}
	m.members.Store(&view)
	select {
	case m.changes <- struct{}{}:
	default:
	}
}

func sameMember(a, b Member) bool {
	return a.Name == b.Name && a.NodeID == b.NodeID && a.State == b.State && a.Capacity == b.Capacity &&
		a.Addr == b.Addr && slices.Equal(a.Roles, b.Roles) && slices.Equal(a.Queues, b.Queues)
}

const stateUnknown = "unknown" // metric label of members whose meta could not be read

func (m *Membership) registerMetrics(mp metric.MeterProvider) error {
	meter := mp.Meter("github.com/braidq/braid/router/membership")
	gauge, err := meter.Int64ObservableGauge("braid.members",
		metric.WithDescription("Live gossip members seen by this node, by announced state."),
		metric.WithUnit("{member}"))
	if err != nil {
		return fmt.Errorf("create braid.members gauge: %w", err)
	}
	m.metrics, err = meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		counts := map[string]int64{}
		for _, s := range states {
			counts[string(s)] = 0
		}
		for _, mem := range m.Members() {
			counts[cmp.Or(string(mem.State), stateUnknown)]++
		}
		for s, n := range counts {
			o.ObserveInt64(gauge, n, metric.WithAttributes(attribute.String("state", s)))
		}
		return nil
	}, gauge)
	if err != nil {
		return fmt.Errorf("register braid.members callback: %w", err)
	}
	return nil
}
