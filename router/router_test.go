package router_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/braidq/braid/engine"
	"github.com/braidq/braid/health"
	"github.com/braidq/braid/router"
	"github.com/braidq/braid/router/placement"
	"github.com/braidq/braid/shard"
	"github.com/braidq/braid/tests/pgtest"
)

// TestRouter runs against one world of three shards; every subtest uses queues of its own.
func TestRouter(t *testing.T) {
	t.Parallel()
	w := newWorld(t, health.BreakerSettings{})

	t.Run("round trip: each queue lands on its directory home, bulk spans shards, get finds every job", func(t *testing.T) {
		t.Parallel()
		ctx := t.Context()
		cl := w.client(t, router.Config{})
		homes := map[string]int{}
		for i := range 30 {
			q := fmt.Sprintf("rt-%d", i)
			res, err := cl.Insert(ctx, EmailArgs{To: q, N: -1}, &router.InsertOpts{Queue: q})
			require.NoError(t, err)
			e, created, err := w.cat.Claim(ctx, q, 3)
			require.NoError(t, err)
			require.False(t, created)
			require.Equal(t, e.ShardID, res.ShardID, "queue %s", q)
			require.Equal(t, res.ShardID, engine.ShardOf(res.JobID))
			homes[q] = e.ShardID
		}
		require.Len(t, distinct(homes), 3, "30 queues hash onto every one of 3 equal shards")

		params := make([]router.InsertManyParams, 300)
		for i := range params {
			q := fmt.Sprintf("rt-%d", i%30)
			params[i] = router.InsertManyParams{Args: EmailArgs{To: q, N: i}, InsertOpts: &router.InsertOpts{Queue: q}}
		}
		results, err := cl.InsertMany(ctx, params)
		require.NoError(t, err)
		perShard := map[int]int{}
		for i, r := range results {
			q := fmt.Sprintf("rt-%d", i%30)
			require.Equal(t, homes[q], r.ShardID, "job %d of queue %s", i, q)
			require.Equal(t, q, r.Queue)
			perShard[r.ShardID]++
		}
		require.Len(t, perShard, 3, "the bulk insert spans every shard")

		for i, r := range results {
			j, err := cl.JobGet(ctx, r.JobID)
			require.NoError(t, err)
			require.Equal(t, r.Queue, j.Queue)
			require.Equal(t, "email", j.Kind)
			var got EmailArgs
			require.NoError(t, json.Unmarshal(j.Args, &got))
			require.Equal(t, EmailArgs{To: r.Queue, N: i}, got)
		}

		st, err := cl.QueueStats(ctx, "rt-0")
		require.NoError(t, err)
		require.Equal(t, int64(11), st.Total.Available)
		require.Equal(t, map[int]router.Counts{homes["rt-0"]: {Available: 11}}, st.ByShard)
		require.Empty(t, st.Missing)

		_, err = cl.JobGet(ctx, results[0].JobID+1_000_000)
		require.ErrorIs(t, err, router.ErrNotFound)
		lo, _ := engine.JobIDRange(99)
		_, err = cl.JobGet(ctx, lo)
		require.ErrorIs(t, err, router.ErrNotFound)
		var notConfigured *router.ShardNotConfiguredError
		require.ErrorAs(t, err, &notConfigured)
		require.Equal(t, 99, notConfigured.ShardID)
	})

	t.Run("invalid input names the field and writes nothing anywhere", func(t *testing.T) {
		t.Parallel()
		ctx := t.Context()
		cl := w.client(t, router.Config{MaxArgsBytes: 64})
		params := []router.InsertManyParams{
			{Args: EmailArgs{To: "a"}, InsertOpts: &router.InsertOpts{Queue: "inv-a"}},
			{Args: EmailArgs{To: "b"}, InsertOpts: &router.InsertOpts{Queue: "inv-b"}},
			{Args: EmailArgs{To: "c"}, InsertOpts: &router.InsertOpts{Queue: "bad queue"}},
			{Args: EmailArgs{To: strings.Repeat("x", 100)}, InsertOpts: &router.InsertOpts{Queue: "inv-a", Priority: 9}},
		}
		_, err := cl.InsertMany(ctx, params)
		var bad *router.ValidationError
		require.ErrorAs(t, err, &bad)
		require.ErrorContains(t, err, `invalid jobs[2].queue "bad queue"`)
		require.ErrorContains(t, err, "invalid jobs[3].args")
		require.ErrorContains(t, err, "invalid jobs[3].priority 9")
		for _, q := range []string{"inv-a", "inv-b"} {
			_, known := cl.Lookup(q)
			require.False(t, known, "no queue was even placed")
			st, err := cl.QueueStats(ctx, q)
			require.NoError(t, err)
			require.Zero(t, st.Total)
		}
		_, err = cl.Insert(ctx, nil, nil)
		require.ErrorContains(t, err, "invalid args")
	})

	t.Run("unique keys, defaults from the args, scheduled jobs", func(t *testing.T) {
		t.Parallel()
		ctx := t.Context()
		cl := w.client(t, router.Config{DefaultQueue: "uq-default"})
		first, err := cl.Insert(ctx, ReportArgs{Day: "mon"}, &router.InsertOpts{UniqueKey: "mon"})
		require.NoError(t, err)
		require.Equal(t, "uq-reports", first.Queue, "the args' own options apply")
		again, err := cl.Insert(ctx, ReportArgs{Day: "mon"}, &router.InsertOpts{UniqueKey: "mon"})
		var conflict *router.UniqueConflictError
		require.ErrorAs(t, err, &conflict)
		require.Equal(t, first.JobID, conflict.JobID)
		require.True(t, again.UniqueSkippedAsDuplicate)
		require.Equal(t, first.JobID, again.JobID)

		res, err := cl.Insert(ctx, EmailArgs{To: "x"}, &router.InsertOpts{ScheduledAt: time.Now().Add(time.Hour)})
		require.NoError(t, err)
		require.Equal(t, "uq-default", res.Queue)
		require.True(t, res.Scheduled)
		j, err := cl.JobGet(ctx, res.JobID)
		require.NoError(t, err)
		require.Equal(t, engine.StateScheduled, j.State)
	})

	t.Run("insert tx commits with the caller's transaction and refuses another shard's", func(t *testing.T) {
		t.Parallel()
		ctx := t.Context()
		cl := w.client(t, router.Config{Pins: map[string]int16{"tx-q": 2}})
		home := w.shard(t, 2)

		tx, err := home.Pool().Begin(ctx)
		require.NoError(t, err)
		rolledBack, err := cl.InsertTx(ctx, tx, EmailArgs{To: "rollback"}, &router.InsertOpts{Queue: "tx-q"})
		require.NoError(t, err)
		require.Equal(t, 2, rolledBack.ShardID)
		require.NoError(t, tx.Rollback(ctx))
		_, err = cl.JobGet(ctx, rolledBack.JobID)
		require.ErrorIs(t, err, router.ErrNotFound)

		tx, err = home.Pool().Begin(ctx)
		require.NoError(t, err)
		results, err := cl.InsertManyTx(ctx, tx, []router.InsertManyParams{
			{Args: EmailArgs{To: "a"}, InsertOpts: &router.InsertOpts{Queue: "tx-q"}},
			{Args: EmailArgs{To: "b"}, InsertOpts: &router.InsertOpts{Queue: "tx-q"}},
		})
		require.NoError(t, err)
		require.NoError(t, tx.Commit(ctx))
		for _, r := range results {
			_, err := cl.JobGet(ctx, r.JobID)
			require.NoError(t, err)
		}

		other, err := w.shard(t, 3).Pool().Begin(ctx)
		require.NoError(t, err)
		defer func() { _ = other.Rollback(ctx) }()
		_, err = cl.InsertTx(ctx, other, EmailArgs{To: "wrong"}, &router.InsertOpts{Queue: "tx-q"})
		var wrong *router.WrongShardError
		require.ErrorAs(t, err, &wrong)
		require.Equal(t, router.WrongShardError{Queue: "tx-q", HomeShard: 2, TxShard: 3}, *wrong)
		require.Equal(t, int64(2), w.available(t, 2, "tx-q"), "the two committed jobs, not the rolled back one")
		require.Zero(t, w.available(t, 3, "tx-q"))
	})

	t.Run("two routers with different configs place the same new queues at once: one home wins, both route there", func(t *testing.T) {
		t.Parallel()
		ctx := t.Context()
		// The directory lives in a database of its own here.
		c := pgtest.Shared(t, 0)
		dsn := c.NewDB(t, "")
		migratePool, err := pgxpool.New(ctx, dsn)
		require.NoError(t, err)
		_, _, err = router.MigrateCatalog(ctx, migratePool, "")
		migratePool.Close()
		require.NoError(t, err)
		cat, err := router.OpenCatalog(ctx, dsn, router.CatalogConfig{})
		require.NoError(t, err)
		t.Cleanup(cat.Close)

		a := w.clientWith(t, cat, router.Config{Placement: []placement.Shard{
			{ID: 1, Weight: 1}, {ID: 2, Weight: 1, State: placement.StateDraining}, {ID: 3, Weight: 1, State: placement.StateDraining},
		}})
		b := w.clientWith(t, cat, router.Config{Placement: []placement.Shard{
			{ID: 1, Weight: 1, State: placement.StateDraining}, {ID: 2, Weight: 5, State: placement.StateDraining}, {ID: 3, Weight: 1},
		}})
		const queues = 24
		type outcome struct {
			client string
			queue  string
			res    *router.InsertResult
			err    error
		}
		out := make(chan outcome, 2*queues)
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i := range queues {
			q := fmt.Sprintf("race-%d", i)
			for name, cl := range map[string]*router.Client{"a": a, "b": b} {
				wg.Go(func() {
					<-start
					res, err := cl.Insert(ctx, EmailArgs{To: name}, &router.InsertOpts{Queue: q})
					out <- outcome{name, q, res, err}
				})
			}
		}
		close(start)
		wg.Wait()
		close(out)
		won := map[int]int{}
		for o := range out {
			require.NoError(t, o.err, "client %s queue %s", o.client, o.queue)
			ea, ok := a.Lookup(o.queue)
			require.True(t, ok)
			eb, ok := b.Lookup(o.queue)
			require.True(t, ok)
			require.Equal(t, ea, eb, "both routers know the same home for %s", o.queue)
			require.Contains(t, []int{1, 3}, ea.ShardID)
			require.Equal(t, ea.ShardID, o.res.ShardID, "client %s's job of %s landed on the home", o.client, o.queue)
			if o.client == "a" {
				won[ea.ShardID]++
			}
		}
		t.Logf("homes won: %v", won)
		for i := range queues {
			q := fmt.Sprintf("race-%d", i)
			e, _ := a.Lookup(q)
			loser := 4 - e.ShardID // 1 <-> 3
			f, err := w.shard(t, e.ShardID).Engine().FenceGet(ctx, q)
			require.NoError(t, err)
			require.Equal(t, engine.Fence{Queue: q, Epoch: 1, State: engine.FenceActive}, f)
			_, err = w.shard(t, loser).Engine().FenceGet(ctx, q)
			require.ErrorIs(t, err, engine.ErrNotFound, "no fence on the shard that lost %s", q)
			require.Equal(t, int64(2), w.available(t, e.ShardID, q))
			require.Zero(t, w.available(t, loser, q))
			// Afterwards both keep routing there.
			for _, cl := range []*router.Client{a, b} {
				res, err := cl.Insert(ctx, EmailArgs{}, &router.InsertOpts{Queue: q})
				require.NoError(t, err)
				require.Equal(t, e.ShardID, res.ShardID)
			}
		}
	})

	t.Run("a stale producer is redirected to the new home; nothing lands on the sealed shard after the seal", func(t *testing.T) {
		t.Parallel()
		ctx := t.Context()
		const q = "moving-q"
		stale := w.client(t, router.Config{Pins: map[string]int16{q: 1}}) // never polls: no Start
		mover := w.client(t, router.Config{})
		first, err := stale.Insert(ctx, EmailArgs{To: "before"}, &router.InsertOpts{Queue: q})
		require.NoError(t, err)
		require.Equal(t, 1, first.ShardID)

		var (
			sealed    atomic.Bool
			inserted  atomic.Int64
			afterSeal atomic.Int64
			stop      = make(chan struct{})
			wg        sync.WaitGroup
			mu        sync.Mutex
			landed    = map[int]int64{} // shard -> jobs
			lateOnOld []int64
		)
		for g := range 4 {
			wg.Go(func() {
				for n := 0; ; n++ {
					select {
					case <-stop:
						return
					default:
					}
					// Batches keep every call's transaction open for a while after its fence
					// check, so a seal commits while some are in flight.
					batch := make([]router.InsertManyParams, 1+n%64)
					for k := range batch {
						batch[k] = router.InsertManyParams{Args: EmailArgs{To: "storm", N: g*1_000_000 + n}, InsertOpts: &router.InsertOpts{Queue: q}}
					}
					wasSealed := sealed.Load()
					results, err := stale.InsertMany(ctx, batch)
					if err != nil {
						t.Errorf("insert during the move: %v", err)
						return
					}
					mu.Lock()
					for _, res := range results {
						landed[res.ShardID]++
						if wasSealed && res.ShardID == 1 {
							lateOnOld = append(lateOnOld, res.JobID)
						}
					}
					mu.Unlock()
					inserted.Add(1)
					if wasSealed {
						afterSeal.Add(1)
					}
				}
			})
		}
		stopStorm := sync.OnceFunc(func() {
			close(stop)
			wg.Wait()
		})
		defer stopStorm()
		waitUntil(t, func() bool { return inserted.Load() >= 20 })

		// The rebalancer's steps: intent in the directory, seal the source, open the target,
		// publish.
		_, err = w.cat.Update(ctx, q, 1, router.Entry{ShardID: 2, Epoch: 2, State: router.EntryMoving, DrainFrom: 1})
		require.NoError(t, err)
		// An enqueue held open in a transaction on the source: the seal must wait for it.
		held, err := w.shard(t, 1).Pool().Begin(ctx)
		require.NoError(t, err)
		defer func() { _ = held.Rollback(ctx) }()
		_, err = stale.InsertTx(ctx, held, EmailArgs{To: "held"}, &router.InsertOpts{Queue: q})
		require.NoError(t, err)
		sealErr := make(chan error, 1)
		go func() {
			_, err := mover.FenceSeal(ctx, 1, q, 2, engine.FenceDraining, 2)
			sealErr <- err
		}()
		waitUntil(t, func() bool { return len(sealErr) > 0 || fenceLockWaiters(t, w.shard(t, 1)) > 0 })
		select {
		case err := <-sealErr:
			t.Fatalf("the seal returned (err %v) while an enqueue of the queue was in flight on the shard", err)
		default:
		}
		require.NoError(t, held.Commit(ctx))
		require.NoError(t, <-sealErr)
		sealed.Store(true)
		onOldAtSeal := w.available(t, 1, q)
		_, err = mover.FenceOpen(ctx, 2, q, 2)
		require.NoError(t, err)
		_, err = w.cat.Update(ctx, q, 2, router.Entry{ShardID: 2, Epoch: 2, State: router.EntryDraining, DrainFrom: 1})
		require.NoError(t, err)

		waitUntil(t, func() bool { return afterSeal.Load() >= 20 })
		stopStorm()

		require.Empty(t, lateOnOld, "jobs inserted after the seal committed must not land on the sealed shard")
		require.Equal(t, onOldAtSeal, w.available(t, 1, q), "the sealed shard's count did not move after the seal")
		require.Equal(t, landed[1]+2, onOldAtSeal, "every job acknowledged on shard 1 (and the first and the held one) is there")
		require.Equal(t, landed[2], w.available(t, 2, q), "every job acknowledged on shard 2 is there")
		require.Positive(t, landed[2])
		e, ok := stale.Lookup(q)
		require.True(t, ok)
		require.Equal(t, 2, e.ShardID, "the redirect refreshed the stale cache")

		// A move the directory does not show yet: the client backs off and gives up with the
		// redirect, never spilling the queue elsewhere.
		const q2 = "unpublished-q"
		cl := w.client(t, router.Config{Pins: map[string]int16{q2: 3}, RedirectAttempts: 3, RedirectBackoff: time.Millisecond})
		_, err = cl.Insert(ctx, EmailArgs{}, &router.InsertOpts{Queue: q2})
		require.NoError(t, err)
		_, err = mover.FenceSeal(ctx, 3, q2, 2, engine.FenceDraining, 1)
		require.NoError(t, err)
		_, err = cl.Insert(ctx, EmailArgs{}, &router.InsertOpts{Queue: q2})
		var redirect *router.RedirectError
		require.ErrorAs(t, err, &redirect)
		require.Equal(t, router.RedirectError{Queue: q2, Epoch: 2, State: "draining", MovedTo: 1}, *redirect)
		require.ErrorContains(t, err, "gave up after 3 redirects")
		require.Zero(t, w.available(t, 1, q2))
	})

	t.Run("known queues keep routing from the cache while the catalog is down", func(t *testing.T) {
		t.Parallel()
		ctx := t.Context()
		c := pgtest.Shared(t, 1)
		dsn := c.NewDB(t, "")
		pool, err := pgxpool.New(ctx, dsn)
		require.NoError(t, err)
		_, _, err = router.MigrateCatalog(ctx, pool, "")
		pool.Close()
		require.NoError(t, err)
		cat, err := router.OpenCatalog(ctx, dsn, router.CatalogConfig{Timeout: time.Second, MaxConns: 2})
		require.NoError(t, err)
		t.Cleanup(cat.Close)
		cl := w.clientWith(t, cat, router.Config{PollInterval: 10 * time.Millisecond})
		require.NoError(t, cl.Start(ctx))
		require.NoError(t, cl.Start(ctx), "Start is idempotent")
		defer func() { require.NoError(t, cl.Stop(context.Background())) }()

		known, err := cl.Insert(ctx, EmailArgs{}, &router.InsertOpts{Queue: "cached-q"})
		require.NoError(t, err)

		// Take the catalog away: its database is dropped, its sessions terminated.
		u, err := url.Parse(dsn)
		require.NoError(t, err)
		admin, err := pgx.Connect(ctx, c.AdminDSN("postgres"))
		require.NoError(t, err)
		_, err = admin.Exec(ctx, "DROP DATABASE "+pgx.Identifier{strings.TrimPrefix(u.Path, "/")}.Sanitize()+" WITH (FORCE)")
		require.NoError(t, admin.Close(ctx))
		require.NoError(t, err)

		for range 10 {
			res, err := cl.Insert(ctx, EmailArgs{}, &router.InsertOpts{Queue: "cached-q"})
			require.NoError(t, err)
			require.Equal(t, known.ShardID, res.ShardID)
		}
		_, err = cl.Insert(ctx, EmailArgs{}, &router.InsertOpts{Queue: "new-while-down"})
		require.ErrorIs(t, err, router.ErrCatalogUnavailable)
		require.NoError(t, cl.Stop(ctx))
		require.NoError(t, cl.Stop(ctx), "Stop is idempotent")
	})

	t.Run("a configured shard whose database carries another identity is refused", func(t *testing.T) {
		t.Parallel()
		cfgs := []shard.Config{w.cfgs[0], w.cfgs[1], shardConfig(3, w.cfgs[1].DSN)}
		_, err := shard.OpenSet(t.Context(), cfgs, shard.Deps{})
		var idErr *engine.IdentityError
		require.ErrorAs(t, err, &idErr)
		require.ErrorContains(t, err, `shard 3 (pg-3): database identity is shard 2 of cluster "test", configured as shard 3`)
	})

	t.Run("a bad client configuration names every problem", func(t *testing.T) {
		t.Parallel()
		_, err := router.New(router.Config{
			Placement:        []placement.Shard{{ID: 1, Weight: 1}, {ID: 1, Weight: -1}},
			DefaultQueue:     "no spaces",
			RedirectAttempts: -1,
		}, router.Deps{Shards: w.set, Catalog: w.cat})
		for _, want := range []string{"placement[1].id 1: duplicates placement[0].id", "placement[1].weight", `default_queue "no spaces"`, "redirect_attempts -1"} {
			require.ErrorContains(t, err, want)
		}
		_, err = router.New(router.Config{Pins: map[string]int16{"q": 9}}, router.Deps{Shards: w.set, Catalog: w.cat})
		require.ErrorContains(t, err, "pins.q: shard 9 is not in the shard set")
		_, err = router.New(router.Config{}, router.Deps{})
		require.ErrorContains(t, err, "required")
	})
}

// ReportArgs carry their own insert options.
type ReportArgs struct {
	Day string `json:"day"`
}

func (ReportArgs) Kind() string { return "report" }

func (ReportArgs) InsertOpts() router.InsertOpts {
	return router.InsertOpts{Queue: "uq-reports", Priority: 2}
}

func distinct(m map[string]int) map[int]bool {
	out := map[int]bool{}
	for _, v := range m {
		out[v] = true
	}
	return out
}

// fenceLockWaiters counts the requests waiting for a queue fence lock (advisory namespace 4)
// in the shard's database.
func fenceLockWaiters(t *testing.T, s *shard.Shard) int64 {
	var n int64
	require.NoError(t, s.Pool().QueryRow(t.Context(), `SELECT count(*) FROM pg_locks
		WHERE locktype = 'advisory' AND classid = 4 AND objsubid = 2 AND NOT granted
		  AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`).Scan(&n))
	return n
}

func waitUntil(t *testing.T, cond func() bool) {
	t.Helper()
	require.Eventually(t, cond, 30*time.Second, 2*time.Millisecond)
}
