package worker

import (
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/braidq/braid/engine"
)

func item(id int64) ackItem {
	return ackItem{receipt: engine.Receipt{ShardID: 1, JobID: id}, res: Result{Action: Complete}}
}

func ids(batch []ackItem) []int64 {
	var out []int64
	for _, it := range batch {
		out = append(out, it.receipt.JobID)
	}
	return out
}

// TestCollect: a batch closes when max items are in hand, or when the delay has passed since
// its first item (not since the last), or when the queue closes; it never waits for a first
// item's delay before that item arrives.
func TestCollect(t *testing.T) {
	t.Run("by size, without waiting for the delay", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			q := make(chan ackItem, 10)
			for i := range 5 {
				q <- item(int64(i))
			}
			start := time.Now()
			batch, open := collect(q, 3, time.Hour)
			require.True(t, open)
			require.Equal(t, []int64{0, 1, 2}, ids(batch))
			require.Zero(t, time.Since(start))
		})
	})
	t.Run("by delay since the first item", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			q := make(chan ackItem, 10)
			go func() {
				time.Sleep(time.Second) // idle: no batch is open yet
				q <- item(1)
				time.Sleep(7 * time.Millisecond)
				q <- item(2)
				time.Sleep(7 * time.Millisecond) // 14ms after the first: past the 10ms delay
				q <- item(3)
			}()
			start := time.Now()
			batch, open := collect(q, 100, 10*time.Millisecond)
			require.True(t, open)
			require.Equal(t, []int64{1, 2}, ids(batch))
			require.Equal(t, time.Second+10*time.Millisecond, time.Since(start))
			batch, _ = collect(q, 100, 10*time.Millisecond)
			require.Equal(t, []int64{3}, ids(batch))
		})
	})
	t.Run("a closed queue ends the batch at once and then the loop", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			q := make(chan ackItem, 10)
			q <- item(1)
			close(q)
			start := time.Now()
			batch, open := collect(q, 100, time.Hour)
			require.False(t, open)
			require.Equal(t, []int64{1}, ids(batch))
			require.Zero(t, time.Since(start))
			batch, open = collect(q, 100, time.Hour)
			require.False(t, open)
			require.Empty(t, batch)
		})
	})
}
