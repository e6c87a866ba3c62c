package router

import (
	"context"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"
)

func TestBackoff(t *testing.T) {
	t.Parallel()
	base := 10 * time.Millisecond
	for n, want := range []time.Duration{10, 20, 40, 80, 160, 320, 640, 1000, 1000, 1000} {
		want *= time.Millisecond
		for range 50 {
			d := backoff(n, base)
			require.GreaterOrEqual(t, d, want/2, "round %d", n)
			require.LessOrEqual(t, d, want, "round %d", n)
		}
	}
	require.LessOrEqual(t, backoff(1000, base), time.Second, "no overflow however many rounds")
}

func TestPoller(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		var runs atomic.Int64
		p := &poller{interval: time.Second, run: func(ctx context.Context) {
			require.NoError(t, ctx.Err())
			runs.Add(1)
		}}
		ctx := t.Context()
		require.NoError(t, p.Stop(ctx), "Stop before Start is a no-op")
		require.NoError(t, p.Start(ctx))
		require.NoError(t, p.Start(ctx), "a second Start does not start a second loop")
		synctest.Wait()
		require.Equal(t, int64(1), runs.Load(), "the first poll runs at once")
		time.Sleep(3*time.Second + time.Millisecond)
		synctest.Wait()
		require.Equal(t, int64(4), runs.Load(), "then one per interval")
		require.NoError(t, p.Stop(ctx))
		require.NoError(t, p.Stop(ctx), "Stop is idempotent")
		time.Sleep(5 * time.Second)
		require.Equal(t, int64(4), runs.Load(), "nothing runs after Stop")

		cancelled, cancel := context.WithCancel(ctx)
		cancel()
		require.ErrorIs(t, p.Start(cancelled), context.Canceled)
	})
}

func TestDirCacheInstall(t *testing.T) {
	t.Parallel()
	d := newDirCache()
	d.install(0, Entry{Queue: "a", ShardID: 1, Epoch: 1, Version: 5})
	before := d.snap.Load()
	require.Equal(t, int64(0), before.version, "a single claimed entry does not claim the whole directory is read")

	d.install(7, Entry{Queue: "a", ShardID: 2, Epoch: 2, Version: 7}, Entry{Queue: "b", ShardID: 3, Epoch: 1, Version: 6})
	after := d.snap.Load()
	require.Equal(t, int64(7), after.version)
	require.Len(t, before.entries, 1, "the old snapshot is never changed: readers may hold it")
	e, _ := d.lookup("a")
	require.Equal(t, 2, e.ShardID)

	// A slow reader's older copy never undoes a newer entry, and the version never goes back.
	d.install(6, Entry{Queue: "a", ShardID: 1, Epoch: 1, Version: 5})
	e, _ = d.lookup("a")
	require.Equal(t, 2, e.ShardID)
	require.Equal(t, int64(7), d.snap.Load().version)
}
