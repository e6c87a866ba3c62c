package membership_test

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"
	"pgregory.net/rapid"

	"github.com/braidq/braid/router/membership"
)

func member(id string, capacity int, roles ...string) membership.Member {
	return membership.Member{Name: id + "-0001", NodeID: id, Roles: roles, State: membership.StateActive, Capacity: capacity}
}

func unitKeys(n int) []string {
	keys := make([]string, n)
	for i := range keys {
		keys[i] = membership.UnitKey(1+i%3, fmt.Sprintf("queue-%d", i/12), i%4)
	}
	return keys
}

// names lists the members' names in order; nil for none.
func names(members []membership.Member) []string {
	var out []string
	for _, m := range members {
		out = append(out, m.Name)
	}
	return out
}

// top1 maps each key to its owner's NodeID.
func top1(keys []string, members []membership.Member) map[string]string {
	out := make(map[string]string, len(keys))
	for _, k := range keys {
		out[k] = membership.Owners(k, 1, members, nil)[0].NodeID
	}
	return out
}

func TestPropertyOwners(t *testing.T) {
	t.Parallel()
	rapid.Check(t, func(t *rapid.T) {
		ids := rapid.SliceOfNDistinct(rapid.StringMatching(`[a-z]{1,6}`), 0, 12, rapid.ID[string]).Draw(t, "ids")
		members := make([]membership.Member, len(ids))
		for i, id := range ids {
			members[i] = member(id, rapid.IntRange(0, 16).Draw(t, "capacity"), membership.RoleWorker)
			if rapid.Bool().Draw(t, "maintenance") {
				members[i].Roles = append(members[i].Roles, membership.RoleMaintenance)
			}
		}
		key := rapid.String().Draw(t, "key")
		k := rapid.IntRange(-1, 14).Draw(t, "k")
		eligible := func(m membership.Member) bool { return m.HasRole(membership.RoleMaintenance) }

		got := membership.Owners(key, k, members, eligible)
		candidates := 0
		for _, m := range members {
			if m.Capacity > 0 && eligible(m) {
				candidates++
			}
		}
		require.Len(t, got, max(0, min(k, candidates)), "k owners, or every eligible member with capacity")
		seen := map[string]bool{}
		for _, o := range got {
			require.True(t, eligible(o), "owner %s is not eligible", o.NodeID)
			require.Positive(t, o.Capacity, "owner %s has no capacity", o.NodeID)
			require.False(t, seen[o.NodeID], "owner %s listed twice", o.NodeID)
			seen[o.NodeID] = true
		}

		shuffled := slices.Clone(members)
		rand.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
		require.Equal(t, got, membership.Owners(key, k, shuffled, eligible), "the order of members does not matter")
		if k > 0 {
			require.Equal(t, names(got[:max(0, min(k-1, len(got)))]), names(membership.Owners(key, k-1, members, eligible)),
				"top-(k-1) is a prefix of top-k")
		}
		if len(got) > 0 {
			rest := slices.DeleteFunc(slices.Clone(members), func(m membership.Member) bool { return m.NodeID == got[0].NodeID })
			require.Equal(t, names(got[1:]), names(membership.Owners(key, k-1, rest, eligible)),
				"removing the first owner promotes the others in order")
		}
	})
}

func TestOwnersFollowCapacity(t *testing.T) {
	t.Parallel()
	members := []membership.Member{member("a", 1), member("b", 2), member("c", 5)}
	keys := unitKeys(10_000)
	counts := map[string]int{}
	for _, owner := range top1(keys, members) {
		counts[owner]++
	}
	for _, m := range members {
		share := float64(counts[m.NodeID]) / float64(len(keys))
		want := float64(m.Capacity) / 8
		t.Logf("%s capacity %d: %.4f of units (expected %.4f)", m.NodeID, m.Capacity, share, want)
		// σ ≤ 0.005 for 10k keys: ±0.025 is five standard deviations.
		require.InDelta(t, want, share, 0.025, "node %s", m.NodeID)
	}
}

func TestAddingANodeMovesAboutOneNth(t *testing.T) {
	t.Parallel()
	keys := unitKeys(10_000)
	before := []membership.Member{member("a", 4), member("b", 4), member("c", 4), member("d", 4)}
	after := append(slices.Clone(before), member("e", 4))
	was, now := top1(keys, before), top1(keys, after)
	moved := 0
	for _, k := range keys {
		if was[k] != now[k] {
			moved++
			require.Equal(t, "e", now[k], "key %s moved between old nodes", k)
		}
	}
	fraction := float64(moved) / float64(len(keys))
	fmt.Printf("adding a 5th node of equal capacity moved %.4f of %d unit keys (ideal 0.2000)\n", fraction, len(keys))
	require.InDelta(t, 0.2, fraction, 0.025)
}

func TestRemovingANodeMovesOnlyItsKeys(t *testing.T) {
	t.Parallel()
	keys := unitKeys(10_000)
	before := []membership.Member{member("a", 4), member("b", 2), member("c", 8), member("d", 4)}
	after := slices.DeleteFunc(slices.Clone(before), func(m membership.Member) bool { return m.NodeID == "b" })
	was, now := top1(keys, before), top1(keys, after)
	moved := 0
	for _, k := range keys {
		if was[k] != now[k] {
			moved++
			require.Equal(t, "b", was[k], "key %s moved although its owner stayed", k)
		}
	}
	fmt.Printf("removing a node of capacity 2 of 18 moved %.4f of %d unit keys (ideal %.4f)\n",
		float64(moved)/float64(len(keys)), len(keys), 2.0/18)
	require.Positive(t, moved)
}

func TestOwnersEligibilityAndEdges(t *testing.T) {
	t.Parallel()
	worker := member("w", 4, membership.RoleWorker)
	maint := member("m", 4, membership.RoleMaintenance)
	emails := member("e", 4, membership.RoleWorker)
	emails.Queues = []string{"emails"}
	unread := membership.Member{Name: "stranger", Addr: "127.0.0.1:1"} // meta could not be decoded
	members := []membership.Member{worker, maint, emails, unread}

	tests := []struct {
		name     string
		key      string
		k        int
		eligible func(membership.Member) bool
		want     []string
	}{
		{"maintenance candidacy considers maintenance nodes only", membership.MaintenanceKey(3), 3,
			func(m membership.Member) bool { return m.HasRole(membership.RoleMaintenance) }, []string{"m"}},
		{"a queue's units go to workers that serve it", membership.UnitKey(1, "reports", 0), 3,
			func(m membership.Member) bool { return m.Serves("reports") }, []string{"w"}},
		{"no eligible member means no owner", membership.UnitKey(1, "emails", 0), 1,
			func(membership.Member) bool { return false }, nil},
		{"k of zero asks for nobody", "x", 0, nil, nil},
		{"negative k asks for nobody", "x", -2, nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for _, o := range membership.Owners(tt.key, tt.k, members, tt.eligible) {
				got = append(got, o.NodeID)
			}
			require.Equal(t, tt.want, got)
		})
	}

	t.Run("a member without capacity never owns", func(t *testing.T) {
		got := membership.Owners("x", 10, members, nil)
		require.Len(t, got, 3)
		require.NotContains(t, got, unread)
	})
	t.Run("a node id listed twice stands once, by its lowest name", func(t *testing.T) {
		old := member("w", 4, membership.RoleWorker)
		restarted := old
		restarted.Name = "w-ffff"
		for _, view := range [][]membership.Member{{restarted, old, maint}, {old, maint, restarted}} {
			got := membership.Owners("x", 3, view, nil)
			require.Len(t, got, 2)
			require.Contains(t, got, old)
		}
	})
}

func TestKeys(t *testing.T) {
	t.Parallel()
	require.Equal(t, "unit:3/emails/1", membership.UnitKey(3, "emails", 1))
	require.Equal(t, "maint:7", membership.MaintenanceKey(7))
	require.NotEqual(t, membership.UnitKey(1, "a", 10), membership.UnitKey(11, "a", 0))
}

func BenchmarkOwners(b *testing.B) {
	members := make([]membership.Member, 16)
	for i := range members {
		members[i] = member(fmt.Sprintf("node-%02d", i), 4+i%4, membership.RoleWorker)
	}
	keys := unitKeys(1024)
	serves := func(m membership.Member) bool { return m.Serves("queue-1") }
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		membership.Owners(keys[i%len(keys)], 2, members, serves)
	}
}
