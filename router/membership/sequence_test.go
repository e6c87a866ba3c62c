package membership_test

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/braidq/braid/router/membership"
)

// TestRandomMembershipSequence runs a random sequence of starts, state
// changes, leaves and crashes, and after each step waits until every running
// node's view is exactly the running nodes with their latest states. Replay
// a failure with BRAID_SEED=<seed>.
func TestRandomMembershipSequence(t *testing.T) {
	t.Parallel()
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("BRAID_SEED"); s != "" {
		var err error
		seed, err = strconv.ParseUint(s, 10, 64)
		require.NoError(t, err, "BRAID_SEED")
	}
	t.Logf("seed %d (replay with BRAID_SEED=%d)", seed, seed)
	rnd := rand.New(rand.NewPCG(seed, seed))

	running := map[string]*membership.Membership{}
	want := map[string]membership.State{} // node id -> announced state
	pick := func() string {
		ids := slices.Sorted(maps.Keys(running))
		return ids[rnd.IntN(len(ids))]
	}
	states := []membership.State{membership.StateStarting, membership.StateActive, membership.StateLeaving}

	for step := range 12 {
		var op string
		switch r := rnd.IntN(10); {
		case len(running) < 2 || (r < 3 && len(running) < 5):
			id := fmt.Sprintf("n%d", step)
			var seeds []string
			if len(running) > 0 {
				seeds = []string{running[pick()].Addr()}
			}
			running[id] = start(t, nodeConfig(id, seeds...))
			want[id] = membership.StateStarting
			op = "start " + id
		case r < 6:
			id, s := pick(), states[rnd.IntN(len(states))]
			require.NoError(t, running[id].SetState(t.Context(), s))
			want[id] = s
			op = fmt.Sprintf("set %s %s", id, s)
		case r < 8:
			id := pick()
			require.NoError(t, running[id].Leave(t.Context()))
			delete(running, id)
			delete(want, id)
			op = "leave " + id
		default:
			id := pick()
			require.NoError(t, running[id].Crash())
			delete(running, id)
			delete(want, id)
			op = "crash " + id
		}
		t.Logf("step %d: %s", step, op)
		for id, n := range running {
			waitView(t, n, fmt.Sprintf("step %d (%s): view of %s", step, op, id), func(view []membership.Member) bool {
				got := map[string]membership.State{}
				for _, m := range view {
					got[m.NodeID] = m.State
				}
				return maps.Equal(got, want)
			})
		}
	}
}
