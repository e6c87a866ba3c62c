package engine

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// Outcome says what an acknowledgement did to its attempt.
type Outcome int8

const (
	// Applied: the attempt was open and this call ended it.
	Applied Outcome = iota + 1
	// Stale: the attempt had already ended (completed, rescued, cancelled, ...) or the receipt
	// was repeated in the call. Nothing was written for it; this is not an error.
	Stale
)

func (o Outcome) String() string {
	switch o {
	case Applied:
		return "applied"
	case Stale:
		return "stale"
	}
	return fmt.Sprintf("Outcome(%d)", int8(o))
}

// Complete is the compact success path: it closes the receipts' attempts as completed with one
// closure row and one completion row per claim batch, in one statement, and reports per receipt
// whether it applied or was stale. Receipts must belong to this shard.
func (e *Engine) Complete(ctx context.Context, receipts []Receipt) ([]Outcome, error) {
	if len(receipts) == 0 {
		return nil, nil
	}
	n := len(receipts)
	cslots, batches, idx, leases := make([]int16, n), make([]int64, n), make([]int32, n), make([]int64, n)
	for i, r := range receipts {
		if r.ShardID != e.id.ShardID {
			return nil, &ValidationError{Field: fmt.Sprintf("receipts[%d].shard_id", i), Value: r.ShardID,
				Problem: fmt.Sprintf("receipt belongs to shard %d, this is shard %d", r.ShardID, e.id.ShardID)}
		}
		cslots[i], batches[i], idx[i], leases[i] = r.ClaimSlot, r.BatchID, r.Index, r.RunLease
	}
	rows, err := e.pool.Query(ctx, e.sql.completeFast, cslots, batches, idx, leases, nil)
	if err != nil {
		return nil, fmt.Errorf("shard %d: complete %d receipts: %w", e.id.ShardID, n, err)
	}
	out := make([]Outcome, n)
	for i := range out {
		out[i] = Stale
	}
	var ord int32
	if _, err := pgx.ForEachRow(rows, []any{&ord}, func() error {
		out[ord-1] = Applied
		return nil
	}); err != nil {
		return nil, fmt.Errorf("shard %d: complete %d receipts: %w", e.id.ShardID, n, err)
	}
	return out, nil
}
