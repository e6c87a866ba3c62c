package shard

import (
	"errors"
	"fmt"

	"github.com/sony/gobreaker/v2"
)

// UnavailableError says a shard cannot be used now: its breaker is open (the call was not
// tried), or the call failed for an infrastructure reason (connection refused or lost, server
// shutting down, braid's own timeout). Err is the cause. Other shards are not affected.
type UnavailableError struct {
	ShardID int
	Name    string
	Err     error
}

func (e *UnavailableError) Error() string {
	if e.BreakerOpen() {
		return fmt.Sprintf("shard %d (%s) is unavailable: circuit breaker open after repeated failures", e.ShardID, e.Name)
	}
	return fmt.Sprintf("shard %d (%s) is unavailable: %v", e.ShardID, e.Name, e.Err)
}

func (e *UnavailableError) Unwrap() error { return e.Err }

// BreakerOpen reports whether the breaker refused the call without trying it (it is open, or
// half-open with its probe already running): the caller failed fast.
func (e *UnavailableError) BreakerOpen() bool {
	return errors.Is(e.Err, gobreaker.ErrOpenState) || errors.Is(e.Err, gobreaker.ErrTooManyRequests)
}
