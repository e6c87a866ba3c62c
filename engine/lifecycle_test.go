package engine_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/braidq/braid/engine"
)

func claimOne(t testing.TB, b *bundle, queue string) engine.Claimed {
	t.Helper()
	cs := claimAll(t, b, queue, 1)
	require.Len(t, cs, 1)
	return cs[0]
}

func counts(t testing.TB, b *bundle, queue string) engine.Counts {
	t.Helper()
	c, err := b.eng.Counts(b.ctx, queue)
	require.NoError(t, err)
	return c
}

func state(t testing.TB, b *bundle, id int64) engine.JobInfo {
	t.Helper()
	info, err := b.eng.JobGet(b.ctx, id)
	require.NoError(t, err)
	return info
}

func settings(lanes, maxAttempts int, dlq bool, deadline time.Duration) engine.QueueSettings {
	return engine.QueueSettings{Lanes: lanes, DLQ: dlq, MaxAttempts: maxAttempts, Deadline: deadline}
}

func TestFailRetriesThenDeadLetters(t *testing.T) {
	t.Parallel()
	b := setup(t)
	require.NoError(t, b.eng.ConfigureQueue(b.ctx, "q", settings(1, 2, true, time.Minute)))
	res, err := b.eng.Enqueue(b.ctx, job("q"))
	require.NoError(t, err)

	c := claimOne(t, b, "q")
	out, err := b.eng.Fail(b.ctx, []engine.Failure{{Receipt: c.Receipt, Error: "boom", Trace: "main.go:1", RetryAfter: time.Millisecond}})
	require.NoError(t, err)
	require.Equal(t, []engine.FailResult{{Outcome: engine.Applied, State: engine.StateRetryable}}, out)
	info := state(t, b, res.JobID)
	require.Equal(t, engine.StateRetryable, info.State)
	require.Equal(t, 1, info.Attempt)
	var hist []map[string]any
	require.NoError(t, json.Unmarshal(info.Errors, &hist))
	require.Len(t, hist, 1)
	require.Equal(t, "boom", hist[0]["error"])
	require.Equal(t, "main.go:1", hist[0]["trace"])
	require.EqualValues(t, 1, hist[0]["attempt"])
	require.Equal(t, engine.Counts{Retryable: 1}, counts(t, b, "q"))

	again, err := b.eng.Fail(b.ctx, []engine.Failure{{Receipt: c.Receipt, Error: "late"}})
	require.NoError(t, err)
	require.Equal(t, engine.Stale, again[0].Outcome, "a late failure of an ended attempt is stale")

	time.Sleep(5 * time.Millisecond)
	n, err := b.eng.Promote(b.ctx, 100)
	require.NoError(t, err)
	require.Equal(t, 1, n)
	require.Equal(t, engine.StateAvailable, state(t, b, res.JobID).State)

	c2 := claimOne(t, b, "q")
	require.Equal(t, res.JobID, c2.Receipt.JobID)
	require.Equal(t, int64(2), c2.Receipt.RunLease)
	require.Equal(t, 2, c2.Attempt)
	require.JSONEq(t, string(info.Errors), string(c2.Errors), "the handler sees earlier errors")

	out, err = b.eng.Fail(b.ctx, []engine.Failure{{Receipt: c2.Receipt, Error: "boom again"}})
	require.NoError(t, err)
	require.Equal(t, engine.StateDeadLettered, out[0].State, "attempts exhausted on a DLQ queue")
	require.Equal(t, engine.StateDeadLettered, state(t, b, res.JobID).State)
	require.Equal(t, engine.Counts{DeadLettered: 1}, counts(t, b, "q"))
}

func TestFailWithoutDLQAndTerminalErrors(t *testing.T) {
	t.Parallel()
	b := setup(t)
	require.NoError(t, b.eng.ConfigureQueue(b.ctx, "nodlq", settings(1, 5, false, time.Minute)))
	require.NoError(t, b.eng.ConfigureQueue(b.ctx, "dlq", settings(1, 5, true, time.Minute)))
	j := job("nodlq")
	j.UniqueKey = "k"
	res, err := b.eng.Enqueue(b.ctx, j)
	require.NoError(t, err)
	_, err = b.eng.Enqueue(b.ctx, job("dlq"))
	require.NoError(t, err)

	out, err := b.eng.Fail(b.ctx, []engine.Failure{
		{Receipt: claimOne(t, b, "nodlq").Receipt, Error: "bad input", Terminal: true},
		{Receipt: claimOne(t, b, "dlq").Receipt, Error: "bad input", Terminal: true},
	})
	require.NoError(t, err)
	require.Equal(t, engine.StateFailed, out[0].State)
	require.Equal(t, engine.StateDeadLettered, out[1].State, "a terminal error skips the remaining attempts")
	require.Equal(t, engine.Counts{Failed: 1}, counts(t, b, "nodlq"))
	require.Equal(t, engine.Counts{DeadLettered: 1}, counts(t, b, "dlq"))
	info := state(t, b, res.JobID)
	require.Equal(t, engine.StateFailed, info.State)
	require.False(t, info.FinishedAt.IsZero())

	_, err = b.eng.Enqueue(b.ctx, j)
	require.NoError(t, err, "a failed job releases its unique key")

	_, err = b.eng.Fail(b.ctx, []engine.Failure{{Receipt: engine.Receipt{ShardID: testShard}, RetryAfter: -time.Second, Error: strings.Repeat("x", 70<<10)}})
	require.ErrorContains(t, err, "invalid failures[0].retry_after")
	require.ErrorContains(t, err, "invalid failures[0].error")
}

func TestSnoozeDoesNotConsumeAnAttempt(t *testing.T) {
	t.Parallel()
	b := setup(t)
	require.NoError(t, b.eng.ConfigureQueue(b.ctx, "q", settings(1, 1, true, time.Minute)))
	res, err := b.eng.Enqueue(b.ctx, job("q"))
	require.NoError(t, err)
	c := claimOne(t, b, "q")
	out, err := b.eng.Snooze(b.ctx, []engine.Receipt{c.Receipt}, []time.Duration{time.Millisecond})
	require.NoError(t, err)
	require.Equal(t, []engine.Outcome{engine.Applied}, out)
	require.Equal(t, engine.StateScheduled, state(t, b, res.JobID).State)
	require.Equal(t, engine.Counts{Scheduled: 1}, counts(t, b, "q"))
	time.Sleep(5 * time.Millisecond)
	_, err = b.eng.Promote(b.ctx, 10)
	require.NoError(t, err)
	c2 := claimOne(t, b, "q")
	require.Equal(t, 1, c2.Attempt, "snooze gave the attempt back")
	require.Equal(t, int64(2), c2.Receipt.RunLease, "but the run lease still moved on")
	out, err = b.eng.Snooze(b.ctx, []engine.Receipt{c.Receipt}, []time.Duration{time.Second})
	require.NoError(t, err)
	require.Equal(t, []engine.Outcome{engine.Stale}, out)
}

func TestCancelInEveryState(t *testing.T) {
	t.Parallel()
	b := setup(t)
	require.NoError(t, b.eng.ConfigureQueue(b.ctx, "q", settings(1, 5, true, time.Minute)))

	t.Run("scheduled", func(t *testing.T) {
		j := job("q")
		j.RunAt = time.Now().Add(time.Hour)
		j.UniqueKey = "sched"
		res, err := b.eng.Enqueue(b.ctx, j)
		require.NoError(t, err)
		got, err := b.eng.Cancel(b.ctx, res.JobID)
		require.NoError(t, err)
		require.Equal(t, engine.CancelResult{Cancelled: true, Previous: engine.StateScheduled}, got)
		info := state(t, b, res.JobID)
		require.Equal(t, engine.StateCancelled, info.State)
		require.Equal(t, "test", info.Kind, "a job cancelled before it was ever ready keeps its body")
		_, err = b.eng.Enqueue(b.ctx, j)
		require.NoError(t, err, "cancel released the unique key")
		_, err = b.eng.Cancel(b.ctx, res.JobID+1000)
		require.ErrorIs(t, err, engine.ErrNotFound)
	})

	t.Run("available: no claim emits it afterwards", func(t *testing.T) {
		res, err := b.eng.Enqueue(b.ctx, job("avail"))
		require.NoError(t, err)
		other, err := b.eng.Enqueue(b.ctx, job("avail"))
		require.NoError(t, err)
		got, err := b.eng.Cancel(b.ctx, res.JobID)
		require.NoError(t, err)
		require.Equal(t, engine.CancelResult{Cancelled: true, Previous: engine.StateAvailable}, got)
		cs := claimAll(t, b, "avail", 10)
		require.Len(t, cs, 1)
		require.Equal(t, other.JobID, cs[0].Receipt.JobID)
		require.Equal(t, engine.Counts{Running: 1, Cancelled: 1}, counts(t, b, "avail"))
	})

	t.Run("a claim passes a cancelled prefix of the lane in one call", func(t *testing.T) {
		res, err := b.eng.EnqueueMany(b.ctx, []engine.Job{job("prefix"), job("prefix"), job("prefix")})
		require.NoError(t, err)
		for _, r := range res[:2] {
			_, err := b.eng.Cancel(b.ctx, r.JobID)
			require.NoError(t, err)
		}
		cs, err := b.eng.Claim(b.ctx, engine.ClaimRequest{Queue: "prefix", LaneNo: -1, Max: 2})
		require.NoError(t, err)
		require.Len(t, cs, 1, "an empty claim must mean an empty lane")
		require.Equal(t, res[2].JobID, cs[0].Receipt.JobID)
	})

	t.Run("running: the attempt ends and the worker is told", func(t *testing.T) {
		conn, err := pgx.Connect(b.ctx, b.dsn)
		require.NoError(t, err)
		defer conn.Close(b.ctx)
		_, err = conn.Exec(b.ctx, "LISTEN "+pgx.Identifier{b.eng.CancelChannel()}.Sanitize())
		require.NoError(t, err)

		res, err := b.eng.Enqueue(b.ctx, job("run"))
		require.NoError(t, err)
		c := claimOne(t, b, "run")
		got, err := b.eng.Cancel(b.ctx, res.JobID)
		require.NoError(t, err)
		require.Equal(t, engine.CancelResult{Cancelled: true, Previous: engine.StateRunning}, got)
		n, err := conn.WaitForNotification(b.ctx)
		require.NoError(t, err)
		require.Equal(t, fmt.Sprintf("%d:%d", res.JobID, c.Receipt.RunLease), n.Payload)

		out, err := b.eng.Complete(b.ctx, []engine.Receipt{c.Receipt})
		require.NoError(t, err)
		require.Equal(t, []engine.Outcome{engine.Stale}, out, "the late completion of a cancelled attempt is stale")
		require.Equal(t, engine.StateCancelled, state(t, b, res.JobID).State)
		require.Equal(t, engine.Counts{Cancelled: 1}, counts(t, b, "run"))

		again, err := b.eng.Cancel(b.ctx, res.JobID)
		require.NoError(t, err)
		require.Equal(t, engine.CancelResult{Cancelled: false, Previous: engine.StateCancelled}, again, "cancelling a finished job is a no-op")
	})

	t.Run("completed: left alone", func(t *testing.T) {
		res, err := b.eng.Enqueue(b.ctx, job("done"))
		require.NoError(t, err)
		_, err = b.eng.Complete(b.ctx, []engine.Receipt{claimOne(t, b, "done").Receipt})
		require.NoError(t, err)
		got, err := b.eng.Cancel(b.ctx, res.JobID)
		require.NoError(t, err)
		require.Equal(t, engine.CancelResult{Cancelled: false, Previous: engine.StateCompleted}, got)
		require.Equal(t, engine.Counts{Completed: 1}, counts(t, b, "done"))
	})
}

func TestHeartbeatAndRescue(t *testing.T) {
	t.Parallel()
	b := setup(t)
	require.NoError(t, b.eng.ConfigureQueue(b.ctx, "q", settings(1, 2, true, time.Hour)))
	_, err := b.eng.EnqueueMany(b.ctx, []engine.Job{job("q"), job("q")})
	require.NoError(t, err)
	beating, silent := claimOne(t, b, "q"), claimOne(t, b, "q")

	time.Sleep(300 * time.Millisecond)
	hb, err := b.eng.Heartbeat(b.ctx, []engine.Receipt{beating.Receipt}, []json.RawMessage{[]byte(`{"done":3}`)})
	require.NoError(t, err)
	require.Equal(t, []engine.HeartbeatResult{{Outcome: engine.Applied, Receipt: beating.Receipt}}, hb)

	res, err := b.eng.Rescue(b.ctx, 200*time.Millisecond, 100)
	require.NoError(t, err)
	require.Equal(t, engine.RescueResult{Retried: 1}, res, "only the attempt without a recent heartbeat is rescued")
	info := state(t, b, silent.Receipt.JobID)
	require.Equal(t, engine.StateRetryable, info.State)
	require.Contains(t, string(info.Errors), "rescued: no heartbeat since")
	require.Equal(t, engine.StateRunning, state(t, b, beating.Receipt.JobID).State)

	hb, err = b.eng.Heartbeat(b.ctx, []engine.Receipt{silent.Receipt}, nil)
	require.NoError(t, err)
	require.Equal(t, engine.Stale, hb[0].Outcome, "a rescued attempt's heartbeat is stale")
	outs, err := b.eng.Complete(b.ctx, []engine.Receipt{silent.Receipt, beating.Receipt})
	require.NoError(t, err)
	require.Equal(t, []engine.Outcome{engine.Stale, engine.Applied}, outs)
	require.Zero(t, b.scalar(t, `SELECT count(*) FROM braid.attempt_state`), "ended attempts leave no heartbeat rows")
}

// TestRescueCountsAsAnAttempt: a job that always hangs ends dead-lettered, not retried forever,
// and rescue makes progress through thousands of stale attempts in bounded calls.
func TestRescueCountsAsAnAttempt(t *testing.T) {
	t.Parallel()
	b := setup(t)
	require.NoError(t, b.eng.ConfigureQueue(b.ctx, "hang", settings(4, 2, true, time.Millisecond)))
	const n = 2000
	jobs := make([]engine.Job, n)
	for i := range jobs {
		jobs[i] = job("hang")
	}
	_, err := b.eng.EnqueueMany(b.ctx, jobs)
	require.NoError(t, err)
	for attempt := 1; attempt <= 2; attempt++ {
		if attempt == 2 {
			// The retries wait out a 2 s backoff; bring their time forward instead of sleeping.
			b.exec(t, `UPDATE braid.deferred SET run_at = now() - interval '1 second'`)
			for {
				p, err := b.eng.Promote(b.ctx, 1000)
				require.NoError(t, err)
				if p == 0 {
					break
				}
			}
		}
		claimed := 0
		for {
			cs := claimAll(t, b, "hang", 500)
			if len(cs) == 0 {
				break
			}
			claimed += len(cs)
		}
		require.Equal(t, n, claimed)
		time.Sleep(5 * time.Millisecond) // every deadline passes
		calls, rescued := 0, 0
		for {
			res, err := b.eng.Rescue(b.ctx, time.Hour, 500)
			require.NoError(t, err)
			got := res.Retried + res.DeadLettered + res.Failed
			if got == 0 {
				break
			}
			require.LessOrEqual(t, got, 500)
			if attempt == 1 {
				require.Equal(t, got, res.Retried)
			} else {
				require.Equal(t, got, res.DeadLettered)
			}
			calls++
			rescued += got
		}
		require.Equal(t, n, rescued)
		require.Equal(t, 4, calls)
	}
	require.Equal(t, engine.Counts{DeadLettered: n}, counts(t, b, "hang"))
}

func TestDeadLetterOperations(t *testing.T) {
	t.Parallel()
	b := setup(t)
	require.NoError(t, b.eng.ConfigureQueue(b.ctx, "q", settings(1, 1, true, time.Minute)))
	var ids []int64
	for i := range 5 {
		j := job("q")
		j.UniqueKey = fmt.Sprintf("u%d", i)
		res, err := b.eng.Enqueue(b.ctx, j)
		require.NoError(t, err)
		ids = append(ids, res.JobID)
		_, err = b.eng.Fail(b.ctx, []engine.Failure{{Receipt: claimOne(t, b, "q").Receipt, Error: "x"}})
		require.NoError(t, err)
	}

	page1, err := b.eng.DeadLetters(b.ctx, engine.DeadLetterPage{Queue: "q", Limit: 3})
	require.NoError(t, err)
	require.Len(t, page1, 3)
	page2, err := b.eng.DeadLetters(b.ctx, engine.DeadLetterPage{Queue: "q", Limit: 3, After: &page1[2]})
	require.NoError(t, err)
	require.Len(t, page2, 2)
	var listed []int64
	for _, d := range append(page1, page2...) {
		listed = append(listed, d.JobID)
	}
	require.ElementsMatch(t, ids, listed)
	require.Equal(t, ids[4], page1[0].JobID, "newest first")

	// u1's key is taken by a new live job: its dead letter cannot come back.
	holder, err := b.eng.Enqueue(b.ctx, engine.Job{Queue: "q", Kind: "test", UniqueKey: "u1"})
	require.NoError(t, err)
	rr, err := b.eng.DeadLetterRetry(b.ctx, []int64{ids[0], ids[1]})
	require.NoError(t, err)
	require.Equal(t, []engine.DeadLetterRetryResult{{JobID: ids[0], Retried: true}, {JobID: ids[1], HeldBy: holder.JobID}}, rr)
	info := state(t, b, ids[0])
	require.Equal(t, engine.StateAvailable, info.State)
	require.Equal(t, 0, info.Attempt, "attempts reset")
	require.Equal(t, int64(1), info.RunLease, "run lease lineage kept")

	purged, err := b.eng.DeadLetterPurge(b.ctx, []int64{ids[2], ids[2], 999})
	require.NoError(t, err)
	require.Equal(t, []int64{ids[2]}, purged)
	_, err = b.eng.JobGet(b.ctx, ids[2])
	require.ErrorIs(t, err, engine.ErrNotFound, "a purged job is gone")

	// Retry and purge racing for the same letter: exactly one wins.
	var wg sync.WaitGroup
	var retried []engine.DeadLetterRetryResult
	var purgedRace []int64
	wg.Go(func() { retried, _ = b.eng.DeadLetterRetry(context.Background(), []int64{ids[3]}) })
	wg.Go(func() { purgedRace, _ = b.eng.DeadLetterPurge(context.Background(), []int64{ids[3]}) })
	wg.Wait()
	require.Equal(t, 1, len(retried)+len(purgedRace), "retry %v, purge %v", retried, purgedRace)

	trimmed, err := b.eng.DeadLetterTrim(b.ctx, time.Nanosecond, 100)
	require.NoError(t, err)
	require.Equal(t, 2, trimmed, "u1's letter and u4's letter are past a 1ns retention")
	require.Zero(t, counts(t, b, "q").DeadLettered)
}

// The forced races: the first ender holds the claim batch lock inside an open transaction, the
// second is started and must wait; when the first commits, the second finds the attempt closed.
func TestRacingEndersHaveOneWinner(t *testing.T) {
	t.Parallel()
	firsts := map[string]struct {
		sql   string
		args  func(c engine.Claimed) []any
		state engine.JobState
		want  engine.Counts
	}{
		"complete": {`SELECT count(*) FROM braid.job_complete_fast($1, $2, $3, $4, NULL)`,
			func(c engine.Claimed) []any { return receiptArgs(c.Receipt) }, engine.StateCompleted, engine.Counts{Completed: 1}},
		"cancel": {`SELECT count(*) FROM braid.job_cancel($1, false, NULL)`,
			func(c engine.Claimed) []any { return []any{c.Receipt.JobID} }, engine.StateCancelled, engine.Counts{Cancelled: 1}},
	}
	seconds := map[string]func(b *bundle, c engine.Claimed) (bool, error){
		"rescue": func(b *bundle, c engine.Claimed) (bool, error) {
			res, err := b.eng.Rescue(context.Background(), time.Nanosecond, 10)
			return res.Retried+res.DeadLettered+res.Failed > 0, err
		},
		"fail": func(b *bundle, c engine.Claimed) (bool, error) {
			out, err := b.eng.Fail(context.Background(), []engine.Failure{{Receipt: c.Receipt, Error: "x"}})
			return err == nil && out[0].Outcome == engine.Applied, err
		},
		"cancel": func(b *bundle, c engine.Claimed) (bool, error) {
			res, err := b.eng.Cancel(context.Background(), c.Receipt.JobID)
			return res.Cancelled, err
		},
		"snooze": func(b *bundle, c engine.Claimed) (bool, error) {
			out, err := b.eng.Snooze(context.Background(), []engine.Receipt{c.Receipt}, []time.Duration{time.Second})
			return err == nil && out[0] == engine.Applied, err
		},
		"complete": func(b *bundle, c engine.Claimed) (bool, error) {
			out, err := b.eng.Complete(context.Background(), []engine.Receipt{c.Receipt})
			return err == nil && out[0] == engine.Applied, err
		},
	}
	for firstName, first := range firsts {
		for secondName, second := range seconds {
			if firstName == secondName {
				continue
			}
			t.Run(firstName+" vs "+secondName, func(t *testing.T) {
				t.Parallel()
				b := setup(t)
				_, err := b.eng.Enqueue(b.ctx, job("q"))
				require.NoError(t, err)
				c := claimOne(t, b, "q")

				tx, err := b.pool.Begin(b.ctx)
				require.NoError(t, err)
				defer tx.Rollback(context.Background()) //nolint:errcheck // a no-op after Commit
				var applied int
				require.NoError(t, tx.QueryRow(b.ctx, first.sql, first.args(c)...).Scan(&applied))
				require.Equal(t, 1, applied)

				done := make(chan struct{})
				var won bool
				var secondErr error
				go func() {
					defer close(done)
					won, secondErr = second(b, c)
				}()
				// The second ender must be waiting on a lock the first holds, not finished.
				require.Eventually(t, func() bool {
					return b.scalar(t, `SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted`) > 0
				}, 10*time.Second, 5*time.Millisecond)
				require.NoError(t, tx.Commit(b.ctx))
				<-done
				require.NoError(t, secondErr)
				require.False(t, won, "the attempt had already ended")
				require.Equal(t, first.state, state(t, b, c.Receipt.JobID).State)
				require.Equal(t, int64(1), b.scalar(t, `SELECT count(*) FROM braid.closure`))
				require.Equal(t, first.want, counts(t, b, "q"))
			})
		}
	}
}

// TestCancelRacesClaim: a cancel of an available job and a claim of its lane serialise on the
// lane's claim lock; the job is either cancelled and never emitted, or emitted and its attempt
// cancelled as running.
func TestCancelRacesClaim(t *testing.T) {
	t.Parallel()
	b := setup(t)
	require.NoError(t, b.eng.ConfigureQueue(b.ctx, "q", settings(1, 5, true, time.Minute)))
	for range 30 {
		res, err := b.eng.Enqueue(b.ctx, job("q"))
		require.NoError(t, err)
		var wg sync.WaitGroup
		var cs []engine.Claimed
		var cr engine.CancelResult
		var claimErr, cancelErr error
		wg.Go(func() {
			cs, claimErr = b.eng.Claim(context.Background(), engine.ClaimRequest{Queue: "q", LaneNo: -1, Max: 5})
		})
		wg.Go(func() { cr, cancelErr = b.eng.Cancel(context.Background(), res.JobID) })
		wg.Wait()
		require.NoError(t, claimErr)
		require.NoError(t, cancelErr)
		require.True(t, cr.Cancelled)
		if len(cs) == 1 {
			require.Equal(t, engine.StateRunning, cr.Previous)
			out, err := b.eng.Complete(b.ctx, receipts(cs))
			require.NoError(t, err)
			require.Equal(t, []engine.Outcome{engine.Stale}, out)
		} else {
			require.Empty(t, cs)
			require.Equal(t, engine.StateAvailable, cr.Previous)
		}
		require.Equal(t, engine.StateCancelled, state(t, b, res.JobID).State)
	}
	require.Equal(t, engine.Counts{Cancelled: 30}, counts(t, b, "q"))
}

func TestDiscardAndOperatorRetry(t *testing.T) {
	t.Parallel()
	b := setup(t)
	require.NoError(t, b.eng.ConfigureQueue(b.ctx, "q", settings(1, 1, false, time.Minute)))

	t.Run("discard moves live jobs to the dead-letter table", func(t *testing.T) {
		sched := job("q")
		sched.RunAt = time.Now().Add(time.Hour)
		s, err := b.eng.Enqueue(b.ctx, sched)
		require.NoError(t, err)
		run, err := b.eng.Enqueue(b.ctx, job("q"))
		require.NoError(t, err)
		c := claimOne(t, b, "q")
		avail, err := b.eng.Enqueue(b.ctx, job("q"))
		require.NoError(t, err)

		for id, prev := range map[int64]engine.JobState{s.JobID: engine.StateScheduled, run.JobID: engine.StateRunning, avail.JobID: engine.StateAvailable} {
			res, err := b.eng.Discard(b.ctx, id)
			require.NoError(t, err)
			require.Equal(t, engine.CancelResult{Cancelled: true, Previous: prev}, res)
			require.Equal(t, engine.StateDeadLettered, state(t, b, id).State)
		}
		out, err := b.eng.Complete(b.ctx, []engine.Receipt{c.Receipt})
		require.NoError(t, err)
		require.Equal(t, []engine.Outcome{engine.Stale}, out)
		require.Empty(t, claimAll(t, b, "q", 10))
		require.Equal(t, engine.Counts{DeadLettered: 3}, counts(t, b, "q"))
		_, err = b.eng.DeadLetterPurge(b.ctx, []int64{s.JobID, run.JobID, avail.JobID})
		require.NoError(t, err)
	})

	t.Run("retry brings failed and cancelled jobs back", func(t *testing.T) {
		j := job("q")
		j.UniqueKey = "once"
		failed, err := b.eng.Enqueue(b.ctx, j)
		require.NoError(t, err)
		_, err = b.eng.Fail(b.ctx, []engine.Failure{{Receipt: claimOne(t, b, "q").Receipt, Error: "x"}})
		require.NoError(t, err)
		cancelled, err := b.eng.Enqueue(b.ctx, job("q"))
		require.NoError(t, err)
		_, err = b.eng.Cancel(b.ctx, cancelled.JobID)
		require.NoError(t, err)
		require.Equal(t, engine.Counts{Failed: 1, Cancelled: 1}, counts(t, b, "q"))

		// Two operators retry the failed job at once: one wins.
		var wg sync.WaitGroup
		results := make([]error, 2)
		for i := range results {
			wg.Go(func() { _, results[i] = b.eng.Retry(context.Background(), failed.JobID) })
		}
		wg.Wait()
		require.ElementsMatch(t, []bool{true, false}, []bool{results[0] == nil, results[1] == nil}, "%v", results)
		for _, err := range results {
			if err != nil {
				require.ErrorIs(t, err, engine.ErrNotRetryable)
			}
		}
		info := state(t, b, failed.JobID)
		require.Equal(t, engine.StateAvailable, info.State)
		require.Equal(t, 0, info.Attempt)
		_, err = b.eng.Enqueue(b.ctx, j)
		var conflict *engine.UniqueConflictError
		require.ErrorAs(t, err, &conflict, "the retried job holds its unique key again")

		res, err := b.eng.Retry(b.ctx, cancelled.JobID)
		require.NoError(t, err)
		require.Equal(t, engine.RetryResult{Retried: true, Previous: engine.StateCancelled}, res)
		require.Equal(t, engine.Counts{Available: 2}, counts(t, b, "q"))

		cs := claimAll(t, b, "q", 10)
		require.Len(t, cs, 2)
		require.Equal(t, int64(3), cs[0].Receipt.RunLease, "the failed job's lease lineage continues (attempt 1, retry row 2, claim 3)")
		_, err = b.eng.Complete(b.ctx, receipts(cs))
		require.NoError(t, err)
		_, err = b.eng.Retry(b.ctx, failed.JobID)
		require.ErrorIs(t, err, engine.ErrNotRetryable, "a completed job is not retried")
		require.Equal(t, engine.Counts{Completed: 2}, counts(t, b, "q"))
	})
}

// TestRehomeLongAttempts: an attempt older than a claim slot's life is moved into the current
// claim slot; the worker's old receipt keeps working, its heartbeat answer carries the new
// receipt, the heartbeat state moves with it, and the old slot holds no open attempt.
func TestRehomeLongAttempts(t *testing.T) {
	t.Parallel()
	b := setup(t)
	_, err := b.eng.EnqueueMany(b.ctx, []engine.Job{job("q"), job("q"), job("q")})
	require.NoError(t, err)
	cs := claimAll(t, b, "q", 3)
	require.Len(t, cs, 3)
	hb, err := b.eng.Heartbeat(b.ctx, []engine.Receipt{cs[0].Receipt}, []json.RawMessage{[]byte(`{"step":1}`)})
	require.NoError(t, err)
	require.Equal(t, cs[0].Receipt, hb[0].Receipt)

	n, err := b.eng.Rehome(b.ctx, 0, 100)
	require.NoError(t, err)
	require.Zero(t, n, "attempts in the current claim slot stay")
	b.rotate(t, "claim")
	n, err = b.eng.Rehome(b.ctx, 0, 2)
	require.NoError(t, err)
	require.Equal(t, 2, n, "bounded by the limit")
	n, err = b.eng.Rehome(b.ctx, 0, 100)
	require.NoError(t, err)
	require.Equal(t, 1, n)
	b.rotate(t, "claim")
	n, err = b.eng.Rehome(b.ctx, 0, 100)
	require.NoError(t, err)
	require.Equal(t, 3, n, "re-homed again after another rotation")

	require.Zero(t, b.scalar(t, `SELECT count(*) FROM braid.claim_batch b,
		braid.open_attempts(ARRAY[b.cslot], ARRAY[b.batch_id]) o WHERE b.cslot = 0`), "the first slot holds no open attempt")
	require.Equal(t, engine.Counts{Running: 3}, counts(t, b, "q"))
	info := state(t, b, cs[0].Receipt.JobID)
	require.Equal(t, engine.StateRunning, info.State)
	require.Equal(t, cs[0].Receipt.RunLease, info.RunLease)

	hb, err = b.eng.Heartbeat(b.ctx, receipts(cs[:2]), nil)
	require.NoError(t, err)
	for i, h := range hb {
		require.Equal(t, engine.Applied, h.Outcome)
		require.NotEqual(t, cs[i].Receipt.BatchID, h.Receipt.BatchID, "the answer carries the new receipt")
		require.Equal(t, int16(2), h.Receipt.ClaimSlot)
		require.Equal(t, cs[i].Receipt.RunLease, h.Receipt.RunLease)
	}
	var progress string
	require.NoError(t, b.pool.QueryRow(b.ctx, `SELECT progress::text FROM braid.attempt_state WHERE job_id = $1`, cs[0].Receipt.JobID).Scan(&progress))
	require.JSONEq(t, `{"step":1}`, progress, "the heartbeat state moved with the attempt")

	// Old and new receipts end the right attempts exactly once; when both receipts of one attempt
	// come in one call, the current one applies and the followed old one is stale.
	out, err := b.eng.Complete(b.ctx, []engine.Receipt{cs[0].Receipt, hb[1].Receipt, cs[2].Receipt, hb[0].Receipt})
	require.NoError(t, err)
	require.Equal(t, []engine.Outcome{engine.Stale, engine.Applied, engine.Applied, engine.Applied}, out)
	require.Equal(t, engine.Counts{Completed: 3}, counts(t, b, "q"))
	for _, c := range cs {
		require.Equal(t, engine.StateCompleted, state(t, b, c.Receipt.JobID).State)
	}
	got, err := b.eng.Cancel(b.ctx, cs[1].Receipt.JobID)
	require.NoError(t, err)
	require.False(t, got.Cancelled)
}
