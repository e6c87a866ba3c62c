package engine

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Lease is a held maintenance lease: holder and epoch, as the shard's lease row says.
type Lease struct {
	Holder string
	Epoch  int64
}

// ErrLeaseLost is returned by a maintenance step whose lease was taken over or expired; the
// step wrote nothing and its caller must step down.
var ErrLeaseLost = errors.New("maintenance lease lost")

// LeaseAcquire takes the shard's maintenance lease for holder until now + ttl (database clock)
// when it is free, expired or already holder's. ok is false while another holder's lease is
// live. A takeover waits for the old holder's maintenance transactions in flight, so after it
// returns none of them is running.
func (e *Engine) LeaseAcquire(ctx context.Context, holder string, ttl time.Duration) (lease Lease, ok bool, err error) {
	if holder == "" || ttl <= 0 {
		return Lease{}, false, &ValidationError{Field: "holder", Value: holder, Problem: "holder must be non-empty and ttl > 0"}
	}
	var epoch *int64
	if err := e.pool.QueryRow(ctx, e.sql.leaseAcquire, holder, ttl).Scan(&epoch); err != nil {
		return Lease{}, false, fmt.Errorf("shard %d: acquire maintenance lease: %w", e.id.ShardID, err)
	}
	if epoch == nil {
		return Lease{}, false, nil
	}
	return Lease{Holder: holder, Epoch: *epoch}, true, nil
}

// LeaseRenew extends a held lease to now + ttl. False: it was lost; step down.
func (e *Engine) LeaseRenew(ctx context.Context, l Lease, ttl time.Duration) (bool, error) {
	var ok bool
	if err := e.pool.QueryRow(ctx, e.sql.leaseRenew, l.Holder, l.Epoch, ttl).Scan(&ok); err != nil {
		return false, fmt.Errorf("shard %d: renew maintenance lease: %w", e.id.ShardID, err)
	}
	return ok, nil
}

// maintain runs one maintenance step in a transaction whose first statement checks the lease
// (and keeps it share-locked, so a takeover waits for the step). ErrLeaseLost: nothing written.
func (e *Engine) maintain(ctx context.Context, l Lease, step string, fn func(pgx.Tx) error) error {
	_, err := e.maintainTimed(ctx, l, step, fn)
	return err
}

// maintainTimed is maintain that also reports how long the commit took.
func (e *Engine) maintainTimed(ctx context.Context, l Lease, step string, fn func(pgx.Tx) error) (commit time.Duration, err error) {
	err = func() error {
		tx, err := e.pool.Begin(ctx)
		if err != nil {
			return err
		}
		defer tx.Rollback(ctx) //nolint:errcheck // a no-op after Commit
		var held bool
		if err := tx.QueryRow(ctx, e.sql.leaseCheck, l.Holder, l.Epoch).Scan(&held); err != nil {
			return err
		}
		if !held {
			return ErrLeaseLost
		}
		if err := fn(tx); err != nil {
			return err
		}
		start := time.Now()
		err = tx.Commit(ctx)
		commit = time.Since(start)
		return err
	}()
	if err != nil {
		return 0, fmt.Errorf("shard %d: %s: %w", e.id.ShardID, step, err)
	}
	return commit, nil
}

// Ring names one of the engine's two rings.
type Ring string

const (
	QueueRing Ring = "queue"
	ClaimRing Ring = "claim"
)

// RotateResult reports one rotation attempt.
type RotateResult struct {
	Outcome    string // rotated, young, idle or next_slot_busy
	Generation int64  // the ring's current generation afterwards
	Slot       int    // and its slot
}

// Rotate appends the ring's next generation under lease l when the current generation is at
// least minAge old, its slot holds rows (an idle ring does not churn the ledger) and the next
// slot is empty (it stays busy until prune reclaims it).
func (e *Engine) Rotate(ctx context.Context, l Lease, ring Ring, minAge time.Duration) (RotateResult, error) {
	if ring != QueueRing && ring != ClaimRing {
		return RotateResult{}, &ValidationError{Field: "ring", Value: string(ring), Problem: "must be queue or claim"}
	}
	var res RotateResult
	err := e.maintain(ctx, l, "rotate "+string(ring)+" ring", func(tx pgx.Tx) error {
		var slot int16
		err := tx.QueryRow(ctx, e.sql.ringRotate, string(ring), minAge, nil).Scan(&res.Outcome, &res.Generation, &slot)
		res.Slot = int(slot)
		return err
	})
	return res, err
}

// PruneResult reports one prune attempt.
type PruneResult struct {
	Outcome string // pruned, skipped, blocked or nothing
	Slot    int    // the slot it worked on (-1 for nothing)
	Open    int64  // when skipped: the open attempts that kept the slot
	Carried int64  // queue slots: pending ready rows carried forward into the current slot

	// Where the time went, the first two by the database clock: waiting for the slot's
	// ACCESS EXCLUSIVE locks (until granted or, when blocked, timed out; zero when the guard
	// skipped before locking), the TRUNCATE, and the commit (measured here).
	LockWait, Truncate, Commit time.Duration
}

// PruneClaimSlot reclaims the oldest sealed claim slot that holds rows, by TRUNCATE, when every
// attempt in it has ended (re-home long attempts first: Rehome). It takes the slot's partitions
// ACCESS EXCLUSIVE with lockTimeout and reports blocked rather than queue traffic behind it.
func (e *Engine) PruneClaimSlot(ctx context.Context, l Lease, lockTimeout time.Duration) (PruneResult, error) {
	if lockTimeout <= 0 {
		return PruneResult{}, &ValidationError{Field: "lock_timeout", Value: lockTimeout, Problem: "must be > 0"}
	}
	res := PruneResult{Slot: -1}
	var err error
	res.Commit, err = e.maintainTimed(ctx, l, "prune claim slot", func(tx pgx.Tx) error {
		var slot *int16
		if err := tx.QueryRow(ctx, e.sql.claimSlotPrune, lockTimeout).Scan(&res.Outcome, &slot, &res.Open, &res.LockWait, &res.Truncate); err != nil {
			return err
		}
		if slot != nil {
			res.Slot = int(*slot)
		}
		return nil
	})
	return res, err
}

// PruneQueueSlot reclaims the oldest sealed queue slot that holds rows, by TRUNCATE, when no open
// attempt's ready row lives in it. Pending ready rows (a paused or slow queue) are carried
// forward into the current slot in lane order, so one queue never pins the ring for the others;
// the slot's terminal counts are folded per bucket first, so Counts stay exact.
func (e *Engine) PruneQueueSlot(ctx context.Context, l Lease, lockTimeout time.Duration) (PruneResult, error) {
	if lockTimeout <= 0 {
		return PruneResult{}, &ValidationError{Field: "lock_timeout", Value: lockTimeout, Problem: "must be > 0"}
	}
	res := PruneResult{Slot: -1}
	var err error
	res.Commit, err = e.maintainTimed(ctx, l, "prune queue slot", func(tx pgx.Tx) error {
		var slot *int16
		if err := tx.QueryRow(ctx, e.sql.queueSlotPrune, lockTimeout).Scan(&res.Outcome, &slot, &res.Open, &res.Carried, &res.LockWait, &res.Truncate); err != nil {
			return err
		}
		if slot != nil {
			res.Slot = int(*slot)
		}
		return nil
	})
	return res, err
}

// FoldResult reports one counter fold.
type FoldResult struct {
	Outcome string // folded, standing_down or nothing
	Rows    int64  // counter_log rows folded
}

// FoldCounters moves the terminal counts that prune appended to the counter log into the
// per-bucket counters, in one statement. It stands down while the MVCC horizon has been pinned
// (a backend of this database holding a snapshot) for longer than maxPin, because the counter
// row versions it would leave behind could not be reclaimed until the pin is released.
func (e *Engine) FoldCounters(ctx context.Context, l Lease, maxPin time.Duration) (FoldResult, error) {
	if maxPin <= 0 {
		return FoldResult{}, &ValidationError{Field: "max_pin", Value: maxPin, Problem: "must be > 0"}
	}
	var res FoldResult
	err := e.maintain(ctx, l, "fold counters", func(tx pgx.Tx) error {
		if err := tx.QueryRow(ctx, e.sql.counterFold, maxPin).Scan(&res.Outcome, &res.Rows); err != nil {
			return err
		}
		// Publish this backend's table statistics when the fold commits, not up to a second
		// later: a VACUUM right after the fold (the Maintainer's) then finds the fold's dead
		// tuples counted and resets the count to what it left, instead of being overtaken by a
		// late report of dead tuples it has already removed.
		_, err := tx.Exec(ctx, `SELECT pg_stat_force_next_flush()`)
		return err
	})
	return res, err
}
