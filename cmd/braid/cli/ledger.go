package cli

import (
	"sync"

	"github.com/braidq/braid/engine"
)

// ledger is the demo's own account of its jobs: which were enqueued (from InsertMany's
// results) and how often each ran successfully (its handler returned nil). It is how `braid
// dev` proves, independently of braid's counters, that no job was lost or run twice.
type ledger struct {
	mu        sync.Mutex
	enqueued  map[int64]struct{}
	byShard   map[int]int64 // enqueued jobs per shard
	successes map[int64]int // successful executions per job id
	snoozed   map[int64]bool
	failures  int64 // handler errors (planned failures that retry)
	snoozes   int64
}

func newLedger() *ledger {
	return &ledger{
		enqueued:  make(map[int64]struct{}),
		byShard:   make(map[int]int64),
		successes: make(map[int64]int),
		snoozed:   make(map[int64]bool),
	}
}

func (l *ledger) enqueue(ids ...int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, id := range ids {
		if _, dup := l.enqueued[id]; dup {
			continue
		}
		l.enqueued[id] = struct{}{}
		l.byShard[engine.ShardOf(id)]++
	}
}

func (l *ledger) success(id int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.successes[id]++
}

func (l *ledger) failure() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.failures++
}

// snoozeFirst says whether the job has not snoozed yet, and records that it does now.
func (l *ledger) snoozeFirst(id int64) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.snoozed[id] {
		return false
	}
	l.snoozed[id] = true
	l.snoozes++
	return true
}

// tally is the ledger's verdict at one moment.
type tally struct {
	Enqueued   int64 // distinct jobs InsertMany reported enqueued
	Completed  int64 // enqueued jobs that ran successfully at least once
	Lost       int64 // enqueued jobs that never ran successfully
	Duplicates int64 // jobs that ran successfully more than once
	Untracked  int64 // jobs that ran successfully but were never reported enqueued
	Failures   int64
	Snoozes    int64
	ByShard    map[int]int64
}

func (l *ledger) tally() tally {
	l.mu.Lock()
	defer l.mu.Unlock()
	t := tally{Enqueued: int64(len(l.enqueued)), Failures: l.failures, Snoozes: l.snoozes, ByShard: make(map[int]int64, len(l.byShard))}
	for id, n := range l.successes {
		if _, ok := l.enqueued[id]; ok {
			t.Completed++
		} else {
			t.Untracked++
		}
		if n > 1 {
			t.Duplicates++
		}
	}
	t.Lost = t.Enqueued - t.Completed
	for s, n := range l.byShard {
		t.ByShard[s] = n
	}
	return t
}
