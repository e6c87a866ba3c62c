package router

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/braidq/braid/engine"
	"github.com/braidq/braid/shard"
)

// JobArgs is a job's arguments: a struct encoded as JSON, whose Kind names the worker that runs
// it.
type JobArgs interface {
	Kind() string
}

// JobArgsWithInsertOpts is JobArgs that carry their own default insert options; options given
// to Insert override them field by field.
type JobArgsWithInsertOpts interface {
	JobArgs
	InsertOpts() InsertOpts
}

// InsertOpts are a job's insert options. Zero fields take the args' own InsertOpts (when they
// have them), then the defaults.
type InsertOpts struct {
	// Queue is the job's queue, default Config.DefaultQueue.
	Queue string
	// Priority is 1 (highest) .. 4; 0 means 1.
	Priority int
	// MaxAttempts is how many attempts the job gets; 0 means the queue's setting.
	MaxAttempts int
	// ScheduledAt makes the job available at that time; zero means now.
	ScheduledAt time.Time
	// Metadata is an optional JSON object kept with the job.
	Metadata []byte
	// OrderingKey: jobs of a queue with the same key share a lane, so they run in order.
	OrderingKey string
	// UniqueKey: while a job of the queue with this key is live, another is refused.
	UniqueKey string
}

// InsertManyParams is one job of InsertMany.
type InsertManyParams struct {
	Args       JobArgs
	InsertOpts *InsertOpts
}

// InsertResult is where a job went.
type InsertResult struct {
	JobID     int64 // the new job; with UniqueSkippedAsDuplicate, the job that holds the key
	ShardID   int   // the shard holding the job (engine.ShardOf(JobID))
	Queue     string
	Scheduled bool // ScheduledAt is in the future: the job waits to become available
	// UniqueSkippedAsDuplicate says nothing was inserted: the unique key is held by JobID.
	UniqueSkippedAsDuplicate bool
}

// Typed errors that travel through the client from the engine and the shard layer. Branch on
// them with errors.As.
type (
	// ValidationError is refused input; nothing was written. Field names the bad field
	// (jobs[i].field for InsertMany).
	ValidationError = engine.ValidationError
	// UniqueConflictError says a live job already holds the unique key.
	UniqueConflictError = engine.UniqueConflictError
	// RedirectError says a shard refused a queue that moved away; the client retries on the
	// new home itself and returns it only when it could not find one in time.
	RedirectError = engine.RedirectError
	// ShardUnavailableError says a shard cannot be used now (its breaker is open, or it failed
	// for an infrastructure reason); it names the shard.
	ShardUnavailableError = shard.UnavailableError
)

// ErrNotFound is wrapped when a job does not exist (or was pruned after it ended).
var ErrNotFound = engine.ErrNotFound

// Insert enqueues one job on its queue's shard. A held unique key returns the result (with
// UniqueSkippedAsDuplicate and the holder's id) and a *UniqueConflictError.
func (c *Client) Insert(ctx context.Context, args JobArgs, opts *InsertOpts) (*InsertResult, error) {
	job, err := c.job(args, opts, "")
	if err != nil {
		return nil, err
	}
	res, err := c.insert(ctx, []engine.Job{job})
	if err != nil {
		var many *BatchError
		if errors.As(err, &many) && len(many.Failures) == 1 {
			return nil, many.Failures[0].Err
		}
		return nil, err
	}
	r := res[0]
	if r.UniqueSkippedAsDuplicate {
		return r, &UniqueConflictError{Queue: job.Queue, UniqueKey: job.UniqueKey, JobID: r.JobID}
	}
	return r, nil
}

// InsertMany enqueues jobs of any queues: grouped by shard, one call (one transaction) per
// shard, the shards in parallel. Invalid input refuses the whole call before any write. When
// some shards fail, the jobs sent to the others are enqueued: the error is a *BatchError that
// says exactly which jobs were not, and their results are nil. A job whose unique key is
// held is reported with UniqueSkippedAsDuplicate, not as an error.
func (c *Client) InsertMany(ctx context.Context, params []InsertManyParams) ([]*InsertResult, error) {
	jobs, err := c.jobsOf(params)
	if err != nil {
		return nil, err
	}
	return c.insert(ctx, jobs)
}

// InsertTx enqueues one job in tx, a transaction the caller holds on the database of the
// job's queue's shard, so the job commits or rolls back with the caller's own writes. When the
// queue lives on another shard it is refused (*WrongShardError) before anything is written.
// A redirect (the queue is moving away) aborts tx, as any failed statement does: the caller
// retries with a new transaction. It reads the shard identity through tx (one round trip) and
// does not use the shard's breaker: tx is the caller's connection.
func (c *Client) InsertTx(ctx context.Context, tx pgx.Tx, args JobArgs, opts *InsertOpts) (*InsertResult, error) {
	job, err := c.job(args, opts, "")
	if err != nil {
		return nil, err
	}
	res, err := c.insertTx(ctx, tx, []engine.Job{job})
	if err != nil {
		return nil, err
	}
	r := res[0]
	if r.UniqueSkippedAsDuplicate {
		return r, &UniqueConflictError{Queue: job.Queue, UniqueKey: job.UniqueKey, JobID: r.JobID}
	}
	return r, nil
}

// InsertManyTx is InsertMany inside tx, a transaction on the shard every job's queue lives on
// (see InsertTx).
func (c *Client) InsertManyTx(ctx context.Context, tx pgx.Tx, params []InsertManyParams) ([]*InsertResult, error) {
	jobs, err := c.jobsOf(params)
	if err != nil {
		return nil, err
	}
	return c.insertTx(ctx, tx, jobs)
}

// WrongShardError refuses InsertTx: the caller's transaction is on another shard than the
// queue's home, and braid never spills a queue to a shard the directory does not name.
type WrongShardError struct {
	Queue     string
	HomeShard int // where the queue lives
	TxShard   int // the shard the transaction is on
}

func (e *WrongShardError) Error() string {
	return fmt.Sprintf("queue %q lives on shard %d, but the transaction is on shard %d", e.Queue, e.HomeShard, e.TxShard)
}

// job turns args and options into an engine job and checks it as the engine would.
func (c *Client) job(args JobArgs, opts *InsertOpts, prefix string) (engine.Job, error) {
	if args == nil {
		return engine.Job{}, &ValidationError{Field: prefix + "args", Value: nil, Problem: "must not be nil"}
	}
	var o InsertOpts
	if a, ok := args.(JobArgsWithInsertOpts); ok {
		o = a.InsertOpts()
	}
	if opts != nil {
		o = mergeOpts(o, *opts)
	}
	body, err := json.Marshal(args)
	if err != nil {
		return engine.Job{}, &ValidationError{Field: prefix + "args", Value: fmt.Sprintf("%T", args), Problem: "cannot be encoded as JSON: " + err.Error()}
	}
	j := engine.Job{
		Queue:       o.Queue,
		Kind:        args.Kind(),
		Args:        body,
		Metadata:    o.Metadata,
		Priority:    o.Priority,
		MaxAttempts: o.MaxAttempts,
		RunAt:       o.ScheduledAt,
		OrderingKey: o.OrderingKey,
		UniqueKey:   o.UniqueKey,
	}
	if j.Queue == "" {
		j.Queue = c.cfg.DefaultQueue
	}
	if err := engine.ValidateJob(j, prefix, c.cfg.MaxArgsBytes); err != nil {
		return engine.Job{}, err
	}
	return j, nil
}

// mergeOpts returns base with every non-zero field of over.
func mergeOpts(base, over InsertOpts) InsertOpts {
	if over.Queue != "" {
		base.Queue = over.Queue
	}
	if over.Priority != 0 {
		base.Priority = over.Priority
	}
	if over.MaxAttempts != 0 {
		base.MaxAttempts = over.MaxAttempts
	}
	if !over.ScheduledAt.IsZero() {
		base.ScheduledAt = over.ScheduledAt
	}
	if over.Metadata != nil {
		base.Metadata = over.Metadata
	}
	if over.OrderingKey != "" {
		base.OrderingKey = over.OrderingKey
	}
	if over.UniqueKey != "" {
		base.UniqueKey = over.UniqueKey
	}
	return base
}

// insert routes valid jobs and enqueues them, in rounds: each round groups the pending jobs by
// their queue's home, sends one EnqueueMany per shard, all shards at once, and keeps the
// groups a shard refused with a redirect for the next round, after refreshing the directory
// (and backing off while the directory does not show the move yet). A group is one shard
// transaction, so a redirect for one queue sends its whole group to the next round.
func (c *Client) insert(ctx context.Context, jobs []engine.Job) ([]*InsertResult, error) {
	results := make([]*InsertResult, len(jobs))
	fail := newFailures()
	pending := make([]int, len(jobs))
	for i := range pending {
		pending[i] = i
	}
	for round := 0; len(pending) > 0; round++ {
		groups := map[int][]int{}
		type placed struct {
			e   Entry
			err error
		}
		homes := map[string]placed{} // one lookup (or placement) per queue per round
		for _, i := range pending {
			h, ok := homes[jobs[i].Queue]
			if !ok {
				h.e, h.err = c.home(ctx, jobs[i].Queue)
				homes[jobs[i].Queue] = h
			}
			if h.err != nil {
				fail.add(0, h.err, i)
				continue
			}
			groups[h.e.ShardID] = append(groups[h.e.ShardID], i)
		}
		var (
			mu         sync.Mutex
			redirected []int
			refusals   = map[int]*RedirectError{} // by the refusing shard
		)
		eachShard(slices.Sorted(maps.Keys(groups)), func(id int) {
			idx := groups[id]
			res, err := c.enqueueOn(ctx, id, jobs, idx)
			mu.Lock()
			defer mu.Unlock()
			var redirect *RedirectError
			switch {
			case err == nil:
				for k, i := range idx {
					r := res[k]
					results[i] = &InsertResult{JobID: r.JobID, ShardID: engine.ShardOf(r.JobID), Queue: jobs[i].Queue,
						Scheduled: r.Scheduled, UniqueSkippedAsDuplicate: r.Duplicate}
				}
			case errors.As(err, &redirect):
				redirected = append(redirected, idx...)
				refusals[id] = redirect
			default:
				fail.add(id, err, idx...)
			}
		})
		if len(redirected) == 0 {
			break
		}
		if round+1 >= c.cfg.RedirectAttempts {
			for id, r := range refusals {
				fail.add(id, fmt.Errorf("shard %d: gave up after %d redirects: %w", id, c.cfg.RedirectAttempts, r), groups[id]...)
			}
			break
		}
		if err := c.dir.refresh(ctx, c.cat); err != nil {
			for id, r := range refusals {
				fail.add(id, fmt.Errorf("shard %d: %w; directory refresh: %w", id, r, err), groups[id]...)
			}
			break
		}
		// A refusing shard that the directory still names as the queue's home means the move
		// is not published yet: wait for it. Otherwise the new home is known: retry at once.
		wait := false
		for id, r := range refusals {
			if e, ok := c.dir.lookup(r.Queue); ok && e.ShardID == id {
				wait = true
			}
		}
		if wait {
			if err := sleep(ctx, backoff(round, c.cfg.RedirectBackoff)); err != nil {
				for id, r := range refusals {
					fail.add(id, fmt.Errorf("shard %d: %w: %w", id, r, err), groups[id]...)
				}
				break
			}
		}
		slices.Sort(redirected)
		pending = redirected
	}
	if err := fail.err("insert", len(jobs)); err != nil {
		return results, err
	}
	return results, nil
}

// enqueueOn sends the jobs at idx to shard id in one call through its breaker.
func (c *Client) enqueueOn(ctx context.Context, id int, jobs []engine.Job, idx []int) ([]engine.EnqueueResult, error) {
	s, err := c.shard(id, jobs[idx[0]].Queue)
	if err != nil {
		return nil, err
	}
	batch := make([]engine.Job, len(idx))
	for k, i := range idx {
		batch[k] = jobs[i]
	}
	return shard.Call(ctx, s, c.cfg.EnqueueTimeout, func(ctx context.Context) ([]engine.EnqueueResult, error) {
		return s.Engine().EnqueueMany(ctx, batch)
	})
}

// insertTx enqueues jobs in the caller's transaction after checking that every job's queue
// lives on the transaction's shard.
func (c *Client) insertTx(ctx context.Context, tx pgx.Tx, jobs []engine.Job) ([]*InsertResult, error) {
	if len(jobs) == 0 {
		return nil, nil
	}
	homes := make([]int, len(jobs))
	for i, j := range jobs {
		e, err := c.home(ctx, j.Queue)
		if err != nil {
			return nil, err
		}
		homes[i] = e.ShardID
	}
	s, err := c.shard(homes[0], jobs[0].Queue)
	if err != nil {
		return nil, err
	}
	txShard, err := s.Engine().ShardOfTx(ctx, tx)
	if err != nil {
		return nil, fmt.Errorf("insert tx: %w", err)
	}
	for i, j := range jobs {
		if homes[i] != txShard {
			return nil, &WrongShardError{Queue: j.Queue, HomeShard: homes[i], TxShard: txShard}
		}
	}
	res, err := s.Engine().EnqueueTx(ctx, tx, jobs)
	if err != nil {
		return nil, err
	}
	out := make([]*InsertResult, len(jobs))
	for i, r := range res {
		out[i] = &InsertResult{JobID: r.JobID, ShardID: engine.ShardOf(r.JobID), Queue: jobs[i].Queue,
			Scheduled: r.Scheduled, UniqueSkippedAsDuplicate: r.Duplicate}
	}
	return out, nil
}

// jobsOf turns a bulk call's params into engine jobs, naming every bad one (jobs[i].field).
func (c *Client) jobsOf(params []InsertManyParams) ([]engine.Job, error) {
	jobs := make([]engine.Job, len(params))
	var errs []error
	for i, p := range params {
		j, err := c.job(p.Args, p.InsertOpts, fmt.Sprintf("jobs[%d].", i))
		if err != nil {
			errs = append(errs, err)
			continue
		}
		jobs[i] = j
	}
	return jobs, errors.Join(errs...)
}
