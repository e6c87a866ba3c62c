package engine

import (
	"errors"
	"fmt"
)

// ErrNotFound is returned when a job (or other object) does not exist on this shard, or was
// pruned after it ended.
var ErrNotFound = errors.New("not found")

// ValidationError is a refused input. Nothing was written.
type ValidationError struct {
	Field   string // e.g. "queue" or "jobs[3].args"
	Value   any    // the offending value (shortened when long)
	Problem string
}

func (e *ValidationError) Error() string {
	return fmt.Sprintf("invalid %s %s: %s", e.Field, shorten(e.Value), e.Problem)
}

func shorten(v any) string {
	s := fmt.Sprintf("%q", fmt.Sprint(v))
	if n, ok := v.(int); ok {
		s = fmt.Sprint(n)
	}
	if len(s) > 80 {
		s = s[:77] + `..."`
	}
	return s
}

// UniqueConflictError says a job with the same unique key is already held by a live job.
type UniqueConflictError struct {
	Queue     string
	UniqueKey string
	JobID     int64 // the job that holds the key
}

func (e *UniqueConflictError) Error() string {
	return fmt.Sprintf("queue %q: unique key %q is held by job %d", e.Queue, e.UniqueKey, e.JobID)
}

// RedirectError says this shard no longer accepts enqueues for the queue: its fence is
// draining or moved. The router refreshes its directory and retries on the new home.
type RedirectError struct {
	Queue   string
	Epoch   int64
	State   string // "draining" or "moved"
	MovedTo int    // shard id of the new home when known, else 0
}

func (e *RedirectError) Error() string {
	if e.MovedTo != 0 {
		return fmt.Sprintf("queue %q is %s on this shard (epoch %d), now on shard %d", e.Queue, e.State, e.Epoch, e.MovedTo)
	}
	return fmt.Sprintf("queue %q is %s on this shard (epoch %d)", e.Queue, e.State, e.Epoch)
}

// BreakerExcluded tells the circuit breakers that a redirect says nothing about the shard's
// health (see health.IsExcluded).
func (e *RedirectError) BreakerExcluded() bool { return true }

// IdentityError says the database carries another shard's identity.
type IdentityError struct {
	Want, Got Identity
}

func (e *IdentityError) Error() string {
	return fmt.Sprintf("database identity is shard %d of cluster %q, configured as shard %d of cluster %q",
		e.Got.ShardID, e.Got.Cluster, e.Want.ShardID, e.Want.Cluster)
}
