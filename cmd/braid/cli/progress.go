package cli

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/braidq/braid/engine"
	"github.com/braidq/braid/router"
	"github.com/braidq/braid/shard"
)

// progress prints what the demo is doing: per shard the jobs enqueued (by the demo's ledger),
// completed, running and waiting (by the shards' exact counts over the demo queues), failures
// and the engine tables' dead tuples; then the ledger's totals.
type progress struct {
	world  *localShards
	ledger *ledger
	out    io.Writer
	logger *slog.Logger
	start  time.Time
}

// progressTimeout bounds the shard calls of one progress report.
const progressTimeout = 2 * time.Second

func (p *progress) loop(ctx context.Context, every time.Duration) {
	ticker := time.NewTicker(every)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
			// A report under way when the run ends is finished, not cut into errors.
			p.print(context.WithoutCancel(ctx))
		}
	}
}

// print writes one report; a shard that cannot be asked is shown as such.
func (p *progress) print(ctx context.Context) {
	elapsed := time.Since(p.start)
	// Every question at once: a slow shard delays the report by its own answer only.
	queues, shards := demoQueues(), p.world.set.All()
	stats := make([]router.QueueStats, len(queues))
	dead := make([]string, len(shards))
	var wg sync.WaitGroup
	for i, q := range queues {
		wg.Go(func() {
			var err error
			if stats[i], err = p.world.client.QueueStats(ctx, q); err != nil {
				p.logger.Warn("progress: queue stats", "queue", q, "err", err)
			}
		})
	}
	for i, s := range shards {
		wg.Go(func() { dead[i] = p.deadTuples(ctx, s) })
	}
	wg.Wait()
	t := p.ledger.tally()

	counts := map[int]engine.Counts{}
	missing := map[int]bool{}
	for _, st := range stats {
		for id, c := range st.ByShard {
			counts[id] = counts[id].Add(c)
		}
		for _, id := range st.Missing {
			missing[id] = true
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "[%s]\n", elapsed.Round(time.Second))
	for i, s := range shards {
		id := s.ID()
		c := counts[id]
		fmt.Fprintf(&b, "  shard %d: enqueued=%d completed=%d running=%d waiting=%d retrying=%d failed=%d dead_tuples=%s",
			id, t.ByShard[id], c.Completed, c.Running, c.Available+c.Scheduled, c.Retryable, c.Failed+c.DeadLettered, dead[i])
		if missing[id] {
			b.WriteString(" (counts unavailable)")
		}
		b.WriteByte('\n')
	}
	fmt.Fprintf(&b, "  total:   enqueued=%d completed=%d not_yet=%d duplicates=%d handler_failures=%d snoozes=%d\n",
		t.Enqueued, t.Completed, t.Lost, t.Duplicates, t.Failures, t.Snoozes)
	io.WriteString(p.out, b.String())
}

// deadTuples reads the engine tables' dead tuples of one shard (PostgreSQL's statistics lag
// by about a second).
func (p *progress) deadTuples(ctx context.Context, s *shard.Shard) string {
	st, err := shard.Call(ctx, s, progressTimeout, func(ctx context.Context) (engine.MaintenanceStats, error) {
		return s.Engine().MaintenanceStats(ctx)
	})
	if err != nil {
		p.logger.Warn("progress: maintenance stats", "shard_id", s.ID(), "err", err)
		return "?"
	}
	return fmt.Sprint(st.DeadTuples)
}
