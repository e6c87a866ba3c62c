package bench

import (
	"context"
	"sync"
	"time"
)

// Ledger is the run's book of jobs by sequence number: when each was enqueued, how often it
// was executed and how often its completion committed. It yields the latencies of the
// per-second samples and, at the end, the lost and duplicated executions. It is safe for
// concurrent use.
type Ledger struct {
	start time.Time
	work  time.Duration

	mu        sync.Mutex
	enqAt     []time.Duration // since start, at the enqueue call; by seq
	failed    []bool          // the enqueue call failed: the job is not expected
	execs     []uint32
	comps     []uint32
	unknown   int64 // executions or completions of seqs never handed out
	enqueued  int64
	completed int64 // first completions
	latencies []time.Duration
}

// Check is the ledger's verdict.
type Check struct {
	// Lost counts jobs enqueued (the call returned without error) whose completion never
	// committed.
	Lost int64
	// Duplicates counts executions beyond the first of a job (and completions beyond its
	// first, when they outnumber its executions).
	Duplicates int64
	// Unknown counts executions and completions of sequence numbers the producer never used.
	Unknown int64
}

// NewLedger returns an empty ledger whose Work simulates work of the given length.
func NewLedger(work time.Duration) *Ledger {
	return &Ledger{start: time.Now(), work: work}
}

// Reserve hands out n consecutive sequence numbers for jobs about to be enqueued, stamping
// now as their enqueue time (latency counts from the enqueue call).
func (l *Ledger) Reserve(n int) (first int64) {
	at := time.Since(l.start)
	l.mu.Lock()
	defer l.mu.Unlock()
	first = int64(len(l.enqAt))
	for range n {
		l.enqAt = append(l.enqAt, at)
		l.failed = append(l.failed, false)
		l.execs = append(l.execs, 0)
		l.comps = append(l.comps, 0)
	}
	return first
}

// Enqueued records that the enqueue of [first, first+n) returned: err nil means they
// committed and must complete; an error means they are not expected (an enqueue whose reply
// was lost but that committed shows up as completions of unexpected jobs, which are counted
// as completions all the same, never as lost).
func (l *Ledger) Enqueued(first int64, n int, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err != nil {
		for i := range int64(n) {
			l.failed[first+i] = true
		}
		return
	}
	l.enqueued += int64(n)
}

// Work is the job's handler body: it records an execution of seq and then works for the
// ledger's work time (or until ctx ends).
func (l *Ledger) Work(ctx context.Context, seq int64) error {
	l.mu.Lock()
	if l.known(seq) {
		l.execs[seq]++
	} else {
		l.unknown++
	}
	l.mu.Unlock()
	if l.work <= 0 {
		return nil
	}
	t := time.NewTimer(l.work)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// Completed records that the completion of seq committed now.
func (l *Ledger) Completed(seq int64) {
	at := time.Since(l.start)
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.known(seq) {
		l.unknown++
		return
	}
	l.comps[seq]++
	if l.comps[seq] == 1 {
		l.completed++
		l.latencies = append(l.latencies, at-l.enqAt[seq])
	}
}

func (l *Ledger) known(seq int64) bool { return seq >= 0 && seq < int64(len(l.enqAt)) }

// Counts returns the jobs enqueued (calls returned) and completed so far.
func (l *Ledger) Counts() (enqueued, completed int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.enqueued, l.completed
}

// cut returns the latencies of the completions since the last cut.
func (l *Ledger) cut() []time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := l.latencies
	l.latencies = nil
	return out
}

// Check counts the lost, duplicated and unknown executions.
func (l *Ledger) Check() Check {
	l.mu.Lock()
	defer l.mu.Unlock()
	c := Check{Unknown: l.unknown}
	for seq := range l.enqAt {
		if !l.failed[seq] && l.comps[seq] == 0 {
			c.Lost++
		}
		c.Duplicates += int64(max(l.execs[seq], l.comps[seq], 1) - 1)
	}
	return c
}
