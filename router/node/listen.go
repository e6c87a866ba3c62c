package node

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/braidq/braid/shard"
)

// listen keeps one connection per shard LISTENing on the engine's ready and cancel channels,
// reconnecting with back-off; after each (re)connect it wakes the shard's claim loops, since
// notifications sent while it was away are lost. Poll timers cover a listener that is down.
func (n *Node) listen(ctx context.Context, sh *shard.Shard) {
	var backoff time.Duration
	for ctx.Err() == nil {
		err := n.listenOnce(ctx, sh)
		if ctx.Err() != nil {
			return
		}
		backoff = min(max(2*backoff, 100*time.Millisecond), 5*time.Second)
		n.log.Warn("shard listener lost; reconnecting", "shard_id", sh.ID(), "backoff", backoff, "err", err)
		sleep(ctx, backoff)
	}
}

func (n *Node) listenOnce(ctx context.Context, sh *shard.Shard) error {
	cfg := sh.Pool().Config().ConnConfig.Copy()
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return fmt.Errorf("shard %d: connect listener: %w", sh.ID(), err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	eng := sh.Engine()
	for _, ch := range []string{eng.ReadyChannel(), eng.CancelChannel()} {
		if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{ch}.Sanitize()); err != nil {
			return fmt.Errorf("shard %d: listen %s: %w", sh.ID(), ch, err)
		}
	}
	n.own.wakeShard(sh.ID())
	for {
		note, err := conn.WaitForNotification(ctx)
		if err != nil {
			return err
		}
		switch note.Channel {
		case eng.ReadyChannel():
			if !n.own.wake(sh.ID(), note.Payload) {
				n.own.requestQueues() // perhaps a queue this node has not seen on the shard yet
			}
		case eng.CancelChannel():
			if job, lease, ok := parseCancel(note.Payload); ok {
				n.running.cancel(job, lease)
			}
		}
	}
}

// parseCancel reads a cancel notification's payload, "job_id:run_lease".
func parseCancel(payload string) (job, lease int64, ok bool) {
	a, b, found := strings.Cut(payload, ":")
	if !found {
		return 0, 0, false
	}
	job, err1 := strconv.ParseInt(a, 10, 64)
	lease, err2 := strconv.ParseInt(b, 10, 64)
	return job, lease, err1 == nil && err2 == nil
}
