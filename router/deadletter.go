package router

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/braidq/braid/engine"
)

// DeadLetter is one dead-lettered job; it lives on the shard its JobID names (engine.ShardOf).
type DeadLetter = engine.DeadLetter

// DeadLetterRetryResult is what DeadLetterRetry did with one id: Retried (back to available,
// attempts reset), or kept because a live job holds its unique key (HeldBy). Neither means the
// id was not a dead letter: already retried or purged, never dead-lettered, or unknown.
type DeadLetterRetryResult = engine.DeadLetterRetryResult

// DeadLetterPurgeResult is what DeadLetterPurge did with one id.
type DeadLetterPurgeResult struct {
	JobID int64
	// Purged says the dead letter was deleted for good. False means the id was not a dead
	// letter: already retried or purged, never dead-lettered, or unknown.
	Purged bool
}

// maxDeadLetterPage bounds DeadLetters' limit, as each shard's engine does.
const maxDeadLetterPage = 1000

// DeadLetterList is one page of a queue's dead letters over every shard.
type DeadLetterList struct {
	Queue string
	// Letters are newest first: by the time each was dead-lettered, then by job id, descending.
	Letters []DeadLetter
	// Missing lists the shards that could not be asked: the page lacks their letters.
	Missing []int
}

// DeadLetters returns up to limit (1..1000) of the queue's dead letters, newest first, from
// every shard of the set, asked in parallel: a queue's dead letters stay on every shard it
// ever lived on.
//
// Paging: pass the last letter of a page as after for the next page (nil for the first). The
// cursor is that letter's (dead-lettered time, job id), an order every shard shares because
// job ids are unique across shards; each shard returns its newest limit letters behind the
// cursor and the merge keeps the newest limit of them. So a pass over the pages lists every
// letter that was there when it began exactly once, unless it is retried or purged meanwhile.
// A letter dead-lettered during a pass sorts ahead of the cursor and shows on the next pass
// from the top, or, when its shard's clock runs behind the others', on a later page of this
// one. Times come from each shard's own clock, so newest first across shards is as exact as
// their clocks agree.
//
// When some shards cannot be asked, the page holds the other shards' letters with Missing set
// and an error joining the causes. Paging on from such a page skips the missing shards'
// letters in its range: ask for the same page again instead.
func (c *Client) DeadLetters(ctx context.Context, queue string, limit int, after *DeadLetter) (DeadLetterList, error) {
	var bad []error
	if err := engine.ValidateQueue(queue); err != nil {
		bad = append(bad, err)
	}
	if limit < 1 || limit > maxDeadLetterPage {
		bad = append(bad, &ValidationError{Field: "limit", Value: limit, Problem: fmt.Sprintf("must be 1..%d", maxDeadLetterPage)})
	}
	if err := errors.Join(bad...); err != nil {
		return DeadLetterList{}, err
	}
	page := engine.DeadLetterPage{Queue: queue, Limit: limit, After: after}
	byShard, missing, err := askAll(ctx, c, func(ctx context.Context, e *engine.Engine) ([]DeadLetter, error) {
		return e.DeadLetters(ctx, page)
	})
	list := DeadLetterList{Queue: queue, Missing: missing}
	for _, letters := range byShard {
		list.Letters = append(list.Letters, letters...)
	}
	slices.SortFunc(list.Letters, newestFirst)
	list.Letters = list.Letters[:min(limit, len(list.Letters))]
	if err != nil {
		return list, fmt.Errorf("dead letters of %q: %d of %d shards missing: %w", queue, len(missing), len(c.shards.IDs()), err)
	}
	return list, nil
}

// newestFirst orders letters as every shard pages them: (dead-lettered time, job id)
// descending. Job ids are unique across shards, so the order is total.
func newestFirst(a, b DeadLetter) int {
	if o := b.DeadAt.Compare(a.DeadAt); o != 0 {
		return o
	}
	return cmp.Compare(b.JobID, a.JobID)
}

// DeadLetterRetry makes dead letters available again with their attempts reset (same job id,
// error history kept), each on the shard its id names: the ids are grouped by shard, one call
// per shard, the shards in parallel. The results are in the order of jobIDs (a repeated id
// gets the same result at each place). When some shards fail, the ids of the others are
// handled: the error is a *BatchError that lists exactly the indexes of the ids that were not,
// by shard (a *ShardUnavailableError or *ShardNotConfiguredError naming it), and their
// results are nil. An id that names no shard refuses the whole call before any shard is
// called.
func (c *Client) DeadLetterRetry(ctx context.Context, jobIDs []int64) ([]*DeadLetterRetryResult, error) {
	return perJobShard(ctx, c, "dead letter retry", jobIDs, func(ctx context.Context, e *engine.Engine, ids []int64) ([]DeadLetterRetryResult, error) {
		done, err := e.DeadLetterRetry(ctx, ids)
		if err != nil {
			return nil, err
		}
		byID := make(map[int64]DeadLetterRetryResult, len(done))
		for _, r := range done {
			byID[r.JobID] = r
		}
		out := make([]DeadLetterRetryResult, len(ids))
		for k, id := range ids {
			out[k] = byID[id] // absent: not a dead letter
			out[k].JobID = id
		}
		return out, nil
	})
}

// DeadLetterPurge deletes dead letters for good, each on the shard its id names, grouped and
// reported as DeadLetterRetry does.
func (c *Client) DeadLetterPurge(ctx context.Context, jobIDs []int64) ([]*DeadLetterPurgeResult, error) {
	return perJobShard(ctx, c, "dead letter purge", jobIDs, func(ctx context.Context, e *engine.Engine, ids []int64) ([]DeadLetterPurgeResult, error) {
		purged, err := e.DeadLetterPurge(ctx, ids)
		if err != nil {
			return nil, err
		}
		gone := make(map[int64]bool, len(purged))
		for _, id := range purged {
			gone[id] = true
		}
		out := make([]DeadLetterPurgeResult, len(ids))
		for k, id := range ids {
			out[k] = DeadLetterPurgeResult{JobID: id, Purged: gone[id]}
		}
		return out, nil
	})
}
