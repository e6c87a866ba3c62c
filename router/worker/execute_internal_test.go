package worker

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/braidq/braid/engine"
)

// TestClassifyOrder pins the precedence of classify's rules where two apply at once.
func TestClassifyOrder(t *testing.T) {
	cancelled := func(cause error) *attempt {
		ctx, cancel := contextWithCause(cause)
		cancel()
		return &attempt{ctx: ctx}
	}
	for _, tc := range []struct {
		name string
		a    *attempt
		want Action
	}{
		{"a handler that succeeds under a stop completes", cancelled(ErrStopping), Complete},
		{"an operator's cancel wins over the handler's error", withErr(cancelled(ErrCancelled), JobSnooze(time.Second)), Abandon},
		{"an operator's cancel wins over a panic", withPanic(cancelled(ErrCancelled)), Abandon},
		{"JobCancel wins over the stop", withErr(cancelled(ErrStopping), JobCancel(nil)), Cancel},
		{"JobDiscard wins over the stop", withErr(cancelled(ErrStopping), JobDiscard(nil)), Fail},
		{"JobSnooze wins over the stop", withErr(cancelled(ErrStopping), JobSnooze(time.Second)), Snooze},
		{"a plain error under a stop is handed back", withErr(cancelled(ErrStopping), errTest), GiveBack},
		{"RetryAfter under a stop is handed back", withErr(cancelled(ErrStopping), RetryAfter(time.Second, errTest)), GiveBack},
		{"a panic under a stop is a failure", withPanic(cancelled(ErrStopping)), Fail},
		{"invalid args fail even under a cancel", &attempt{ctx: cancelled(ErrCancelled).ctx, invalid: errTest}, Fail},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, classify(tc.a, engine.Receipt{}).Action)
		})
	}
}

var errTest = errorString("test error")

type errorString string

func (e errorString) Error() string { return string(e) }

func withErr(a *attempt, err error) *attempt { a.err = err; return a }

func withPanic(a *attempt) *attempt {
	a.panicked, a.panicVal, a.trace = true, "boom", "stack"
	return a
}

func contextWithCause(cause error) (context.Context, func()) {
	ctx, cancel := context.WithCancelCause(context.Background())
	return ctx, func() { cancel(cause) }
}
