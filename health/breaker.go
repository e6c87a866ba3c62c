package health

import (
	"cmp"
	"context"
	"time"

	"github.com/sony/gobreaker/v2"
)

// BreakerSettings tunes a breaker built by NewBreaker. The zero value is
// usable: every zero field takes its default.
type BreakerSettings struct {
	// ConsecutiveFailures is how many infrastructure errors in a row open the
	// breaker. Default 5.
	ConsecutiveFailures uint32
	// OpenTimeout is how long the breaker stays open before it lets a probe
	// through (half-open). Default 5s.
	OpenTimeout time.Duration
	// HalfOpenMaxRequests is how many probes may run at once while half-open;
	// that many successes in a row close the breaker again. Default 1.
	HalfOpenMaxRequests uint32
	// OnStateChange, if set, is called on every transition, under the
	// breaker's lock: it must not call back into the breaker.
	OnStateChange func(name string, from, to gobreaker.State)
}

func (s BreakerSettings) withDefaults() BreakerSettings {
	s.ConsecutiveFailures = cmp.Or(s.ConsecutiveFailures, 5)
	s.OpenTimeout = cmp.Or(s.OpenTimeout, 5*time.Second)
	s.HalfOpenMaxRequests = cmp.Or(s.HalfOpenMaxRequests, 1)
	return s
}

// NewBreaker returns a circuit breaker that counts only infrastructure errors
// (IsInfraError) as failures, treats every other error as proof that the shard
// answered (a success), and ignores excluded errors (redirects, cancellations,
// and errors marked by Run because the caller gave up).
//
// Call it through Run, not Execute, so that a caller whose context is done is
// never counted against the shard.
func NewBreaker[T any](name string, s BreakerSettings) *gobreaker.CircuitBreaker[T] {
	s = s.withDefaults()
	return gobreaker.NewCircuitBreaker[T](gobreaker.Settings{
		Name:        name,
		MaxRequests: s.HalfOpenMaxRequests,
		Timeout:     s.OpenTimeout,
		// Interval 0: counts are never reset while closed; only consecutive
		// failures matter, and any success resets them.
		ReadyToTrip: func(c gobreaker.Counts) bool {
			return c.ConsecutiveFailures >= s.ConsecutiveFailures
		},
		OnStateChange: s.OnStateChange,
		IsSuccessful:  func(err error) bool { return !IsInfraError(err) },
		IsExcluded:    isExcludedError,
	})
}

// callerDoneError marks an error returned after the caller's context was done,
// so the breaker's IsExcluded hook (which sees only the error) can skip it.
// Run strips it again before returning.
type callerDoneError struct {
	err error
}

func (e *callerDoneError) Error() string { return e.err.Error() }
func (e *callerDoneError) Unwrap() error { return e.err }

// Run executes fn through cb on behalf of a caller whose context is ctx.
//
// ctx must be the caller's context, not one braid derived from it to add its
// own timeout: an error returned once ctx is done is not counted (IsExcluded),
// while a deadline braid set itself and hit while ctx is still alive counts as
// an infrastructure failure. When ctx is already done, fn is not run and
// ctx.Err() is returned. When the breaker rejects the call, the error is
// gobreaker.ErrOpenState or gobreaker.ErrTooManyRequests.
func Run[T any](ctx context.Context, cb *gobreaker.CircuitBreaker[T], fn func() (T, error)) (T, error) {
	if err := ctx.Err(); err != nil {
		var zero T
		return zero, err
	}
	v, err := cb.Execute(func() (T, error) {
		v, err := fn()
		if err != nil && ctx.Err() != nil {
			return v, &callerDoneError{err: err}
		}
		return v, err
	})
	// Execute returns fn's error as is, so a direct type check suffices; the
	// marker must not leak to callers.
	if cd, ok := err.(*callerDoneError); ok { //nolint:errorlint // our own unwrapped marker
		return v, cd.err
	}
	return v, err
}
