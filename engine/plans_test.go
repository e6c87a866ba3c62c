package engine_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/braidq/braid/engine"
)

// hotScans counts, within the open transaction tx, the rows read by sequential scans and the
// index scans on the queue-ring and claim-ring partitions (pg_stat_xact_user_tables is per
// transaction and per backend). A sequential scan of an empty partition reads no rows and is
// the right plan; one that reads rows is a plan that scales with the backlog.
func hotScans(t *testing.T, ctx context.Context, tx pgx.Tx) (seqRows, idx int64, detail string) {
	t.Helper()
	require.NoError(t, tx.QueryRow(ctx, `
		SELECT coalesce(sum(seq_tup_read), 0), coalesce(sum(idx_scan), 0),
		       coalesce(string_agg(relname || '=' || seq_tup_read, ' ') FILTER (WHERE seq_tup_read > 0), '')
		FROM pg_stat_xact_user_tables
		WHERE schemaname = 'braid'
		  AND relname ~ '^(ready|tombstone|emission|completion|claim_batch|closure)_[0-9]+$'`).Scan(&seqRows, &idx, &detail))
	return seqRows, idx, detail
}

// TestCachedPlansStayIndexedOnceTablesFill: a connection that planned the hot-path functions
// while the partitions were empty (and again after they were truncated, as prune leaves them)
// must not keep sequential-scan plans once a large backlog arrives. PL/pgSQL caches each
// statement's plan per connection and may switch to a generic plan after five calls; a generic
// plan made on empty tables that seq-scans would turn every claim into a scan of the backlog.
func TestCachedPlansStayIndexedOnceTablesFill(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := b.ctx
	one := newPool(t, b.dsn, 1) // every call below runs on this one connection
	eng, err := engine.Open(ctx, one, engine.Config{})
	require.NoError(t, err)
	require.NoError(t, b.eng.ConfigureQueue(ctx, "plans", engine.QueueSettings{Lanes: 1, DLQ: true, MaxAttempts: 5, Deadline: time.Minute}))

	warmOnEmptyTables := func() {
		for range 12 {
			res, err := eng.Enqueue(ctx, job("plans"))
			require.NoError(t, err)
			cs, err := eng.Claim(ctx, engine.ClaimRequest{Queue: "plans", LaneNo: -1, Max: 64})
			require.NoError(t, err)
			require.Len(t, cs, 1)
			require.Equal(t, res.JobID, cs[0].Receipt.JobID)
			_, err = eng.Complete(ctx, receipts(cs))
			require.NoError(t, err)
			_, err = eng.Counts(ctx, "plans")
			require.NoError(t, err)
		}
	}
	loadBacklog := func(n int) {
		for range n / 1000 {
			jobs := make([]engine.Job, 1000)
			for i := range jobs {
				jobs[i] = job("plans")
			}
			_, err := b.eng.EnqueueMany(ctx, jobs) // another connection: the cached plans stay
			require.NoError(t, err)
		}
	}
	claimOnCachedConnection := func(label string) {
		for range 3 {
			// The claim runs inside a transaction on the cached connection so that its scans can
			// be read from pg_stat_xact_user_tables before commit.
			tx, err := one.Begin(ctx)
			require.NoError(t, err)
			defer tx.Rollback(ctx)                //nolint:errcheck // a no-op after Commit; releases the connection on failure
			seq0, idx0, _ := hotScans(t, ctx, tx) // pending counters of earlier statements
			rows, err := tx.Query(ctx, `SELECT cslot, batch_id, idx, job_id, run_lease FROM braid.job_claim('plans', NULL, 256, 't', NULL)`)
			require.NoError(t, err)
			var rs []engine.Receipt
			for rows.Next() {
				r := engine.Receipt{ShardID: testShard}
				require.NoError(t, rows.Scan(&r.ClaimSlot, &r.BatchID, &r.Index, &r.JobID, &r.RunLease))
				rs = append(rs, r)
			}
			require.NoError(t, rows.Err())
			require.Len(t, rs, 256)
			seq, idx, detail := hotScans(t, ctx, tx)
			require.Zero(t, seq-seq0, "%s: the claim read rows by sequential scan: %s", label, detail)
			require.Positive(t, idx-idx0, "%s: the claim used no index at all (is the measurement broken?)", label)
			require.NoError(t, tx.Commit(ctx))

			tx, err = one.Begin(ctx)
			require.NoError(t, err)
			defer tx.Rollback(ctx) //nolint:errcheck // as above
			seq0, _, _ = hotScans(t, ctx, tx)
			var applied int
			require.NoError(t, tx.QueryRow(ctx, `SELECT count(*) FROM braid.job_complete_fast($1, $2, $3, $4, NULL)`,
				column(rs, func(r engine.Receipt) int16 { return r.ClaimSlot }), column(rs, func(r engine.Receipt) int64 { return r.BatchID }),
				column(rs, func(r engine.Receipt) int32 { return r.Index }), column(rs, func(r engine.Receipt) int64 { return r.RunLease })).Scan(&applied))
			require.Equal(t, 256, applied)
			seq, _, detail = hotScans(t, ctx, tx)
			require.Zero(t, seq-seq0, "%s: the completion read rows by sequential scan: %s", label, detail)
			require.NoError(t, tx.Commit(ctx))
		}
	}

	// The measurement itself can see a sequential scan.
	tx, err := one.Begin(ctx)
	require.NoError(t, err)
	_, err = tx.Exec(ctx, `INSERT INTO braid.tombstone VALUES (0, 1, 1, 1, 1, now()), (0, 1, 2, 2, 1, now())`)
	require.NoError(t, err)
	_, err = tx.Exec(ctx, `SELECT count(*) FROM braid.tombstone_0`)
	require.NoError(t, err)
	seq, _, _ := hotScans(t, ctx, tx)
	require.Equal(t, int64(2), seq)
	require.NoError(t, tx.Rollback(ctx))

	warmOnEmptyTables()
	loadBacklog(20_000)
	claimOnCachedConnection("planned on empty tables")

	// Drain, truncate every ring partition the way prune does, and run again.
	for {
		cs, err := b.eng.Claim(ctx, engine.ClaimRequest{Queue: "plans", LaneNo: -1, Max: 5000})
		require.NoError(t, err)
		if len(cs) == 0 {
			break
		}
		_, err = b.eng.Complete(ctx, receipts(cs))
		require.NoError(t, err)
	}
	for _, tbl := range []string{"ready", "tombstone", "emission", "completion", "terminal", "count_delta", "claim_batch", "closure"} {
		b.exec(t, fmt.Sprintf(`TRUNCATE braid.%s`, tbl))
	}
	warmOnEmptyTables()
	loadBacklog(10_000)
	claimOnCachedConnection("planned after truncate")
}

func column[T any](rs []engine.Receipt, f func(engine.Receipt) T) []T {
	out := make([]T, len(rs))
	for i, r := range rs {
		out[i] = f(r)
	}
	return out
}
