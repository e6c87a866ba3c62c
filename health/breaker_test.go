package health

import (
	"context"
	"errors"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/sony/gobreaker/v2"
	"github.com/stretchr/testify/require"
)

var errAdminShutdown = pgError("57P01", "terminating connection due to administrator command")

func failWith(err error) func() (int, error) {
	return func() (int, error) { return 0, err }
}

func succeed() (int, error) { return 1, nil }

// transitions records breaker state changes; OnStateChange runs under the
// breaker's lock, possibly from several goroutines.
type transitions struct {
	mu   sync.Mutex
	seen []string
}

func (r *transitions) record(_ string, from, to gobreaker.State) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.seen = append(r.seen, from.String()+"->"+to.String())
}

func (r *transitions) get() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.seen...)
}

func TestBreaker(t *testing.T) {
	t.Parallel()

	t.Run("five consecutive infra errors open it and it fails fast", func(t *testing.T) {
		t.Parallel()
		synctest.Test(t, func(t *testing.T) {
			var rec transitions
			cb := NewBreaker[int]("shard-1", BreakerSettings{OnStateChange: rec.record})
			ctx := t.Context()
			for range 4 {
				_, err := Run(ctx, cb, failWith(errAdminShutdown))
				require.ErrorIs(t, err, errAdminShutdown)
				require.Equal(t, gobreaker.StateClosed, cb.State())
			}
			_, err := Run(ctx, cb, failWith(errAdminShutdown))
			require.ErrorIs(t, err, errAdminShutdown)
			require.Equal(t, gobreaker.StateOpen, cb.State())

			_, err = Run(ctx, cb, func() (int, error) {
				t.Fatal("an open breaker ran the call")
				return 0, nil
			})
			require.ErrorIs(t, err, gobreaker.ErrOpenState)
			require.Equal(t, []string{"closed->open"}, rec.get())
		})
	})

	t.Run("non-infra errors never open it", func(t *testing.T) {
		t.Parallel()
		synctest.Test(t, func(t *testing.T) {
			cb := NewBreaker[int]("shard-1", BreakerSettings{})
			ctx := t.Context()
			nonInfra := []error{
				pgError("40001", "could not serialize access"),
				pgError("40P01", "deadlock detected"),
				pgError("23505", "duplicate key value"),
				pgError("57014", "canceling statement due to statement timeout"),
				errors.New("handler: bad args"),
			}
			for range 20 {
				for _, e := range nonInfra {
					_, err := Run(ctx, cb, failWith(e))
					require.ErrorIs(t, err, e)
				}
			}
			require.Equal(t, gobreaker.StateClosed, cb.State())
			require.Zero(t, cb.Counts().TotalFailures)

			// A non-infra error between infra errors resets the streak.
			for range 4 {
				_, _ = Run(ctx, cb, failWith(errAdminShutdown))
			}
			_, _ = Run(ctx, cb, failWith(nonInfra[0]))
			for range 4 {
				_, _ = Run(ctx, cb, failWith(errAdminShutdown))
			}
			require.Equal(t, gobreaker.StateClosed, cb.State())
		})
	})

	t.Run("excluded errors are not counted either way", func(t *testing.T) {
		t.Parallel()
		synctest.Test(t, func(t *testing.T) {
			cb := NewBreaker[int]("shard-1", BreakerSettings{})
			ctx := t.Context()
			for range 4 {
				_, _ = Run(ctx, cb, failWith(errAdminShutdown))
			}

			redirect := &redirectError{queue: "emails", movedTo: 2}
			_, err := Run(ctx, cb, failWith(redirect))
			require.ErrorIs(t, err, redirect, "the caller still sees the redirect")
			_, err = Run(ctx, cb, failWith(context.Canceled))
			require.ErrorIs(t, err, context.Canceled)

			// The caller's own deadline passes while the shard is slow: the
			// deadline error must not count against the shard.
			callerCtx, cancel := context.WithTimeout(ctx, time.Second)
			_, err = Run(callerCtx, cb, func() (int, error) {
				<-callerCtx.Done()
				return 0, callerCtx.Err()
			})
			cancel()
			require.ErrorIs(t, err, context.DeadlineExceeded)
			var marker *callerDoneError
			require.False(t, errors.As(err, &marker), "Run must not leak its exclusion marker")

			// Nor must an infra-looking error that arrives after the caller left.
			callerCtx, cancel = context.WithCancel(ctx)
			_, err = Run(callerCtx, cb, func() (int, error) {
				cancel()
				return 0, errAdminShutdown
			})
			require.ErrorIs(t, err, errAdminShutdown)

			// A caller that already gave up does not even run.
			_, err = Run(callerCtx, cb, func() (int, error) {
				t.Fatal("ran a call for a caller whose context is done")
				return 0, nil
			})
			require.ErrorIs(t, err, context.Canceled)

			counts := cb.Counts()
			require.Equal(t, uint32(4), counts.ConsecutiveFailures, "exclusions neither add failures nor reset the streak")
			require.Equal(t, uint32(4), counts.TotalExclusions)
			require.Zero(t, counts.TotalSuccesses)
			require.Equal(t, gobreaker.StateClosed, cb.State())

			// A timeout braid set itself while the caller still waits is infra:
			// it is the fifth failure and opens the breaker.
			_, err = Run(ctx, cb, func() (int, error) {
				opCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
				defer cancel()
				<-opCtx.Done()
				return 0, opCtx.Err()
			})
			require.ErrorIs(t, err, context.DeadlineExceeded)
			require.Equal(t, gobreaker.StateOpen, cb.State())
		})
	})

	t.Run("after the open timeout it half-opens and a success closes it", func(t *testing.T) {
		t.Parallel()
		synctest.Test(t, func(t *testing.T) {
			var rec transitions
			cb := NewBreaker[int]("shard-1", BreakerSettings{OnStateChange: rec.record})
			ctx := t.Context()
			for range 5 {
				_, _ = Run(ctx, cb, failWith(errAdminShutdown))
			}
			require.Equal(t, gobreaker.StateOpen, cb.State())

			time.Sleep(5*time.Second - time.Millisecond)
			require.Equal(t, gobreaker.StateOpen, cb.State(), "still open just before OpenTimeout")
			time.Sleep(2 * time.Millisecond)
			require.Equal(t, gobreaker.StateHalfOpen, cb.State())

			// One probe at a time: a second call while the probe runs is refused.
			release := make(chan struct{})
			done := make(chan error, 1)
			go func() {
				_, err := Run(ctx, cb, func() (int, error) {
					<-release
					return 1, nil
				})
				done <- err
			}()
			synctest.Wait()
			_, err := Run(ctx, cb, succeed)
			require.ErrorIs(t, err, gobreaker.ErrTooManyRequests)
			close(release)
			require.NoError(t, <-done)
			require.Equal(t, gobreaker.StateClosed, cb.State())

			v, err := Run(ctx, cb, succeed)
			require.NoError(t, err)
			require.Equal(t, 1, v)
			require.Equal(t, []string{"closed->open", "open->half-open", "half-open->closed"}, rec.get())
		})
	})

	t.Run("a failed probe opens it again for another timeout", func(t *testing.T) {
		t.Parallel()
		synctest.Test(t, func(t *testing.T) {
			cb := NewBreaker[int]("shard-1", BreakerSettings{ConsecutiveFailures: 2, OpenTimeout: time.Minute})
			ctx := t.Context()
			for range 2 {
				_, _ = Run(ctx, cb, failWith(errAdminShutdown))
			}
			require.Equal(t, gobreaker.StateOpen, cb.State())
			time.Sleep(time.Minute + time.Millisecond)
			require.Equal(t, gobreaker.StateHalfOpen, cb.State())

			// An excluded probe frees its slot without deciding anything.
			_, err := Run(ctx, cb, failWith(&redirectError{queue: "emails", movedTo: 2}))
			require.Error(t, err)
			require.Equal(t, gobreaker.StateHalfOpen, cb.State())

			_, _ = Run(ctx, cb, failWith(errAdminShutdown))
			require.Equal(t, gobreaker.StateOpen, cb.State())
			time.Sleep(time.Minute - time.Millisecond)
			require.Equal(t, gobreaker.StateOpen, cb.State())
		})
	})
}
