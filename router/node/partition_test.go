package node_test

import (
	"context"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/stretchr/testify/require"

	"github.com/braidq/braid/router/membership"
)

// A gossip partition makes both sides the maintenance candidate of every shard at once, but the
// shard's lease lets only one of them maintain it at any time: the lease log, by the shard's
// clock, shows growing epochs and no acquisition before the previous lease had ended.
func TestGossipPartitionNeverLetsTwoNodesHoldALease(t *testing.T) {
	w := newWorld(t)
	l := newLedger()
	queues := queueNames("part", 2)
	var nodes []*proc
	var cuts []*membership.PartitionTransport
	var seeds []string
	for i, name := range []string{"node-a", "node-b"} {
		p := w.open(t, name)
		cfg := fastConfig(name, queues, seeds)
		cfg.Gossip.RejoinInterval = 500 * time.Millisecond
		cfg.Gossip.Transport = func(inner memberlist.NodeAwareTransport) memberlist.NodeAwareTransport {
			pt := membership.NewPartitionTransport(inner)
			cuts = append(cuts, pt)
			return pt
		}
		n := startNode(t, p, cfg, taskWorkers(l, name, nil), l.onAcked)
		if i == 0 {
			seeds = []string{n.Addr()}
		}
		nodes = append(nodes, p)
	}
	a, b := nodes[0].node, nodes[1].node
	waitFor(t, 10*time.Second, "two members", func() bool { return len(a.Members()) == 2 && len(b.Members()) == 2 })
	producer := w.open(t, "producer")
	l.insert(t, producer.client, queues, 1000)

	cuts[0].Block(b.Addr())
	cuts[1].Block(a.Addr())
	waitFor(t, 20*time.Second, "each side to see only itself", func() bool { return len(a.Members()) == 1 && len(b.Members()) == 1 })
	waitFor(t, 10*time.Second, "both sides to be candidates for every shard", func() bool {
		return a.MaintainedShards() == 3 && b.MaintainedShards() == 3
	})
	l.insert(t, producer.client, queues, 1000) // traffic while split; outlive the lease TTL
	time.Sleep(4 * time.Second)

	cuts[0].Heal()
	cuts[1].Heal()
	waitFor(t, 20*time.Second, "the partition to heal", func() bool { return len(a.Members()) == 2 && len(b.Members()) == 2 })
	waitFor(t, 20*time.Second, "one candidate per shard again", func() bool { return a.MaintainedShards()+b.MaintainedShards() == 3 })
	waitFor(t, 60*time.Second, "every job to complete", func() bool { return l.completed() >= 2000 })
	l.check(t)

	holders := map[string]bool{}
	for _, sh := range producer.set.All() {
		hist, err := sh.Engine().LeaseHistory(context.Background())
		require.NoError(t, err)
		require.NotEmpty(t, hist, "shard %d was never maintained", sh.ID())
		var lastEpoch int64
		for _, ev := range hist {
			if ev.Released {
				continue
			}
			holders[ev.Holder] = true
			require.Greaterf(t, ev.Epoch, lastEpoch, "shard %d: epochs must grow: %+v", sh.ID(), hist)
			lastEpoch = ev.Epoch
			if ev.PreviousEpoch != 0 {
				require.Falsef(t, ev.At.Before(ev.PreviousExpiresAt),
					"shard %d: %s acquired epoch %d at %s while %s's epoch %d ran until %s",
					sh.ID(), ev.Holder, ev.Epoch, ev.At, ev.PreviousHolder, ev.PreviousEpoch, ev.PreviousExpiresAt)
			}
		}
		t.Logf("shard %d lease log: %d events", sh.ID(), len(hist))
	}
	t.Logf("lease holders over the test: %v", holders)
}
