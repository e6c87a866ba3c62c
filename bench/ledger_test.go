package bench

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestLedgerCountsLostAndDuplicatedExecutions(t *testing.T) {
	for _, tc := range []struct {
		name  string
		craft func(l *Ledger, first int64)
		want  Check
	}{
		{"every job executed and completed once is clean", func(l *Ledger, first int64) {
			for i := range int64(10) {
				require.NoError(t, l.Work(t.Context(), first+i))
				l.Completed(first + i)
			}
		}, Check{}},
		{"a job never completed is lost, even when it was executed", func(l *Ledger, first int64) {
			for i := range int64(10) {
				require.NoError(t, l.Work(t.Context(), first+i))
				if i != 3 && i != 7 {
					l.Completed(first + i)
				}
			}
		}, Check{Lost: 2}},
		{"a job executed three times counts two duplicates", func(l *Ledger, first int64) {
			for i := range int64(10) {
				require.NoError(t, l.Work(t.Context(), first+i))
				l.Completed(first + i)
			}
			require.NoError(t, l.Work(t.Context(), first+4))
			require.NoError(t, l.Work(t.Context(), first+4))
		}, Check{Duplicates: 2}},
		{"a completion reported twice after one execution is a duplicate", func(l *Ledger, first int64) {
			for i := range int64(10) {
				require.NoError(t, l.Work(t.Context(), first+i))
				l.Completed(first + i)
			}
			l.Completed(first + 9)
		}, Check{Duplicates: 1}},
		{"sequence numbers never handed out are unknown", func(l *Ledger, first int64) {
			for i := range int64(10) {
				require.NoError(t, l.Work(t.Context(), first+i))
				l.Completed(first + i)
			}
			require.NoError(t, l.Work(t.Context(), 10))
			l.Completed(-1)
		}, Check{Unknown: 2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := NewLedger(0)
			first := l.Reserve(10)
			l.Enqueued(first, 10, nil)
			tc.craft(l, first)
			require.Equal(t, tc.want, l.Check())
		})
	}
}

func TestLedgerDoesNotExpectJobsWhoseEnqueueFailed(t *testing.T) {
	l := NewLedger(0)
	ok := l.Reserve(3)
	l.Enqueued(ok, 3, nil)
	bad := l.Reserve(2)
	l.Enqueued(bad, 2, errors.New("shard down"))
	for i := range int64(3) {
		l.Completed(ok + i)
	}
	require.Equal(t, Check{}, l.Check())
	enq, done := l.Counts()
	require.Equal(t, [2]int64{3, 3}, [2]int64{enq, done})
}

func TestLedgerLatencyRunsFromEnqueueCallToCompletion(t *testing.T) {
	l := NewLedger(0)
	first := l.Reserve(1)
	time.Sleep(20 * time.Millisecond)
	l.Enqueued(first, 1, nil)
	l.Completed(first)
	l.Completed(first) // a second report adds no second latency
	lat := l.cut()
	require.Len(t, lat, 1)
	require.GreaterOrEqual(t, lat[0], 20*time.Millisecond)
	require.Empty(t, l.cut(), "a cut empties the window")
}

func TestLedgerWorkTakesTheWorkTimeAndStopsWithItsContext(t *testing.T) {
	l := NewLedger(time.Hour)
	first := l.Reserve(1)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	require.ErrorIs(t, l.Work(ctx, first), context.Canceled)
	require.Equal(t, Check{Lost: 1}, l.Check(), "the execution counted; no completion yet")
}
