package cli

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/braidq/braid/engine"
)

// The ledger is what `braid dev`'s exit code trusts: it must see every kind of wrong outcome.
func TestLedgerTallyFindsLostDuplicatedAndUntrackedJobs(t *testing.T) {
	lo1, _ := engine.JobIDRange(1)
	lo2, _ := engine.JobIDRange(2)
	l := newLedger()
	l.enqueue(lo1+1, lo1+2, lo2+1, lo2+2)
	l.enqueue(lo1 + 1) // reported twice: still one job
	l.success(lo1 + 1)
	l.success(lo2 + 1)
	l.success(lo2 + 1) // ran twice
	l.success(lo2 + 9) // never reported enqueued
	l.failure()
	require.True(t, l.snoozeFirst(lo1+2))
	require.False(t, l.snoozeFirst(lo1+2), "a job snoozes once")

	require.Equal(t, tally{
		Enqueued:   4,
		Completed:  2,
		Lost:       2, // lo1+2 and lo2+2
		Duplicates: 1,
		Untracked:  1,
		Failures:   1,
		Snoozes:    1,
		ByShard:    map[int]int64{1: 2, 2: 2},
	}, l.tally())
}
