package node_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/braidq/braid/engine"
	"github.com/braidq/braid/router"
	"github.com/braidq/braid/router/worker"
)

// TaskArgs are the test jobs' args.
type TaskArgs struct {
	N int `json:"n"`
}

func (TaskArgs) Kind() string { return "task" }

// ledger records what happened to every job: handler runs that returned nil, keyed by job id
// and run lease, per node; and the completions the shards applied.
type ledger struct {
	mu       sync.Mutex
	runs     map[int64]map[int64]int // job id -> run lease -> successful handler runs
	byNode   map[string]int
	applied  map[int64]int // job id -> completions the shard applied
	enqueued []int64
}

func newLedger() *ledger {
	return &ledger{runs: map[int64]map[int64]int{}, byNode: map[string]int{}, applied: map[int64]int{}}
}

func (l *ledger) ran(node string, id, lease int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.runs[id] == nil {
		l.runs[id] = map[int64]int{}
	}
	l.runs[id][lease]++
	l.byNode[node]++
}

// onAcked counts applied completions.
func (l *ledger) onAcked(acks []worker.Acked) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, a := range acks {
		if a.Err == nil && a.Action == worker.Complete && a.Outcome == engine.Applied {
			l.applied[a.Receipt.JobID]++
		}
	}
}

func (l *ledger) completed() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.applied)
}

// check asserts that every enqueued job completed exactly once: one applied completion, and
// no attempt (job id, run lease) whose handler succeeded twice. It returns how many jobs ran
// successfully more than once across attempts (legitimate only after a crash).
func (l *ledger) check(t testing.TB) (rerun int) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, id := range l.enqueued {
		require.Equalf(t, 1, l.applied[id], "job %d: applied completions", id)
		succ := 0
		for lease, n := range l.runs[id] {
			require.Equalf(t, 1, n, "job %d run lease %d: successful handler runs", id, lease)
			succ += n
		}
		if succ > 1 {
			rerun++
		}
	}
	require.Len(t, l.applied, len(l.enqueued), "completions of jobs that were never enqueued")
	return rerun
}

// taskWorkers returns workers that record each successful run in l under node's name, after
// running hook (which may block, fail or panic) when it is set.
func taskWorkers(l *ledger, node string, hook func(ctx context.Context, j *worker.Job[TaskArgs]) error) *worker.Workers {
	ws := worker.NewWorkers()
	worker.AddWorker(ws, worker.WorkFunc(func(ctx context.Context, j *worker.Job[TaskArgs]) error {
		if hook != nil {
			if err := hook(ctx, j); err != nil {
				return err
			}
		}
		l.ran(node, j.ID, j.RunLease)
		return nil
	}))
	return ws
}

// insert enqueues n jobs spread over queues in batches, recording their ids.
func (l *ledger) insert(t testing.TB, c *router.Client, queues []string, n int) {
	t.Helper()
	const batch = 1000
	for start := 0; start < n; start += batch {
		params := make([]router.InsertManyParams, 0, batch)
		for i := start; i < min(start+batch, n); i++ {
			params = append(params, router.InsertManyParams{Args: TaskArgs{N: i},
				InsertOpts: &router.InsertOpts{Queue: queues[i%len(queues)]}})
		}
		res, err := c.InsertMany(context.Background(), params)
		require.NoError(t, err)
		l.mu.Lock()
		for _, r := range res {
			l.enqueued = append(l.enqueued, r.JobID)
		}
		l.mu.Unlock()
	}
}

func queueNames(prefix string, n int) []string {
	qs := make([]string, n)
	for i := range qs {
		qs[i] = fmt.Sprintf("%s-%d", prefix, i)
	}
	return qs
}
