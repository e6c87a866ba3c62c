package engine

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// FenceState says whether a shard accepts enqueues for a queue (DESIGN.md §3.2).
type FenceState string

const (
	// FenceActive: the shard accepts the queue. A shard without a fence row for a queue also
	// accepts it.
	FenceActive FenceState = "active"
	// FenceDraining: a move is under way; enqueues are refused with a redirect while claimers
	// drain what is left here.
	FenceDraining FenceState = "draining"
	// FenceMoved: the queue left this shard; the fence stays as a redirect tombstone.
	FenceMoved FenceState = "moved"
)

// Fence is one queue's fence on this shard.
type Fence struct {
	Queue   string
	Epoch   int64 // the directory epoch that set it
	State   FenceState
	MovedTo int // the new home's shard id when sealed and known, else 0
}

// ErrStaleEpoch is wrapped by fence changes that carried an older epoch than the fence in
// force: nothing changed.
var ErrStaleEpoch = errors.New("stale epoch")

const (
	fenceCreateSQL = `SELECT * FROM braid.fence_create($1, $2)`
	fenceSealSQL   = `SELECT * FROM braid.fence_seal($1, $2, $3, $4)`
	fenceOpenSQL   = `SELECT * FROM braid.fence_open($1, $2)`
	fenceGetSQL    = `SELECT queue, epoch, state, moved_to FROM braid.fence WHERE queue = $1`
)

// FenceCreate writes the queue's active fence at epoch unless the shard already has a fence
// for it, and returns the fence in force: an existing fence, sealed or not, is never
// overwritten. The router calls it when the directory first places a queue here.
func (e *Engine) FenceCreate(ctx context.Context, queue string, epoch int64) (Fence, error) {
	if err := validateFence(queue, epoch); err != nil {
		return Fence{}, err
	}
	f, err := e.fenceRow(ctx, fenceCreateSQL, queue, epoch)
	if err != nil {
		return Fence{}, fmt.Errorf("shard %d: fence create %q: %w", e.id.ShardID, queue, err)
	}
	return f, nil
}

// FenceSeal stops this shard from accepting the queue: state is FenceDraining or FenceMoved,
// movedTo the new home (0 when not known). It takes the queue's fence lock exclusively, so it
// waits for the enqueues of the queue in flight here, and after it returns no enqueue of the
// queue commits on this shard. A seal with an epoch older than the fence in force changes
// nothing and returns that fence with an error wrapping ErrStaleEpoch.
func (e *Engine) FenceSeal(ctx context.Context, queue string, epoch int64, state FenceState, movedTo int) (Fence, error) {
	errs := []error{validateFence(queue, epoch)}
	if state != FenceDraining && state != FenceMoved {
		errs = append(errs, &ValidationError{Field: "state", Value: string(state), Problem: "must be draining or moved"})
	}
	if movedTo < 0 || movedTo > 32767 {
		errs = append(errs, &ValidationError{Field: "moved_to", Value: movedTo, Problem: "must be 0 (unknown) or a shard id 1..32767"})
	}
	if err := errors.Join(errs...); err != nil {
		return Fence{}, err
	}
	var to *int32
	if movedTo != 0 {
		to = ptr(int32(movedTo))
	}
	f, err := e.fenceRow(ctx, fenceSealSQL, queue, epoch, string(state), to)
	if err != nil {
		return Fence{}, fmt.Errorf("shard %d: fence seal %q: %w", e.id.ShardID, queue, err)
	}
	if f.Epoch != epoch || f.State != state || f.MovedTo != movedTo {
		return f, fmt.Errorf("shard %d: fence seal %q at epoch %d: the fence is %s at epoch %d: %w",
			e.id.ShardID, queue, epoch, f.State, f.Epoch, ErrStaleEpoch)
	}
	return f, nil
}

// FenceOpen makes this shard accept the queue again at epoch (a move's target, or the source
// of a move called off). An epoch older than the fence in force changes nothing and returns
// that fence with an error wrapping ErrStaleEpoch.
func (e *Engine) FenceOpen(ctx context.Context, queue string, epoch int64) (Fence, error) {
	if err := validateFence(queue, epoch); err != nil {
		return Fence{}, err
	}
	f, err := e.fenceRow(ctx, fenceOpenSQL, queue, epoch)
	if err != nil {
		return Fence{}, fmt.Errorf("shard %d: fence open %q: %w", e.id.ShardID, queue, err)
	}
	if f.Epoch != epoch || f.State != FenceActive {
		return f, fmt.Errorf("shard %d: fence open %q at epoch %d: the fence is %s at epoch %d: %w",
			e.id.ShardID, queue, epoch, f.State, f.Epoch, ErrStaleEpoch)
	}
	return f, nil
}

// FenceGet returns the queue's fence on this shard, or ErrNotFound when it has none (the shard
// then accepts the queue).
func (e *Engine) FenceGet(ctx context.Context, queue string) (Fence, error) {
	if err := ValidateQueue(queue); err != nil {
		return Fence{}, err
	}
	f, err := e.fenceRow(ctx, fenceGetSQL, queue)
	if errors.Is(err, pgx.ErrNoRows) {
		return Fence{}, fmt.Errorf("shard %d: fence %q: %w", e.id.ShardID, queue, ErrNotFound)
	}
	if err != nil {
		return Fence{}, fmt.Errorf("shard %d: fence %q: %w", e.id.ShardID, queue, err)
	}
	return f, nil
}

func (e *Engine) fenceRow(ctx context.Context, sql string, args ...any) (Fence, error) {
	var (
		f       Fence
		state   string
		movedTo *int32
	)
	if err := e.pool.QueryRow(ctx, inSchema(sql, e.cfg.Schema), args...).Scan(&f.Queue, &f.Epoch, &state, &movedTo); err != nil {
		return Fence{}, err
	}
	f.State = FenceState(state)
	if movedTo != nil {
		f.MovedTo = int(*movedTo)
	}
	return f, nil
}

func validateFence(queue string, epoch int64) error {
	errs := []error{ValidateQueue(queue)}
	if epoch < 1 {
		errs = append(errs, &ValidationError{Field: "epoch", Value: epoch, Problem: "must be >= 1"})
	}
	return errors.Join(errs...)
}
