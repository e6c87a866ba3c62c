package engine

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Buckets is the number of counter buckets (braid.bucket: job_id mod 256).
const Buckets = 256

// RebuildResult reports a counter rebuild of one bucket, or the sum over the buckets a walk
// rebuilt.
type RebuildResult struct {
	Outcome    string // rebuilt, nothing or standing_down
	Bucket     int    // the bucket (a walk: the last bucket it worked on)
	LogRows    int64  // counter_log rows folded into the counters
	RowsBefore int64  // the bucket's counter rows before
	RowsAfter  int64  // and after: one per (queue, state) with a non-zero count
}

// RebuildCounters recomputes one bucket's terminal counters from their ground truth, the folded
// history of pruned queue slots (the bucket's counter_log rows and counter rows), and rewrites
// them as one row per (queue, state) with a non-zero count, in one transaction under lease l,
// while traffic runs (braid.counter_rebuild carries the argument for why concurrent writers
// cannot make it inexact: it waits for a fold or a prune's log write in flight, never for
// traffic). Counts never change by it. A counter value that is wrong in itself cannot be
// repaired: truncated slots leave no second record of it. It stands down, writing nothing, while
// the MVCC horizon has been pinned for longer than maxPin, because it deletes rows.
func (e *Engine) RebuildCounters(ctx context.Context, l Lease, bucket int, maxPin time.Duration) (RebuildResult, error) {
	if err := validateRebuild(bucket, maxPin); err != nil {
		return RebuildResult{}, err
	}
	res := RebuildResult{Bucket: bucket}
	err := e.maintain(ctx, l, fmt.Sprintf("rebuild counters of bucket %d", bucket), func(tx pgx.Tx) error {
		return tx.QueryRow(ctx, inSchema(`SELECT * FROM braid.counter_rebuild($1, $2)`, e.cfg.Schema), int16(bucket), maxPin).
			Scan(&res.Outcome, &res.LogRows, &res.RowsBefore, &res.RowsAfter)
	})
	return res, err
}

// RebuildAllCounters walks the buckets 0..255 with RebuildCounters, one transaction each, and
// returns the sums. It stops at the first bucket that stands down (Outcome standing_down,
// Bucket says where) or fails; Outcome is nothing when no bucket held folded history.
func (e *Engine) RebuildAllCounters(ctx context.Context, l Lease, maxPin time.Duration) (RebuildResult, error) {
	if err := validateRebuild(0, maxPin); err != nil {
		return RebuildResult{}, err
	}
	sum := RebuildResult{Outcome: "nothing"}
	for b := range Buckets {
		r, err := e.RebuildCounters(ctx, l, b, maxPin)
		if err != nil {
			return sum, err
		}
		sum.Bucket = b
		sum.LogRows += r.LogRows
		sum.RowsBefore += r.RowsBefore
		sum.RowsAfter += r.RowsAfter
		switch r.Outcome {
		case "standing_down":
			sum.Outcome = r.Outcome
			return sum, nil
		case "rebuilt":
			sum.Outcome = r.Outcome
		}
	}
	return sum, nil
}

func validateRebuild(bucket int, maxPin time.Duration) error {
	var bad []error
	if bucket < 0 || bucket >= Buckets {
		bad = append(bad, &ValidationError{Field: "bucket", Value: bucket, Problem: "must be 0..255"})
	}
	if maxPin <= 0 {
		bad = append(bad, &ValidationError{Field: "max_pin", Value: maxPin, Problem: "must be > 0"})
	}
	return errors.Join(bad...)
}

// TrimResult reports one ring ledger trim.
type TrimResult struct {
	Outcome string // trimmed, nothing or standing_down
	Deleted int    // ledger rows deleted, both rings
}

// TrimRingLedger deletes, in both rings, the ledger generations older than the newest
// max(keep, slots) under lease l, in one transaction. Nothing reads a generation older than the
// newest one, and the newest `slots` name every retained slot (braid.ring_ledger_trim has the
// argument), so rotation, enqueue, claim and prune never notice. It stands down, deleting
// nothing, while the MVCC horizon has been pinned for longer than maxPin.
func (e *Engine) TrimRingLedger(ctx context.Context, l Lease, keep int, maxPin time.Duration) (TrimResult, error) {
	var bad []error
	if keep < 1 {
		bad = append(bad, &ValidationError{Field: "keep", Value: keep, Problem: "must be >= 1"})
	}
	if maxPin <= 0 {
		bad = append(bad, &ValidationError{Field: "max_pin", Value: maxPin, Problem: "must be > 0"})
	}
	if err := errors.Join(bad...); err != nil {
		return TrimResult{}, err
	}
	res := TrimResult{Outcome: "nothing"}
	err := e.maintain(ctx, l, "trim ring ledger", func(tx pgx.Tx) error {
		var n *int64
		if err := tx.QueryRow(ctx, inSchema(`SELECT braid.ring_ledger_trim($1, $2)`, e.cfg.Schema), int32(keep), maxPin).Scan(&n); err != nil {
			return err
		}
		switch {
		case n == nil:
			res.Outcome = "standing_down"
		case *n > 0:
			res = TrimResult{Outcome: "trimmed", Deleted: int(*n)}
		}
		return nil
	})
	return res, err
}
