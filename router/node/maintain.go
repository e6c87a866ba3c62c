package node

import (
	"context"
	"errors"
	"time"

	"github.com/braidq/braid/engine"
	"github.com/braidq/braid/shard"
)

// maintain runs the shard's Maintainer while this node is the shard's maintenance candidate
// (ctx lives exactly that long). Candidacy only lets it try: the Maintainer must win the
// shard's lease, and it returns engine.ErrLeaseLost the moment it loses it, after which the
// node tries again while it is still the candidate.
func (n *Node) maintain(ctx context.Context, sh *shard.Shard) {
	cfg := n.cfg.Maintenance
	cfg.Holder = n.members.Self().Name
	cfg.Logger = n.deps.Logger.With("shard_id", sh.ID())
	cfg.MeterProvider = n.deps.MeterProvider
	n.log.Info("maintenance candidate", "shard_id", sh.ID())
	defer n.log.Info("maintenance candidacy ended", "shard_id", sh.ID())
	for ctx.Err() == nil {
		m, err := engine.NewMaintainer(sh.Engine(), cfg)
		if err != nil {
			n.log.Error("maintainer not started", "shard_id", sh.ID(), "err", err)
			return
		}
		err = m.Run(ctx)
		if ctx.Err() != nil {
			return
		}
		if errors.Is(err, engine.ErrLeaseLost) {
			n.log.Warn("maintenance lease lost; stepping down", "shard_id", sh.ID())
		} else if err != nil {
			n.log.Warn("maintainer stopped", "shard_id", sh.ID(), "err", err)
		}
		sleep(ctx, time.Second)
	}
}
