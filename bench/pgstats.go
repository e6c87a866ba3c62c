package bench

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// watcher reads WAL positions and dead tuples of a System's databases over connections of
// its own, and keeps each table's largest dead-tuple count seen.
type watcher struct {
	dbs   []Database
	conns []*pgx.Conn
	max   []map[string]int64 // per database, per table
}

func openWatcher(ctx context.Context, dbs []Database) (*watcher, error) {
	w := &watcher{dbs: dbs}
	for _, db := range dbs {
		conn, err := pgx.Connect(ctx, db.DSN)
		if err != nil {
			w.close(ctx)
			return nil, fmt.Errorf("bench: connect to database %s for statistics: %w", db.Name, err)
		}
		w.conns = append(w.conns, conn)
		w.max = append(w.max, map[string]int64{})
	}
	return w, nil
}

func (w *watcher) close(ctx context.Context) {
	for _, c := range w.conns {
		_ = c.Close(ctx)
	}
}

// walLSNs returns each database's server WAL position in bytes.
func (w *watcher) walLSNs(ctx context.Context) ([]int64, error) {
	out := make([]int64, len(w.conns))
	for i, c := range w.conns {
		if err := c.QueryRow(ctx, `SELECT (pg_current_wal_lsn() - '0/0'::pg_lsn)::bigint`).Scan(&out[i]); err != nil {
			return nil, fmt.Errorf("bench: read wal position of %s: %w", w.dbs[i].Name, err)
		}
	}
	return out, nil
}

// deadTuples returns each database's dead tuples per table of its schema and remembers the
// largest counts seen.
func (w *watcher) deadTuples(ctx context.Context) ([]map[string]int64, error) {
	out := make([]map[string]int64, len(w.conns))
	for i, c := range w.conns {
		rows, err := c.Query(ctx, `SELECT relname, n_dead_tup FROM pg_stat_user_tables WHERE schemaname = $1`, w.dbs[i].Schema)
		if err != nil {
			return nil, fmt.Errorf("bench: read dead tuples of %s: %w", w.dbs[i].Name, err)
		}
		out[i] = map[string]int64{}
		var table string
		var n int64
		if _, err := pgx.ForEachRow(rows, []any{&table, &n}, func() error {
			out[i][table] = n
			w.max[i][table] = max(w.max[i][table], n)
			return nil
		}); err != nil {
			return nil, fmt.Errorf("bench: read dead tuples of %s: %w", w.dbs[i].Name, err)
		}
	}
	return out, nil
}

// finalDeadTuples reads the dead tuples once the servers' statistics caught up: backends
// report their counts at most about once a second.
func (w *watcher) finalDeadTuples(ctx context.Context) ([]map[string]int64, error) {
	t := time.NewTimer(1100 * time.Millisecond)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-t.C:
	}
	return w.deadTuples(ctx)
}

func sum(m map[string]int64) (n int64) {
	for _, v := range m {
		n += v
	}
	return n
}
