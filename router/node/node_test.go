package node_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/braidq/braid/router/node"
)

// cluster starts k router processes with a node each (the first is the others' seed), all
// working queues, and a producer process with a client only.
func (w *world) cluster(t testing.TB, k int, queues []string, l *ledger, tune func(*node.Config)) (nodes []*proc, producer *proc) {
	t.Helper()
	var seeds []string
	for i := range k {
		name := "node-" + string(rune('a'+i))
		p := w.open(t, name)
		cfg := fastConfig(name, queues, seeds)
		if tune != nil {
			tune(&cfg)
		}
		n := startNode(t, p, cfg, taskWorkers(l, name, nil), l.onAcked)
		if i == 0 {
			seeds = []string{n.Addr()}
		}
		nodes = append(nodes, p)
	}
	waitFor(t, 10*time.Second, "every node to see the others", func() bool {
		for _, p := range nodes {
			if len(p.node.Members()) != k {
				return false
			}
		}
		return true
	})
	return nodes, w.open(t, "producer")
}

func TestThreeNodesRunEveryJobExactlyOnce(t *testing.T) {
	w := newWorld(t)
	l := newLedger()
	queues := queueNames("exact", 4)
	// No attempt may be rescued here (a rescue re-runs a job legitimately), however slow the
	// machine: rescue only after a minute without heartbeats.
	nodes, producer := w.cluster(t, 3, queues, l, func(c *node.Config) { c.Maintenance.RescueStale = time.Minute })

	const jobs = 50_000
	l.insert(t, producer.client, queues, jobs)
	waitFor(t, 3*time.Minute, "every job to complete", func() bool { return l.completed() >= jobs })
	require.Zero(t, l.check(t), "no job may run twice without a crash")

	for _, p := range nodes {
		require.Positivef(t, l.byNode[p.node.Config().ID], "node %s ran no job: ownership did not spread", p.node.Config().ID)
	}
	var completed int64
	for _, sh := range producer.set.All() {
		for _, q := range queues {
			c, err := sh.Engine().Counts(context.Background(), q)
			require.NoError(t, err)
			require.Zero(t, c.Running+c.Available+c.Retryable+c.Scheduled, "shard %d queue %s: jobs left open", sh.ID(), q)
			completed += c.Completed
		}
	}
	require.EqualValues(t, jobs, completed)
	t.Logf("jobs per node: %v", l.byNode)
}
