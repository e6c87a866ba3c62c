package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Receipt is the handle a worker holds for one claimed attempt. It names the shard and the
// claim batch member, so acknowledgements go straight to the attempt's shard.
type Receipt struct {
	ShardID   int
	ClaimSlot int16
	BatchID   int64
	Index     int32 // 1-based member of the claim batch
	JobID     int64
	RunLease  int64
}

// Claimed is one claimed attempt with its job body.
type Claimed struct {
	Receipt     Receipt
	Queue       string
	Priority    int
	LaneNo      int
	Kind        string
	Args        json.RawMessage
	Metadata    json.RawMessage
	Errors      json.RawMessage // errors of earlier attempts, oldest first
	Attempt     int             // 1-based attempt number of this execution
	MaxAttempts int
	UniqueKey   string
	RunAt       time.Time
	CreatedAt   time.Time
	DeadlineAt  time.Time
}

// ClaimRequest says what to claim.
type ClaimRequest struct {
	Queue  string
	LaneNo int // lane number to claim from; -1 means any lane of the queue
	Max    int // 1..10000
}

// Claim takes up to Max available jobs from one lane of the queue, in lane order, as one claim
// batch. Lanes are tried in priority order; a lane another claimer holds right now is skipped,
// so concurrent claimers spread over lanes. An empty result means nothing was available.
func (e *Engine) Claim(ctx context.Context, req ClaimRequest) ([]Claimed, error) {
	var errs []error
	errs = append(errs, ValidateQueue(req.Queue))
	if req.LaneNo < -1 || req.LaneNo > 255 {
		errs = append(errs, &ValidationError{Field: "lane_no", Value: req.LaneNo, Problem: "must be -1 (any) or 0..255"})
	}
	if req.Max < 1 || req.Max > 10000 {
		errs = append(errs, &ValidationError{Field: "max", Value: req.Max, Problem: "must be 1..10000"})
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	var lane *int16
	if req.LaneNo >= 0 {
		lane = ptr(int16(req.LaneNo))
	}
	rows, err := e.pool.Query(ctx, e.sql.claim, req.Queue, lane, int32(req.Max), e.cfg.Node, nil)
	if err != nil {
		return nil, fmt.Errorf("shard %d: claim %q: %w", e.id.ShardID, req.Queue, err)
	}
	out := make([]Claimed, 0, req.Max)
	var (
		c                         Claimed
		idx, attempt, maxAttempts int32
		prio, laneNo              int16
		meta, errsJSON            []byte
		uniqueKey                 *string
	)
	_, err = pgx.ForEachRow(rows, []any{&c.Receipt.ClaimSlot, &c.Receipt.BatchID, &idx, &c.Receipt.JobID,
		&c.Receipt.RunLease, &attempt, &maxAttempts, &prio, &laneNo, &c.Kind, &c.Args, &meta, &errsJSON,
		&uniqueKey, &c.RunAt, &c.CreatedAt, &c.DeadlineAt}, func() error {
		c.Receipt.ShardID = e.id.ShardID
		c.Receipt.Index = idx
		c.Queue = req.Queue
		c.Attempt, c.MaxAttempts = int(attempt), int(maxAttempts)
		c.Priority, c.LaneNo = int(prio), int(laneNo)
		c.Metadata, c.Errors = json.RawMessage(meta), json.RawMessage(errsJSON)
		c.UniqueKey = ""
		if uniqueKey != nil {
			c.UniqueKey = *uniqueKey
		}
		out = append(out, c)
		c = Claimed{}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("shard %d: claim %q: %w", e.id.ShardID, req.Queue, err)
	}
	return out, nil
}
