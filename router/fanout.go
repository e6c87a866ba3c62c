package router

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"

	"golang.org/x/sync/errgroup"

	"github.com/braidq/braid/engine"
	"github.com/braidq/braid/shard"
)

// How the client calls shards: the one shard a job id names (onJobShard), each shard of a
// call's jobs once, grouped by shard (perJobShard, and insert's rounds), or every shard of the
// set (askAll). Every call goes through the shard's breaker with the client's timeout, and
// shards are called at once (eachShard).

// BatchError says a call spanning shards handled only some of its jobs. Each shard's part is
// one call to that shard, so a shard that fails leaves exactly its jobs unhandled while the
// jobs of the other shards are done; every job not listed was handled. InsertMany,
// DeadLetterRetry and DeadLetterPurge return it, with nil results for the jobs listed.
//
// A listed job was not handled unless its shard failed after committing (a reply lost to a
// timeout or a dropped connection). Retrying dead-letter ids is safe either way; re-inserting
// a job can enqueue it twice unless it has a unique key.
type BatchError struct {
	// Op names the call: "insert", "dead letter retry" or "dead letter purge".
	Op string
	// Failures groups the jobs that were not handled by cause: one entry per shard whose call
	// failed, or that this client does not have (ShardID 0 for jobs whose queue could not be
	// placed or routed).
	Failures []BatchFailure
	// Total is the number of jobs in the call.
	Total int
}

// BatchFailure is a group of jobs that were not handled, and why.
type BatchFailure struct {
	ShardID int
	Jobs    []int // indexes into the call's jobs (or job ids), ascending
	Err     error
}

// Unhandled returns the indexes of every job that was not handled, ascending.
func (e *BatchError) Unhandled() []int {
	var out []int
	for _, f := range e.Failures {
		out = append(out, f.Jobs...)
	}
	slices.Sort(out)
	return out
}

func (e *BatchError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %d of %d jobs not handled", e.Op, len(e.Unhandled()), e.Total)
	for _, f := range e.Failures {
		if f.ShardID != 0 {
			fmt.Fprintf(&b, "; shard %d (%s): %v", f.ShardID, jobCount(len(f.Jobs)), f.Err)
		} else {
			fmt.Fprintf(&b, "; %s: %v", jobCount(len(f.Jobs)), f.Err)
		}
	}
	return b.String()
}

// Unwrap lets errors.As find the causes (*ShardUnavailableError, *RedirectError...).
func (e *BatchError) Unwrap() []error {
	out := make([]error, len(e.Failures))
	for i, f := range e.Failures {
		out[i] = f.Err
	}
	return out
}

func jobCount(n int) string {
	if n == 1 {
		return "1 job"
	}
	return fmt.Sprintf("%d jobs", n)
}

// failures collects the jobs a call could not handle, by shard, with their distinct causes.
type failures struct {
	mu     sync.Mutex
	byKey  map[int]*BatchFailure
	causes map[int][]error
}

func newFailures() *failures {
	return &failures{byKey: map[int]*BatchFailure{}, causes: map[int][]error{}}
}

func (f *failures) add(shardID int, err error, idx ...int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	g, ok := f.byKey[shardID]
	if !ok {
		g = &BatchFailure{ShardID: shardID}
		f.byKey[shardID] = g
	}
	g.Jobs = append(g.Jobs, idx...)
	for _, e := range f.causes[shardID] {
		if e.Error() == err.Error() {
			return
		}
	}
	f.causes[shardID] = append(f.causes[shardID], err)
}

// err returns the *BatchError of a call of total jobs named op, or nil when every job was
// handled.
func (f *failures) err(op string, total int) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.byKey) == 0 {
		return nil
	}
	e := &BatchError{Op: op, Total: total}
	for _, id := range slices.Sorted(maps.Keys(f.byKey)) {
		g := f.byKey[id]
		slices.Sort(g.Jobs)
		g.Err = errors.Join(f.causes[id]...)
		if len(f.causes[id]) == 1 {
			g.Err = f.causes[id][0]
		}
		e.Failures = append(e.Failures, *g)
	}
	return e
}

// eachShard runs call for every shard id at once and waits for all of them. call records its
// own results and failures: it runs concurrently with the others.
func eachShard(ids []int, call func(shardID int)) {
	var g errgroup.Group
	for _, id := range ids {
		g.Go(func() error {
			call(id)
			return nil
		})
	}
	_ = g.Wait()
}

// invalidJobID refuses an id that names no shard: ids carry their shard (1..32767) in their top
// 16 bits (engine.ShardOf), so an id below 1<<48 was never handed out.
func invalidJobID(field string, id int64) error {
	return &ValidationError{Field: field, Value: id, Problem: "is not a braid job id: it names no shard (job id >> 48 must be 1..32767)"}
}

// onJobShard runs fn on the shard the job id names (engine.ShardOf), through the shard's
// breaker with the client's timeout, whatever the current placement of the job's queue: a job
// stays on the shard that made it. An id of a shard this client does not have wraps
// *ShardNotConfiguredError and ErrNotFound.
func onJobShard[T any](ctx context.Context, c *Client, id int64, fn func(ctx context.Context, e *engine.Engine) (T, error)) (T, error) {
	var zero T
	sid := engine.ShardOf(id)
	if sid < 1 {
		return zero, invalidJobID("job_id", id)
	}
	s, ok := c.shards.Get(sid)
	if !ok {
		return zero, fmt.Errorf("job %d: %w: %w", id, &ShardNotConfiguredError{ShardID: sid}, ErrNotFound)
	}
	return shard.Call(ctx, s, c.cfg.EnqueueTimeout, func(ctx context.Context) (T, error) {
		return fn(ctx, s.Engine())
	})
}

// perJobShard groups ids by the shard each names and calls each of those shards once with its
// ids (call answers one result per id, in the order given), the shards at once. It returns the
// results in the order of ids, nil for the ids of a shard that failed or that this client does
// not have, and then a *BatchError named op listing exactly those. An id that names no shard
// refuses the whole call before any shard is called.
func perJobShard[R any](ctx context.Context, c *Client, op string, ids []int64,
	call func(ctx context.Context, e *engine.Engine, ids []int64) ([]R, error)) ([]*R, error) {
	groups := map[int][]int{} // shard id -> indexes into ids
	var bad []error
	for i, id := range ids {
		sid := engine.ShardOf(id)
		if sid < 1 {
			bad = append(bad, invalidJobID(fmt.Sprintf("job_ids[%d]", i), id))
			continue
		}
		groups[sid] = append(groups[sid], i)
	}
	if err := errors.Join(bad...); err != nil {
		return nil, err
	}
	results := make([]*R, len(ids))
	fail := newFailures()
	eachShard(slices.Sorted(maps.Keys(groups)), func(sid int) {
		idx := groups[sid]
		s, ok := c.shards.Get(sid)
		if !ok {
			fail.add(sid, &ShardNotConfiguredError{ShardID: sid}, idx...)
			return
		}
		batch := make([]int64, len(idx))
		for k, i := range idx {
			batch[k] = ids[i]
		}
		res, err := shard.Call(ctx, s, c.cfg.EnqueueTimeout, func(ctx context.Context) ([]R, error) {
			return call(ctx, s.Engine(), batch)
		})
		if err != nil {
			fail.add(sid, err, idx...)
			return
		}
		for k, i := range idx { // each shard writes only its own indexes
			results[i] = &res[k]
		}
	})
	return results, fail.err(op, len(ids))
}

// askAll calls fn on every shard of the set at once. It returns the answers by shard id, the
// shards that could not be asked (ascending) and their causes joined.
func askAll[T any](ctx context.Context, c *Client, fn func(ctx context.Context, e *engine.Engine) (T, error)) (map[int]T, []int, error) {
	var (
		mu      sync.Mutex
		answers = map[int]T{}
		missing []int
		errs    []error
	)
	eachShard(c.shards.IDs(), func(sid int) {
		s, _ := c.shards.Get(sid)
		v, err := shard.Call(ctx, s, c.cfg.EnqueueTimeout, func(ctx context.Context) (T, error) {
			return fn(ctx, s.Engine())
		})
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			missing = append(missing, sid)
			errs = append(errs, err)
			return
		}
		answers[sid] = v
	})
	slices.Sort(missing)
	return answers, missing, errors.Join(errs...)
}
