package worker

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"time"
)

// Worker runs the jobs of one args type.
type Worker[T JobArgs] interface {
	// Timeout bounds one attempt: 0 takes the node's default, a negative value means none.
	// When it passes, the handler's context ends and the attempt fails with
	// "job timed out after ...".
	Timeout(job *Job[T]) time.Duration
	// Work runs one attempt. nil completes the job; an error retries it with exponential
	// backoff until its attempts run out; JobSnooze, JobCancel, JobDiscard and RetryAfter say
	// otherwise. Work must return when ctx ends: the node cancels it on timeouts, on an
	// operator's cancel (cause ErrCancelled) and when its stop deadline passes (cause
	// ErrStopping).
	Work(ctx context.Context, job *Job[T]) error
}

// WorkerDefaults is embedded in a worker to take the default Timeout (the node's).
type WorkerDefaults[T JobArgs] struct{}

// Timeout returns 0: the node's default timeout.
func (WorkerDefaults[T]) Timeout(*Job[T]) time.Duration { return 0 }

type workFunc[T JobArgs] struct {
	WorkerDefaults[T]
	fn func(context.Context, *Job[T]) error
}

func (w workFunc[T]) Work(ctx context.Context, job *Job[T]) error { return w.fn(ctx, job) }

// WorkFunc turns a function into a Worker with the default timeout.
func WorkFunc[T JobArgs](fn func(context.Context, *Job[T]) error) Worker[T] {
	return workFunc[T]{fn: fn}
}

// Workers maps job kinds to their workers. Register with AddWorker before the node starts;
// afterwards it is read concurrently and must not change.
type Workers struct {
	units map[string]unit
}

// NewWorkers returns an empty set of workers.
func NewWorkers() *Workers { return &Workers{units: map[string]unit{}} }

// maxKindBytes is the engine's limit on a job's kind (engine.Job.Kind).
const maxKindBytes = 255

// AddWorker registers w for the kind of T. It panics when the kind is already registered or
// invalid, as a wrong set of workers is a programming error found at startup; AddWorkerSafely
// returns the error instead.
func AddWorker[T JobArgs](ws *Workers, w Worker[T]) {
	if err := AddWorkerSafely(ws, w); err != nil {
		panic(err)
	}
}

// AddWorkerSafely registers w for the kind of T, or says why it cannot.
func AddWorkerSafely[T JobArgs](ws *Workers, w Worker[T]) error {
	if w == nil || (reflect.ValueOf(w).Kind() == reflect.Pointer && reflect.ValueOf(w).IsNil()) {
		return fmt.Errorf("add worker for %s: worker is nil", reflect.TypeFor[T]())
	}
	kind, err := kindOf[T]()
	if err != nil {
		return err
	}
	if kind == "" || len(kind) > maxKindBytes {
		return fmt.Errorf("add worker for %s: kind %q must be 1..%d bytes", reflect.TypeFor[T](), kind, maxKindBytes)
	}
	if _, dup := ws.units[kind]; dup {
		return fmt.Errorf("add worker for %s: a worker for kind %q is already registered", reflect.TypeFor[T](), kind)
	}
	ws.units[kind] = workUnit[T]{w: w}
	return nil
}

// kindOf calls Kind on T's zero value, which panics for a pointer type whose method reads
// its receiver.
func kindOf[T JobArgs]() (kind string, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("add worker for %s: Kind() panicked on the zero value (use a value receiver): %v", reflect.TypeFor[T](), p)
		}
	}()
	var zero T
	return zero.Kind(), nil
}

// Kinds returns the registered kinds, sorted.
func (ws *Workers) Kinds() []string { return slices.Sorted(maps.Keys(ws.units)) }

// unit runs one kind's attempts: the generic worker behind a kind-independent face.
type unit interface {
	run(ctx context.Context, row *JobRow, defaultTimeout time.Duration, a *attempt) error
}

type workUnit[T JobArgs] struct{ w Worker[T] }

func (u workUnit[T]) run(ctx context.Context, row *JobRow, defaultTimeout time.Duration, a *attempt) error {
	var args T
	if err := json.Unmarshal(row.EncodedArgs, &args); err != nil {
		a.invalid = fmt.Errorf("job %d: kind %q: args do not decode into %s: %w", row.ID, row.Kind, reflect.TypeFor[T](), err)
		return nil
	}
	job := &Job[T]{JobRow: row, Args: args}
	timeout := u.w.Timeout(job)
	if timeout == 0 {
		timeout = defaultTimeout
	}
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeoutCause(ctx, timeout, &timeoutError{after: timeout})
		defer cancel()
	}
	a.ctx = ctx
	return u.w.Work(ctx, job)
}
