package node_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/braidq/braid/engine"
	"github.com/braidq/braid/router/node"
	"github.com/braidq/braid/router/worker"
)

// A crashed node's units move to the survivors and its attempts in flight are rescued: every
// job completes exactly once, and no job that completed before the crash runs again.
func TestCrashedNodesWorkIsRescuedAndNothingRerunsOrIsLost(t *testing.T) {
	w := newWorld(t)
	l := newLedger()
	queues := queueNames("crash", 2)
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })

	var seeds []string
	var nodes []*proc
	var startedOnC atomic.Int64
	for i, name := range []string{"node-a", "node-b", "node-c"} {
		p := w.open(t, name)
		var hook func(context.Context, *worker.Job[TaskArgs]) error
		if name == "node-c" { // its handlers hang until the process is long dead
			hook = func(ctx context.Context, _ *worker.Job[TaskArgs]) error {
				startedOnC.Add(1)
				select { // hang until the test ends (or the crashed node's cleanup Stop)
				case <-release:
				case <-ctx.Done():
				}
				return errors.New("abandoned by a crashed process")
			}
		}
		n := startNode(t, p, fastConfig(name, queues, seeds), taskWorkers(l, name, hook), l.onAcked)
		if i == 0 {
			seeds = []string{n.Addr()}
		}
		nodes = append(nodes, p)
	}
	waitFor(t, 10*time.Second, "three members", func() bool { return len(nodes[0].node.Members()) == 3 })
	producer := w.open(t, "producer")

	const jobs = 3000
	l.insert(t, producer.client, queues, jobs)
	waitFor(t, 30*time.Second, "node-c to be running jobs and the others to complete some", func() bool {
		return startedOnC.Load() > 0 && l.completed() > 0
	})
	before := l.completed()
	nodes[2].node.Crash()
	t.Logf("crashed node-c with %d handlers hanging; %d jobs completed before", nodes[2].node.Running(), before)

	waitFor(t, 90*time.Second, "every job to complete on the survivors", func() bool { return l.completed() >= jobs })
	require.Zero(t, l.check(t), "a job that completed ran again")
	require.Zero(t, l.byNode["node-c"], "node-c's handlers never finished")
	require.Positive(t, before, "some jobs completed before the crash")
}

// Stop under load hands back what did not finish in time: afterwards no attempt is open, and
// a new node runs every job left exactly once.
func TestGracefulStopUnderLoadLeavesNoOpenAttempts(t *testing.T) {
	w := newWorld(t)
	l := newLedger()
	queues := queueNames("stop", 2)
	slow := func(ctx context.Context, j *worker.Job[TaskArgs]) error {
		d := time.Duration(rand.IntN(50)) * time.Millisecond
		if j.Args.N%10 == 0 {
			d = 5 * time.Second // cannot finish inside the stop deadline
		}
		select {
		case <-time.After(d):
			return nil
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	}
	var nodes []*proc
	var seeds []string
	for i, name := range []string{"node-a", "node-b"} {
		p := w.open(t, name)
		n := startNode(t, p, fastConfig(name, queues, seeds), taskWorkers(l, name, slow), l.onAcked)
		if i == 0 {
			seeds = []string{n.Addr()}
		}
		nodes = append(nodes, p)
	}
	producer := w.open(t, "producer")
	const jobs = 2000
	l.insert(t, producer.client, queues, jobs)
	waitFor(t, 30*time.Second, "some progress", func() bool { return l.completed() > 200 })

	for _, p := range nodes {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		require.NoError(t, p.node.Stop(ctx))
		cancel()
	}
	open := int64(0)
	for _, sh := range producer.set.All() {
		for _, q := range queues {
			c, err := sh.Engine().Counts(context.Background(), q)
			require.NoError(t, err)
			open += c.Running
		}
	}
	require.Zero(t, open, "attempts left open after every node stopped")
	done := l.completed()
	require.Less(t, done, jobs, "the stop should have interrupted work")

	p := w.open(t, "node-z")
	startNode(t, p, fastConfig("node-z", queues, nil), taskWorkers(l, "node-z", nil), l.onAcked)
	waitFor(t, 60*time.Second, "the rest to complete", func() bool { return l.completed() >= jobs })
	require.Zero(t, l.check(t))
	t.Logf("completed before stop: %d, after: %d", done, jobs-done)
}

// An operator's cancel reaches the running handler's context with worker.ErrCancelled.
func TestCancelReachesTheRunningHandler(t *testing.T) {
	w := newWorld(t)
	l := newLedger()
	queues := []string{"cancel-me"}
	causes := make(chan error, 1)
	started := make(chan int64, 1)
	hook := func(ctx context.Context, j *worker.Job[TaskArgs]) error {
		started <- j.ID
		<-ctx.Done()
		causes <- context.Cause(ctx)
		return context.Cause(ctx)
	}
	p := w.open(t, "node-a")
	startNode(t, p, fastConfig("node-a", queues, nil), taskWorkers(l, "node-a", hook), l.onAcked)
	l.insert(t, p.client, queues, 1)
	var id int64
	select {
	case id = <-started:
	case <-time.After(20 * time.Second):
		t.Fatal("the job never started")
	}
	res, err := p.client.JobCancel(context.Background(), id)
	require.NoError(t, err)
	require.True(t, res.Cancelled)
	select {
	case cause := <-causes:
		require.ErrorIs(t, cause, worker.ErrCancelled)
	case <-time.After(10 * time.Second):
		t.Fatal("the handler's context was not cancelled")
	}
	info, err := p.client.JobGet(context.Background(), id)
	require.NoError(t, err)
	require.Equal(t, engine.StateCancelled, info.State)
}

func TestConfigValidateNamesEveryProblem(t *testing.T) {
	err := node.Config{ID: "n1", Roles: []string{"worker", "janitor"}, MaxWorkers: -1,
		Queues: map[string]node.QueueConfig{"Bad Queue!": {}}, PollInterval: -time.Second}.Validate()
	require.Error(t, err)
	for _, want := range []string{"janitor", "Bad Queue!", "max_workers", "poll_interval"} {
		require.ErrorContains(t, err, want)
	}
	require.ErrorContains(t, node.Config{ID: "n1"}.Validate(), "must name the queues")
}
