package engine_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/braidq/braid/engine"
)

func TestFence(t *testing.T) {
	t.Parallel()

	t.Run("create writes an active fence once and never overwrites a sealed one", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		_, err := b.eng.FenceGet(b.ctx, "q")
		require.ErrorIs(t, err, engine.ErrNotFound)

		f, err := b.eng.FenceCreate(b.ctx, "q", 1)
		require.NoError(t, err)
		require.Equal(t, engine.Fence{Queue: "q", Epoch: 1, State: engine.FenceActive}, f)

		sealed, err := b.eng.FenceSeal(b.ctx, "q", 2, engine.FenceMoved, 9)
		require.NoError(t, err)
		require.Equal(t, engine.Fence{Queue: "q", Epoch: 2, State: engine.FenceMoved, MovedTo: 9}, sealed)

		// A late router with an old directory entry creates the fence again: nothing changes.
		f, err = b.eng.FenceCreate(b.ctx, "q", 1)
		require.NoError(t, err)
		require.Equal(t, sealed, f)
		f, err = b.eng.FenceCreate(b.ctx, "q", 3)
		require.NoError(t, err)
		require.Equal(t, sealed, f, "create never overwrites, whatever the epoch")

		_, err = b.eng.Enqueue(b.ctx, job("q"))
		var redirect *engine.RedirectError
		require.ErrorAs(t, err, &redirect)
		require.Equal(t, engine.RedirectError{Queue: "q", Epoch: 2, State: "moved", MovedTo: 9}, *redirect)
	})

	t.Run("seal refuses later enqueues, creates a missing fence and ignores older epochs", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		_, err := b.eng.Enqueue(b.ctx, job("q"))
		require.NoError(t, err, "no fence row: the shard accepts the queue")

		f, err := b.eng.FenceSeal(b.ctx, "q", 5, engine.FenceDraining, 0)
		require.NoError(t, err)
		require.Equal(t, engine.Fence{Queue: "q", Epoch: 5, State: engine.FenceDraining}, f)
		_, err = b.eng.EnqueueMany(b.ctx, []engine.Job{job("other"), job("q")})
		var redirect *engine.RedirectError
		require.ErrorAs(t, err, &redirect)
		require.Equal(t, engine.RedirectError{Queue: "q", Epoch: 5, State: "draining"}, *redirect)

		// An older epoch changes nothing, for seal and open alike.
		f, err = b.eng.FenceSeal(b.ctx, "q", 4, engine.FenceMoved, 3)
		require.ErrorIs(t, err, engine.ErrStaleEpoch)
		require.Equal(t, engine.Fence{Queue: "q", Epoch: 5, State: engine.FenceDraining}, f)
		f, err = b.eng.FenceOpen(b.ctx, "q", 4)
		require.ErrorIs(t, err, engine.ErrStaleEpoch)
		require.Equal(t, engine.FenceDraining, f.State)

		// The same epoch may finish the move (draining -> moved) ...
		f, err = b.eng.FenceSeal(b.ctx, "q", 5, engine.FenceMoved, 3)
		require.NoError(t, err)
		require.Equal(t, engine.Fence{Queue: "q", Epoch: 5, State: engine.FenceMoved, MovedTo: 3}, f)
		// ... and a newer one brings the queue back.
		f, err = b.eng.FenceOpen(b.ctx, "q", 6)
		require.NoError(t, err)
		require.Equal(t, engine.Fence{Queue: "q", Epoch: 6, State: engine.FenceActive}, f)
		_, err = b.eng.Enqueue(b.ctx, job("q"))
		require.NoError(t, err)
		got, err := b.eng.FenceGet(b.ctx, "q")
		require.NoError(t, err)
		require.Equal(t, f, got)
	})

	t.Run("seal waits for the enqueue in flight, which commits; nothing commits after it", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		tx, err := b.pool.Begin(b.ctx)
		require.NoError(t, err)
		defer func() { _ = tx.Rollback(b.ctx) }()
		_, err = b.eng.EnqueueTx(b.ctx, tx, []engine.Job{job("q")})
		require.NoError(t, err)

		sealed := make(chan error, 1)
		go func() {
			_, err := b.eng.FenceSeal(b.ctx, "q", 2, engine.FenceMoved, 4)
			sealed <- err
		}()
		// The seal queues behind the enqueue's shared fence lock.
		require.Eventually(t, func() bool {
			return b.scalar(t, `SELECT count(*) FROM pg_locks
				WHERE locktype = 'advisory' AND classid = 4 AND objsubid = 2 AND NOT granted
				  AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`) == 1
		}, 10*time.Second, 5*time.Millisecond)
		select {
		case err := <-sealed:
			t.Fatalf("the seal returned (%v) while an enqueue of the queue was in flight", err)
		default:
		}
		require.NoError(t, tx.Commit(b.ctx))
		require.NoError(t, <-sealed)

		c, err := b.eng.Counts(b.ctx, "q")
		require.NoError(t, err)
		require.Equal(t, int64(1), c.Available, "the enqueue that was in flight committed")
		_, err = b.eng.Enqueue(b.ctx, job("q"))
		var redirect *engine.RedirectError
		require.ErrorAs(t, err, &redirect)
		require.Equal(t, 4, redirect.MovedTo)
	})

	t.Run("bad input names every field", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		_, err := b.eng.FenceSeal(b.ctx, "bad queue", 0, engine.FenceActive, -1)
		require.ErrorContains(t, err, `invalid queue "bad queue"`)
		require.ErrorContains(t, err, "invalid epoch")
		require.ErrorContains(t, err, `invalid state "active"`)
		require.ErrorContains(t, err, "invalid moved_to -1")
		_, err = b.eng.FenceCreate(b.ctx, "q", 0)
		require.ErrorContains(t, err, "invalid epoch")
		_, err = b.eng.FenceOpen(b.ctx, "", 1)
		require.ErrorContains(t, err, `invalid queue ""`)
		var n int64
		require.NoError(t, b.pool.QueryRow(b.ctx, `SELECT count(*) FROM braid.fence`).Scan(&n))
		require.Zero(t, n)
	})
}

func TestValidateJob(t *testing.T) {
	t.Parallel()
	err := engine.ValidateJob(engine.Job{Queue: "q", Kind: "k", Args: []byte(`{"a":`)}, "jobs[7].", 0)
	require.ErrorContains(t, err, "invalid jobs[7].args")
	err = engine.ValidateJob(engine.Job{Queue: "q", Kind: "k", Args: []byte(`"0123456789"`)}, "", 8)
	require.ErrorContains(t, err, "invalid args")
	require.NoError(t, engine.ValidateJob(engine.Job{Queue: "q", Kind: "k"}, "", 0))
}
