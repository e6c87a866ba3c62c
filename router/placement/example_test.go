package placement_test

import (
	"fmt"

	"github.com/braidq/braid/router/placement"
)

func ExampleHome() {
	shards := []placement.Shard{
		{ID: 1, Weight: 1},
		{ID: 2, Weight: 2}, // twice shard 1's share of new queues
		{ID: 3, Weight: 1, State: placement.StateJoining}, // new: takes new queues at once
		{ID: 4, Weight: 1, State: placement.StateDraining},
	}
	pins := map[string]int16{"billing": 1}

	for _, queue := range []string{"billing", "emails", "reports", "webhooks", "audit"} {
		home, err := placement.Home(queue, shards, pins)
		if err != nil {
			fmt.Println(err)
			continue
		}
		fmt.Printf("%s -> shard %d\n", queue, home)
	}
	_, err := placement.Home("emails", shards, map[string]int16{"emails": 4})
	fmt.Println(err)
	// Output:
	// billing -> shard 1
	// emails -> shard 2
	// reports -> shard 2
	// webhooks -> shard 2
	// audit -> shard 3
	// queue "emails": pinned to shard 4, which is draining
}

func ExampleRank() {
	nodes := []placement.Candidate{
		{ID: "node-a", Weight: 8}, // capacity
		{ID: "node-b", Weight: 8},
		{ID: "node-c", Weight: 16},
	}
	// The two owners of a claim unit: the top two by rendezvous score.
	owners := placement.Rank("unit:1/emails/0", nodes)[:2]
	fmt.Println(owners[0].ID, owners[1].ID)
	// Output: node-c node-a
}
