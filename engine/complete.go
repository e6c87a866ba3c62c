package engine

import (
	"context"
	"fmt"
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
	cslots, batches, idx, leases, err := e.receiptArrays(receipts)
	if err != nil {
		return nil, err
	}
	rows, err := e.pool.Query(ctx, e.sql.completeFast, cslots, batches, idx, leases, nil)
	if err != nil {
		return nil, fmt.Errorf("shard %d: complete %d receipts: %w", e.id.ShardID, n, err)
	}
	out, err := appliedOrdinals(rows, n)
	if err != nil {
		return nil, fmt.Errorf("shard %d: complete %d receipts: %w", e.id.ShardID, n, err)
	}
	return out, nil
}
