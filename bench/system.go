package bench

import (
	"context"
	"strings"
)

// System is a job queue the harness drives. It is constructed ready to enqueue; the harness
// starts its workers once (after the drain backlog, if any, is enqueued) and stops them once.
type System interface {
	// Name and Variant label the run's results ("braid"/"default", "river"/"tuned").
	Name() string
	Variant() string
	// Databases are the databases whose WAL and dead tuples the harness watches.
	Databases() []Database
	// Enqueue inserts the jobs durably (returns once they committed).
	Enqueue(ctx context.Context, jobs []Args) error
	// StartWorkers runs Workers handlers; each calls led.Work for a job, and the System calls
	// led.Completed once the job's completion committed.
	StartWorkers(ctx context.Context, led *Ledger) error
	// Stop stops the workers (flushing completions) within ctx.
	Stop(ctx context.Context) error
}

// Database is one database a System writes to.
type Database struct {
	Name   string // label in the results, e.g. the shard name
	DSN    string // the harness opens one connection of its own for statistics
	Schema string // the schema of the System's tables
}

// Kind is the job kind of [Args].
const Kind = "bench"

// Args are the benchmark job's arguments: the harness's sequence number and padding to the
// payload size. braid and River both encode them as JSON with the same Kind.
type Args struct {
	Seq int64  `json:"seq"`
	Pad string `json:"pad,omitempty"`
}

// Kind names the job's worker.
func (Args) Kind() string { return Kind }

// padding returns the Pad value that makes Args about payloadBytes long as JSON.
func padding(payloadBytes int) string {
	const overhead = len(`{"seq":1000000,"pad":""}`)
	return strings.Repeat("x", max(0, payloadBytes-overhead))
}
