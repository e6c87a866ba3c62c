package worker

import (
	"errors"
	"fmt"
	"time"
)

// JobSnooze makes the job run again after d without consuming an attempt. d <= 0 makes it
// due at once.
func JobSnooze(d time.Duration) error { return &JobSnoozeError{Duration: max(d, 0)} }

// JobCancel cancels the job for good: it ends in state cancelled and is not retried. err says
// why and is logged; the engine keeps no error for a cancel.
func JobCancel(err error) error { return &JobCancelError{Err: err} }

// JobDiscard ends the job now without retrying it, whatever attempts remain: it is
// dead-lettered (or failed, when its queue has no dead-letter table). err joins its history.
func JobDiscard(err error) error { return &JobDiscardError{Err: err} }

// RetryAfter retries the job after d instead of the exponential backoff, consuming an attempt
// like any error; when none remains the job is dead-lettered as usual. d <= 0 keeps the
// backoff.
func RetryAfter(d time.Duration, err error) error {
	return &RetryAfterError{Delay: max(d, 0), Err: err}
}

// JobSnoozeError is returned by JobSnooze.
type JobSnoozeError struct{ Duration time.Duration }

func (e *JobSnoozeError) Error() string { return fmt.Sprintf("job snoozed for %s", e.Duration) }

// JobCancelError is returned by JobCancel.
type JobCancelError struct{ Err error }

func (e *JobCancelError) Error() string { return prefixed("job cancelled", e.Err) }
func (e *JobCancelError) Unwrap() error { return e.Err }

// JobDiscardError is returned by JobDiscard.
type JobDiscardError struct{ Err error }

func (e *JobDiscardError) Error() string { return prefixed("job discarded", e.Err) }
func (e *JobDiscardError) Unwrap() error { return e.Err }

// RetryAfterError is returned by RetryAfter.
type RetryAfterError struct {
	Delay time.Duration
	Err   error
}

func (e *RetryAfterError) Error() string {
	return prefixed(fmt.Sprintf("retry after %s", e.Delay), e.Err)
}
func (e *RetryAfterError) Unwrap() error { return e.Err }

// UnknownKindError is the error of an attempt whose kind has no registered worker.
type UnknownKindError struct{ Kind string }

func (e *UnknownKindError) Error() string {
	return fmt.Sprintf("no worker registered for kind %q", e.Kind)
}

func prefixed(what string, err error) string {
	if err == nil {
		return what
	}
	return what + ": " + err.Error()
}

// Context causes the node sets on a handler's context; Execute turns them into actions.
var (
	// ErrStopping: the node's stop deadline passed while the handler ran. The attempt is handed
	// back (GiveBack): the job runs again without consuming an attempt.
	ErrStopping = errors.New("worker node stopping: attempt handed back")
	// ErrCancelled: an operator cancelled the running job, so its attempt is already closed
	// (Abandon: there is nothing to acknowledge).
	ErrCancelled = errors.New("job cancelled while running")
)

// timeoutError is the cause of a handler context whose worker timeout passed.
type timeoutError struct{ after time.Duration }

func (e *timeoutError) Error() string { return fmt.Sprintf("job timed out after %s", e.after) }
