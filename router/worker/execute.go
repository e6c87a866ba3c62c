package worker

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"time"
	"unicode/utf8"

	"github.com/braidq/braid/engine"
)

// Action is what becomes of an attempt after its handler returned.
type Action int

const (
	// Complete: the handler succeeded.
	Complete Action = iota + 1
	// Fail: the attempt failed; Result.Failure says whether and when it is retried.
	Fail
	// Snooze: run again after Result.Snooze without consuming the attempt.
	Snooze
	// Cancel: the handler cancelled the job for good.
	Cancel
	// GiveBack: the node stopped under the handler; the job runs again at once without
	// consuming the attempt (a snooze of 0).
	GiveBack
	// Abandon: the attempt was closed elsewhere (an operator cancelled it); nothing to
	// acknowledge.
	Abandon
)

func (a Action) String() string {
	switch a {
	case Complete:
		return "complete"
	case Fail:
		return "fail"
	case Snooze:
		return "snooze"
	case Cancel:
		return "cancel"
	case GiveBack:
		return "give_back"
	case Abandon:
		return "abandon"
	}
	return fmt.Sprintf("Action(%d)", int(a))
}

// Result is what one attempt came to, ready for the Acker.
type Result struct {
	Action   Action
	Failure  engine.Failure // with Action Fail: the error, trace, RetryAfter and Terminal to record
	Snooze   time.Duration  // with Action Snooze: the delay
	Err      error          // the handler's error (or why it never ran); nil on Complete
	Panicked bool           // the handler panicked; Failure.Trace holds the stack
	Duration time.Duration  // how long the attempt ran, decoding included
}

// attempt is what running one handler produced, before classification.
type attempt struct {
	ctx      context.Context // the handler's context (with its timeout), once set up
	err      error           // what the handler returned
	invalid  error           // the handler never ran: unknown kind or args that do not decode
	panicked bool
	panicVal any
	trace    string
}

// Execute runs one claimed attempt with its kind's worker and says what to acknowledge. The
// handler runs on the calling goroutine under ctx, bounded by the worker's Timeout (0: the
// defaultTimeout; a negative value, or 0 with defaultTimeout <= 0: none). Panics are recovered
// and recorded with their stack. The node cancels ctx with cause ErrStopping or ErrCancelled
// (context.WithCancelCause) to hand the attempt back or abandon it.
func (ws *Workers) Execute(ctx context.Context, c engine.Claimed, defaultTimeout time.Duration) Result {
	start := time.Now()
	a := &attempt{ctx: ctx}
	row, err := newJobRow(c)
	u, known := ws.units[c.Kind]
	switch {
	case err != nil:
		a.invalid = err
	case !known:
		a.invalid = &UnknownKindError{Kind: c.Kind}
	default:
		a.err = runRecovered(ctx, u, row, defaultTimeout, a)
	}
	res := classify(a, c.Receipt)
	res.Duration = time.Since(start)
	return res
}

func runRecovered(ctx context.Context, u unit, row *JobRow, defaultTimeout time.Duration, a *attempt) (err error) {
	defer func() {
		if p := recover(); p != nil {
			a.panicked, a.panicVal, a.trace = true, p, string(debug.Stack())
		}
	}()
	return u.run(ctx, row, defaultTimeout, a)
}

// Limits on what one failure records; together they stay under the engine's 64 KiB bound on a
// failure's error and trace.
const (
	maxErrorBytes = 8 << 10
	maxTraceBytes = 48 << 10
)

// classify is the one rule that turns what a handler did into an action. In order:
//
//   - args that do not decode, or a kind without a worker: terminal failure (no retry can help);
//   - an operator cancelled the running attempt (cause ErrCancelled) and the handler did not
//     succeed: Abandon, the attempt is closed already;
//   - a panic: a failure (retried) whose trace is the stack;
//   - nil: Complete;
//   - JobSnooze, JobCancel, JobDiscard: what the handler asked for, even while the node stops;
//   - the node's stop deadline passed (cause ErrStopping): GiveBack;
//   - any other error: a failure, retried after RetryAfter's delay or the backoff, prefixed
//     with "job timed out after ..." when the worker's timeout ended the handler.
func classify(a *attempt, r engine.Receipt) Result {
	failure := func(msg, trace string, retryAfter time.Duration, terminal bool) engine.Failure {
		return engine.Failure{Receipt: r, Error: truncate(msg, maxErrorBytes), Trace: truncate(trace, maxTraceBytes),
			RetryAfter: retryAfter, Terminal: terminal}
	}
	if a.invalid != nil {
		return Result{Action: Fail, Err: a.invalid, Failure: failure(a.invalid.Error(), "", 0, true)}
	}
	err := a.err
	if a.panicked {
		err = fmt.Errorf("panic: %v", a.panicVal)
	}
	cause := context.Cause(a.ctx)
	if err != nil && errors.Is(cause, ErrCancelled) {
		return Result{Action: Abandon, Err: err, Panicked: a.panicked}
	}
	if a.panicked {
		return Result{Action: Fail, Err: err, Panicked: true, Failure: failure(err.Error(), a.trace, 0, false)}
	}
	if err == nil {
		return Result{Action: Complete}
	}
	var (
		snooze  *JobSnoozeError
		cancel  *JobCancelError
		discard *JobDiscardError
		retry   *RetryAfterError
		timeout *timeoutError
	)
	switch {
	case errors.As(err, &snooze):
		return Result{Action: Snooze, Snooze: snooze.Duration, Err: err}
	case errors.As(err, &cancel):
		return Result{Action: Cancel, Err: err}
	case errors.As(err, &discard):
		return Result{Action: Fail, Err: err, Failure: failure(err.Error(), "", 0, true)}
	case errors.Is(cause, ErrStopping):
		return Result{Action: GiveBack, Err: err}
	}
	msg := err.Error()
	if errors.As(cause, &timeout) && !errors.Is(err, timeout) {
		msg = timeout.Error() + ": " + msg
	}
	var after time.Duration
	if errors.As(err, &retry) {
		after = retry.Delay
	}
	return Result{Action: Fail, Err: err, Failure: failure(msg, "", after, false)}
}

// truncate cuts s to at most n bytes without splitting a character.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	const mark = " ...(truncated)"
	s = s[:n-len(mark)]
	for range utf8.UTFMax - 1 { // drop the bytes of a character cut in two
		if r, size := utf8.DecodeLastRuneInString(s); r != utf8.RuneError || size != 1 {
			break
		}
		s = s[:len(s)-1]
	}
	return s + mark
}
