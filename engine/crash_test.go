package engine_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/braidq/braid/engine"
)

// TestCrashBeforeCommitLosesNothing: every engine operation is one function call, so its
// statements commit or vanish together. For each operation the test runs the call inside a
// transaction, kills the connection's backend before COMMIT (the client crashed mid-operation),
// checks that nothing of it is visible and nothing else was lost, and then retries the
// operation, which must succeed as if the first attempt never happened.
func TestCrashBeforeCommitLosesNothing(t *testing.T) {
	t.Parallel()
	type fixture struct {
		b       *bundle
		claimed engine.Claimed
		spare   int64 // an available job
	}
	ops := map[string]struct {
		sql   string
		args  func(f fixture) []any
		retry func(t *testing.T, f fixture)
		after engine.Counts
	}{
		"enqueue": {
			sql: `SELECT count(*) FROM braid.job_enqueue(ARRAY['q'], ARRAY[1::smallint], ARRAY[NULL::bigint], ARRAY['k'], ARRAY['{}'::jsonb],
				ARRAY[NULL::jsonb], ARRAY[NULL::integer], ARRAY[NULL::timestamptz], ARRAY[NULL::text], 1::smallint, true, 5, '1 minute', NULL)`,
			retry: func(t *testing.T, f fixture) {
				_, err := f.b.eng.Enqueue(f.b.ctx, job("q"))
				require.NoError(t, err)
			},
			after: engine.Counts{Available: 2, Running: 1},
		},
		"claim": {
			sql: `SELECT count(*) FROM braid.job_claim('q', NULL, 10, 'crash', NULL)`,
			retry: func(t *testing.T, f fixture) {
				require.Len(t, claimAll(t, f.b, "q", 10), 1)
			},
			after: engine.Counts{Running: 2},
		},
		"complete": {
			sql:  `SELECT count(*) FROM braid.job_complete_fast($1, $2, $3, $4, NULL)`,
			args: func(f fixture) []any { return receiptArgs(f.claimed.Receipt) },
			retry: func(t *testing.T, f fixture) {
				out, err := f.b.eng.Complete(f.b.ctx, []engine.Receipt{f.claimed.Receipt})
				require.NoError(t, err)
				require.Equal(t, []engine.Outcome{engine.Applied}, out)
			},
			after: engine.Counts{Available: 1, Completed: 1},
		},
		"fail": {
			sql:  `SELECT count(*) FROM braid.job_fail($1, $2, $3, $4, ARRAY['{"error":"x"}'::jsonb], ARRAY[NULL::interval], ARRAY[false], NULL)`,
			args: func(f fixture) []any { return receiptArgs(f.claimed.Receipt) },
			retry: func(t *testing.T, f fixture) {
				out, err := f.b.eng.Fail(f.b.ctx, []engine.Failure{{Receipt: f.claimed.Receipt, Error: "x"}})
				require.NoError(t, err)
				require.Equal(t, engine.Applied, out[0].Outcome)
			},
			after: engine.Counts{Available: 1, Retryable: 1},
		},
		"snooze": {
			sql:  `SELECT count(*) FROM braid.job_snooze($1, $2, $3, $4, ARRAY[interval '1 hour'], NULL)`,
			args: func(f fixture) []any { return receiptArgs(f.claimed.Receipt) },
			retry: func(t *testing.T, f fixture) {
				out, err := f.b.eng.Snooze(f.b.ctx, []engine.Receipt{f.claimed.Receipt}, []time.Duration{time.Hour})
				require.NoError(t, err)
				require.Equal(t, []engine.Outcome{engine.Applied}, out)
			},
			after: engine.Counts{Available: 1, Scheduled: 1},
		},
		"cancel running": {
			sql:  `SELECT count(*) FROM braid.job_cancel($1, false, NULL)`,
			args: func(f fixture) []any { return []any{f.claimed.Receipt.JobID} },
			retry: func(t *testing.T, f fixture) {
				res, err := f.b.eng.Cancel(f.b.ctx, f.claimed.Receipt.JobID)
				require.NoError(t, err)
				require.True(t, res.Cancelled)
			},
			after: engine.Counts{Available: 1, Cancelled: 1},
		},
		"discard available": {
			sql:  `SELECT count(*) FROM braid.job_cancel($1, true, NULL)`,
			args: func(f fixture) []any { return []any{f.spare} },
			retry: func(t *testing.T, f fixture) {
				res, err := f.b.eng.Discard(f.b.ctx, f.spare)
				require.NoError(t, err)
				require.True(t, res.Cancelled)
			},
			after: engine.Counts{Running: 1, DeadLettered: 1},
		},
		"rescue": {
			sql: `SELECT count(*) FROM braid.job_rescue(interval '1 second', 10, now() + interval '1 hour')`,
			retry: func(t *testing.T, f fixture) {
				_, err := f.b.pool.Exec(f.b.ctx, `SELECT braid.job_rescue(interval '1 second', 10, now() + interval '1 hour')`)
				require.NoError(t, err)
			},
			after: engine.Counts{Available: 1, Retryable: 1},
		},
	}
	for name, op := range ops {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			require.NoError(t, b.eng.ConfigureQueue(b.ctx, "q", settings(1, 5, true, time.Minute)))
			_, err := b.eng.Enqueue(b.ctx, job("q"))
			require.NoError(t, err)
			f := fixture{b: b, claimed: claimOne(t, b, "q")}
			spare, err := b.eng.Enqueue(b.ctx, job("q"))
			require.NoError(t, err)
			f.spare = spare.JobID
			before := counts(t, b, "q")
			require.Equal(t, engine.Counts{Available: 1, Running: 1}, before)

			conn, err := pgx.Connect(b.ctx, b.dsn)
			require.NoError(t, err)
			defer conn.Close(context.Background())
			var pid int
			require.NoError(t, conn.QueryRow(b.ctx, `SELECT pg_backend_pid()`).Scan(&pid))
			tx, err := conn.Begin(b.ctx)
			require.NoError(t, err)
			var args []any
			if op.args != nil {
				args = op.args(f)
			}
			var n int
			require.NoError(t, tx.QueryRow(b.ctx, op.sql, args...).Scan(&n))
			require.Positive(t, n, "the operation did something before the crash")

			var killed bool
			require.NoError(t, b.pool.QueryRow(b.ctx, `SELECT pg_terminate_backend($1, 5000)`, pid).Scan(&killed))
			require.True(t, killed)
			require.Error(t, tx.Commit(b.ctx), "the commit of a killed session cannot succeed")

			require.Equal(t, before, counts(t, b, "q"), "nothing of the crashed operation is visible")
			op.retry(t, f)
			require.Equal(t, op.after, counts(t, b, "q"))
			require.Zero(t, b.scalar(t, `SELECT count(*) FROM (
				SELECT c.batch_id, x FROM braid.closure c, unnest(c.members) x GROUP BY 1, 2 HAVING count(*) > 1) s`))
		})
	}
}

func receiptArgs(r engine.Receipt) []any {
	return []any{[]int16{r.ClaimSlot}, []int64{r.BatchID}, []int32{r.Index}, []int64{r.RunLease}}
}
