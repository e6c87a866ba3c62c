package engine

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// QueueLanes is one queue known to this shard and its lane count: the claim units a worker
// node divides among its members are (shard, queue, lane).
type QueueLanes struct {
	Queue string
	Lanes int
}

// queueLanesSQL reads the settings rows, which a queue's first enqueue on the shard writes.
const queueLanesSQL = `SELECT name, lanes FROM braid.queue ORDER BY name`

// Queues returns every queue this shard has settings for (it has taken an enqueue or been
// configured), with its lane count, ordered by name.
func (e *Engine) Queues(ctx context.Context) ([]QueueLanes, error) {
	rows, err := e.pool.Query(ctx, inSchema(queueLanesSQL, e.cfg.Schema))
	if err != nil {
		return nil, fmt.Errorf("shard %d: list queues: %w", e.id.ShardID, err)
	}
	qs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (QueueLanes, error) {
		var q QueueLanes
		var lanes int16
		err := r.Scan(&q.Queue, &lanes)
		q.Lanes = int(lanes)
		return q, err
	})
	if err != nil {
		return nil, fmt.Errorf("shard %d: list queues: %w", e.id.ShardID, err)
	}
	return qs, nil
}
