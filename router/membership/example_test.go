package membership_test

import (
	"context"
	"fmt"
	"time"

	"github.com/braidq/braid/router/membership"
)

// Two router nodes gossip on loopback; each computes the same owners from
// the member list.
func Example() {
	ctx := context.Background()
	a, err := membership.Start(ctx, membership.Config{
		NodeID:   "node-a",
		Roles:    []string{membership.RoleWorker, membership.RoleMaintenance},
		Capacity: 8,
		Preset:   membership.PresetFast, // production: the default, PresetLAN
	}, membership.Deps{})
	if err != nil {
		fmt.Println(err)
		return
	}
	b, err := membership.Start(ctx, membership.Config{
		NodeID:   "node-b",
		Roles:    []string{membership.RoleWorker},
		Capacity: 8,
		Queues:   []string{"emails"}, // has workers for emails only
		Preset:   membership.PresetFast,
		Seeds:    []string{a.Addr()},
	}, membership.Deps{})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer func() {
		stop, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		fmt.Println(b.Leave(stop), a.Leave(stop))
	}()

	if err := b.SetState(ctx, membership.StateActive); err != nil {
		fmt.Println(err)
		return
	}
	// Start's first join is synchronous: b already sees a.
	view := b.Members()
	for _, m := range view {
		fmt.Println(m.NodeID, m.Roles, m.State, m.Capacity, m.Queues)
	}

	for _, queue := range []string{"emails", "reports"} {
		owners := membership.Owners(membership.UnitKey(1, queue, 0), 2, view,
			func(m membership.Member) bool { return m.Serves(queue) })
		fmt.Print(queue, " lane 0 on shard 1:")
		for _, o := range owners {
			fmt.Print(" ", o.NodeID)
		}
		fmt.Println()
	}
	maint := membership.Owners(membership.MaintenanceKey(1), 1, view,
		func(m membership.Member) bool { return m.HasRole(membership.RoleMaintenance) })
	fmt.Println("maintenance candidate of shard 1:", maint[0].NodeID)
	// Output:
	// node-a [worker maintenance] starting 8 []
	// node-b [worker] active 8 [emails]
	// emails lane 0 on shard 1: node-a node-b
	// reports lane 0 on shard 1: node-a
	// maintenance candidate of shard 1: node-a
	// <nil> <nil>
}
