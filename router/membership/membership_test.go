package membership_test

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/braidq/braid/router/membership"
)

// viewTimeout bounds how long a test waits for gossip to reach a view. It is
// a failure bound for a loaded machine, not a speed assertion: the fast
// preset converges in well under a second.
const viewTimeout = 15 * time.Second

// testLogger shows memberlist's warnings and errors on stderr with -v (a
// test's t.Log would panic when memberlist logs after the test ended).
func testLogger() *slog.Logger {
	if !testing.Verbose() {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

func nodeConfig(id string, seeds ...string) membership.Config {
	return membership.Config{
		NodeID:   id,
		Roles:    []string{membership.RoleWorker},
		Capacity: 4,
		Preset:   membership.PresetFast,
		Seeds:    seeds,
	}
}

// start starts a node and crashes it at the end of the test (Crash after
// Leave does nothing).
func start(t *testing.T, cfg membership.Config) *membership.Membership {
	t.Helper()
	return startWith(t, cfg, membership.Deps{Logger: testLogger()})
}

func startWith(t *testing.T, cfg membership.Config, deps membership.Deps) *membership.Membership {
	t.Helper()
	m, err := membership.Start(t.Context(), cfg, deps)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, m.Crash()) })
	return m
}

// waitView waits, woken by Changes, until m's view satisfies cond, and
// returns that view.
func waitView(t *testing.T, m *membership.Membership, what string, cond func([]membership.Member) bool) []membership.Member {
	t.Helper()
	deadline := time.NewTimer(viewTimeout)
	defer deadline.Stop()
	for {
		view := m.Members()
		if cond(view) {
			return view
		}
		select {
		case <-m.Changes():
		case <-deadline.C:
			t.Fatalf("%s: %s: not reached within %s; view %v", m.Self().NodeID, what, viewTimeout, nodeIDs(view))
		}
	}
}

func nodeIDs(view []membership.Member) []string {
	ids := make([]string, len(view))
	for i, m := range view {
		ids[i] = m.NodeID
	}
	slices.Sort(ids)
	return ids
}

// seesExactly is a view condition: the live members are exactly ids.
func seesExactly(ids ...string) func([]membership.Member) bool {
	slices.Sort(ids)
	return func(view []membership.Member) bool { return slices.Equal(nodeIDs(view), ids) }
}

// selves is what every node should see: each node as it announces itself.
func selves(nodes ...*membership.Membership) []membership.Member {
	out := make([]membership.Member, len(nodes))
	for i, n := range nodes {
		out[i] = n.Self()
	}
	slices.SortFunc(out, func(a, b membership.Member) int { return strings.Compare(a.Name, b.Name) })
	return out
}

func TestThreeNodesSeeEachOtherWithMeta(t *testing.T) {
	t.Parallel()
	a := start(t, membership.Config{NodeID: "a", Roles: []string{membership.RoleWorker, membership.RoleMaintenance},
		Capacity: 8, Preset: membership.PresetFast})
	b := start(t, membership.Config{NodeID: "b", Roles: []string{membership.RoleWorker}, Capacity: 4,
		Queues: []string{"emails", "reports"}, Preset: membership.PresetFast, Seeds: []string{a.Addr()}})
	c := start(t, membership.Config{NodeID: "c", Roles: []string{membership.RoleMaintenance}, Capacity: 2,
		Preset: membership.PresetFast, Seeds: []string{a.Addr()}})

	want := selves(a, b, c)
	require.Equal(t, membership.StateStarting, want[0].State)
	require.NotEqual(t, want[0].Name, want[0].NodeID, "the memberlist name carries a random suffix")
	for _, n := range []*membership.Membership{a, b, c} {
		view := waitView(t, n, "sees a, b, c", seesExactly("a", "b", "c"))
		require.Equal(t, want, view, "node %s sees every member's meta and address", n.Self().NodeID)
	}
	bSeen := want[slices.IndexFunc(want, func(m membership.Member) bool { return m.NodeID == "b" })]
	require.True(t, bSeen.Serves("emails"))
	require.False(t, bSeen.Serves("billing"))
	require.False(t, bSeen.HasRole(membership.RoleMaintenance))
}

func TestSetStatePropagates(t *testing.T) {
	t.Parallel()
	a := start(t, nodeConfig("a"))
	b := start(t, nodeConfig("b", a.Addr()))
	c := start(t, nodeConfig("c", a.Addr()))
	waitView(t, a, "sees a, b, c", seesExactly("a", "b", "c"))

	require.NoError(t, b.SetState(t.Context(), membership.StateActive))
	require.Equal(t, membership.StateActive, b.Self().State)
	for _, n := range []*membership.Membership{a, b, c} {
		waitView(t, n, "sees b active", func(view []membership.Member) bool {
			i := slices.IndexFunc(view, func(m membership.Member) bool { return m.NodeID == "b" })
			return i >= 0 && view[i].State == membership.StateActive && len(view) == 3
		})
	}

	err := b.SetState(t.Context(), "paused")
	require.ErrorContains(t, err, `"paused"`)
	require.Equal(t, membership.StateActive, b.Self().State, "a refused state changes nothing")
}

func TestLeaveIsSeenAndIsFinal(t *testing.T) {
	t.Parallel()
	a := start(t, nodeConfig("a"))
	b := start(t, nodeConfig("b", a.Addr()))
	c := start(t, nodeConfig("c", a.Addr()))
	waitView(t, b, "sees a, b, c", seesExactly("a", "b", "c"))
	waitView(t, a, "sees a, b, c", seesExactly("a", "b", "c"))

	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	began := time.Now()
	require.NoError(t, c.Leave(ctx))
	waitView(t, a, "drops c", seesExactly("a", "b"))
	waitView(t, b, "drops c", seesExactly("a", "b"))
	t.Logf("leave seen by both peers after %s", time.Since(began))

	require.NoError(t, c.Leave(ctx), "Leave is idempotent")
	require.NoError(t, c.Crash(), "Crash after Leave does nothing")
	require.ErrorIs(t, c.SetState(ctx, membership.StateActive), membership.ErrStopped)
}

// TestLastNodesLeaveTogether: when the last nodes leave at once, memberlist
// may find nobody left to send a leave broadcast to; that is not an error.
func TestLastNodesLeaveTogether(t *testing.T) {
	t.Parallel()
	a := start(t, nodeConfig("a"))
	b := start(t, nodeConfig("b", a.Addr()))
	c := start(t, nodeConfig("c", a.Addr()))
	for _, n := range []*membership.Membership{a, b, c} {
		waitView(t, n, "sees a, b, c", seesExactly("a", "b", "c"))
	}
	var wg sync.WaitGroup
	errs := make([]error, 3)
	for i, n := range []*membership.Membership{a, b, c} {
		wg.Go(func() { errs[i] = n.Leave(t.Context()) })
	}
	wg.Wait()
	require.Equal(t, []error{nil, nil, nil}, errs)
}

func TestCrashIsDetected(t *testing.T) {
	t.Parallel()
	a := start(t, nodeConfig("a"))
	b := start(t, nodeConfig("b", a.Addr()))
	c := start(t, nodeConfig("c", a.Addr()))
	waitView(t, a, "sees a, b, c", seesExactly("a", "b", "c"))
	waitView(t, b, "sees a, b, c", seesExactly("a", "b", "c"))

	began := time.Now()
	require.NoError(t, c.Crash())
	waitView(t, a, "drops crashed c", seesExactly("a", "b"))
	waitView(t, b, "drops crashed c", seesExactly("a", "b"))
	t.Logf("crash detected by both peers after %s (fast preset)", time.Since(began))
	require.NoError(t, c.Leave(t.Context()), "Leave after Crash does nothing")
}

func TestChangesCoalesces(t *testing.T) {
	t.Parallel()
	a := start(t, nodeConfig("a"))
	// Nobody reads a.Changes while a's own join and two more happen.
	b := start(t, nodeConfig("b", a.Addr()))
	start(t, nodeConfig("c", a.Addr()))
	waitView(t, b, "sees a, b, c", seesExactly("a", "b", "c"))
	require.Eventually(t, func() bool { return len(a.Members()) == 3 }, viewTimeout, 5*time.Millisecond)

	select {
	case <-a.Changes():
	default:
		t.Fatal("three joins left no signal")
	}
	select {
	case <-a.Changes():
		t.Fatal("three joins left more than one signal: Changes must coalesce")
	default:
	}
}

func TestPartitionSplitsViewAndRejoinHeals(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	transports := map[string]*membership.PartitionTransport{}
	partitionable := func(cfg membership.Config) membership.Config {
		cfg.RejoinInterval = 100 * time.Millisecond
		cfg.Transport = func(inner memberlist.NodeAwareTransport) memberlist.NodeAwareTransport {
			pt := membership.NewPartitionTransport(inner)
			mu.Lock()
			defer mu.Unlock()
			transports[cfg.NodeID] = pt
			return pt
		}
		return cfg
	}
	a := start(t, partitionable(nodeConfig("a")))
	b := start(t, partitionable(nodeConfig("b", a.Addr())))
	c := start(t, partitionable(nodeConfig("c", a.Addr())))
	for _, n := range []*membership.Membership{a, b, c} {
		waitView(t, n, "sees a, b, c", seesExactly("a", "b", "c"))
	}

	mu.Lock()
	transports["a"].Block(b.Addr(), c.Addr())
	transports["b"].Block(a.Addr())
	transports["c"].Block(a.Addr())
	mu.Unlock()
	waitView(t, a, "alone in its partition", seesExactly("a"))
	waitView(t, b, "sees its side only", seesExactly("b", "c"))
	waitView(t, c, "sees its side only", seesExactly("b", "c"))
	// memberlist keeps gossiping to a dead node for GossipToTheDeadTime (1s
	// in the fast preset), which can heal a short split by itself. Outlast
	// it, so that only the periodic re-join can merge the views.
	time.Sleep(1100 * time.Millisecond)

	began := time.Now()
	mu.Lock()
	for _, pt := range transports {
		pt.Heal()
	}
	mu.Unlock()
	for _, n := range []*membership.Membership{a, b, c} {
		waitView(t, n, "sees a, b, c after heal", seesExactly("a", "b", "c"))
	}
	t.Logf("partition healed in every view after %s (re-join every 100ms)", time.Since(began))
}

// TestJoinIsRefused checks that cluster labels and gossip keys keep nodes
// apart. Start's first join is synchronous: when it returns, a node that
// was admitted already sees its seed, so a view of one means refused.
func TestJoinIsRefused(t *testing.T) {
	t.Parallel()
	key1 := bytes.Repeat([]byte{1}, 32)
	key2 := bytes.Repeat([]byte{2}, 16)
	tests := []struct {
		name       string
		seed, join func(*membership.Config)
		admitted   bool
	}{
		{"same label joins", label("blue"), label("blue"), true},
		{"other label is refused", label("blue"), label("green"), false},
		{"no label is refused by a labelled cluster", label("blue"), func(*membership.Config) {}, false},
		{"same key joins", key(key1), key(key1), true},
		{"no key is refused by an encrypted cluster", key(key1), func(*membership.Config) {}, false},
		{"other key is refused", key(key1), key(key2), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			seedCfg := nodeConfig("seed")
			tt.seed(&seedCfg)
			seed := start(t, seedCfg)
			joinCfg := nodeConfig("joiner", seed.Addr())
			tt.join(&joinCfg)
			joiner := start(t, joinCfg)
			if tt.admitted {
				require.Equal(t, []string{"joiner", "seed"}, nodeIDs(joiner.Members()))
				waitView(t, seed, "sees the joiner", seesExactly("joiner", "seed"))
				return
			}
			require.Equal(t, []string{"joiner"}, nodeIDs(joiner.Members()))
			require.Equal(t, []string{"seed"}, nodeIDs(seed.Members()))
		})
	}
}

func label(l string) func(*membership.Config) {
	return func(c *membership.Config) { c.ClusterLabel = l }
}
func key(k []byte) func(*membership.Config) { return func(c *membership.Config) { c.SecretKey = k } }

// TestUnreadableRemoteMeta joins a plain memberlist node whose meta is not
// braid's: it is listed, owns nothing, and the reason is logged.
func TestUnreadableRemoteMeta(t *testing.T) {
	t.Parallel()
	logs := &syncBuffer{}
	a := startWith(t, nodeConfig("a"), membership.Deps{
		Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})

	mc := memberlist.DefaultLocalConfig()
	mc.Name = "stranger"
	mc.BindAddr, mc.BindPort = "127.0.0.1", 0
	mc.Delegate = rawMeta([]byte{9, '{', 'x'})
	mc.LogOutput = &syncBuffer{}
	stranger, err := memberlist.Create(mc)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, stranger.Shutdown()) })
	_, err = stranger.Join([]string{a.Addr()})
	require.NoError(t, err)

	view := waitView(t, a, "sees the stranger", func(view []membership.Member) bool { return len(view) == 2 })
	i := slices.IndexFunc(view, func(m membership.Member) bool { return m.Name == "stranger" })
	require.GreaterOrEqual(t, i, 0)
	require.Equal(t, membership.Member{Name: "stranger", Addr: stranger.LocalNode().Address()}, view[i],
		"no node id, roles, state or capacity")
	owners := membership.Owners("any", 2, view, nil)
	require.Len(t, owners, 1)
	require.Equal(t, "a", owners[0].NodeID)
	require.Contains(t, logs.String(), "unreadable node meta")
	require.Contains(t, logs.String(), "meta version 9")
}

type rawMeta []byte

func (r rawMeta) NodeMeta(int) []byte           { return r }
func (rawMeta) NotifyMsg([]byte)                {}
func (rawMeta) GetBroadcasts(int, int) [][]byte { return nil }
func (rawMeta) LocalState(bool) []byte          { return nil }
func (rawMeta) MergeRemoteState([]byte, bool)   {}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestLargestMetaTravels grows the queue list to the largest one Validate
// accepts and checks that a peer receives all of it.
func TestLargestMetaTravels(t *testing.T) {
	t.Parallel()
	cfg := membership.Config{NodeID: "node-with-a-rather-long-identifier", Capacity: 1000,
		Roles: []string{membership.RoleWorker, membership.RoleMaintenance}, Preset: membership.PresetFast}
	for i := 0; ; i++ {
		next := cfg
		next.Queues = append(slices.Clone(cfg.Queues), "queue-number-"+string(rune('a'+i%26))+string(rune('a'+i/26)))
		if err := next.Validate(); err != nil {
			require.ErrorContains(t, err, "Queues")
			require.ErrorContains(t, err, "512")
			_, err := membership.Start(t.Context(), next, membership.Deps{})
			require.ErrorContains(t, err, "over memberlist's limit", "Start refuses what Validate refuses")
			break
		}
		cfg = next
	}
	t.Logf("%d queues of 15 characters fit in the node meta", len(cfg.Queues))
	require.Greater(t, len(cfg.Queues), 10)

	big := start(t, cfg)
	peer := start(t, nodeConfig("peer", big.Addr()))
	view := waitView(t, peer, "sees the big node", seesExactly("peer", cfg.NodeID))
	i := slices.IndexFunc(view, func(m membership.Member) bool { return m.NodeID == cfg.NodeID })
	require.Equal(t, cfg.Queues, view[i].Queues)
}

func TestMembersGauge(t *testing.T) {
	t.Parallel()
	reader := sdkmetric.NewManualReader()
	provider := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() { require.NoError(t, provider.Shutdown(context.Background())) })

	a := startWith(t, nodeConfig("a"), membership.Deps{Logger: testLogger(), MeterProvider: provider})
	b := start(t, nodeConfig("b", a.Addr()))
	start(t, nodeConfig("c", a.Addr()))
	require.NoError(t, b.SetState(t.Context(), membership.StateActive))
	waitView(t, a, "sees b active among three", func(view []membership.Member) bool {
		active := slices.IndexFunc(view, func(m membership.Member) bool { return m.State == membership.StateActive })
		return len(view) == 3 && active >= 0
	})

	var rm metricdata.ResourceMetrics
	require.NoError(t, reader.Collect(t.Context(), &rm))
	got := map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, mt := range sm.Metrics {
			if mt.Name != "braid.members" {
				continue
			}
			for _, dp := range mt.Data.(metricdata.Gauge[int64]).DataPoints {
				state, _ := dp.Attributes.Value(attribute.Key("state"))
				got[state.AsString()] = dp.Value
			}
		}
	}
	require.Equal(t, map[string]int64{"starting": 2, "active": 1, "leaving": 0}, got)
}
