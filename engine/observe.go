package engine

import (
	"context"
	"fmt"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"
)

// MaintenanceStats is what an operator watches to see maintenance keep up with traffic.
type MaintenanceStats struct {
	Rings  []RingStats  // queue, then claim
	Tables []TableStats // every table of the engine schema, by name; partitions summed into their parent
	// DeadTuples is the sum of Tables' dead tuples: the soak target keeps it small and flat.
	DeadTuples int64
	// HorizonPinnedFor is how long the oldest snapshot another backend of the database holds has
	// been open (the counter fold stands down while it exceeds MaxPin).
	HorizonPinnedFor time.Duration
}

// RingStats describes one ring's position.
type RingStats struct {
	Ring       Ring
	Generation int64     // the current generation
	StartedAt  time.Time // when it became current
	Slot       int       // the current slot
	SlotsInUse int       // slots holding rows, the current one included; the rest wait for prune
	// CurrentRows is the exact number of rows in the current slot's partitions, summed over the
	// ring's tables.
	CurrentRows int64
}

// TableStats is one table's tuple counts from pg_stat_user_tables. The statistics reach the
// view asynchronously (up to about a second after the writes).
type TableStats struct {
	Table      string // the parent table for a ring's partitions (e.g. "ready"), else the table
	LiveTuples int64
	DeadTuples int64
}

// MaintenanceStats reads the rings' positions, the engine tables' dead tuples and the age of the
// pinned MVCC horizon, in one call.
func (e *Engine) MaintenanceStats(ctx context.Context) (MaintenanceStats, error) {
	var (
		rings                     []string
		gens, current, live, dead []int64
		started                   []time.Time
		slots                     []int16
		inUse                     []int32
		tables                    []string
		s                         MaintenanceStats
	)
	err := e.pool.QueryRow(ctx, inSchema(`SELECT * FROM braid.maintenance_stats()`, e.cfg.Schema)).
		Scan(&rings, &gens, &started, &slots, &inUse, &current, &tables, &live, &dead, &s.HorizonPinnedFor)
	if err != nil {
		return MaintenanceStats{}, fmt.Errorf("shard %d: read maintenance stats: %w", e.id.ShardID, err)
	}
	for i, r := range rings {
		s.Rings = append(s.Rings, RingStats{Ring: Ring(r), Generation: gens[i], StartedAt: started[i], Slot: int(slots[i]),
			SlotsInUse: int(inUse[i]), CurrentRows: current[i]})
	}
	for i, t := range tables {
		s.Tables = append(s.Tables, TableStats{Table: t, LiveTuples: live[i], DeadTuples: dead[i]})
		s.DeadTuples += dead[i]
	}
	return s, nil
}

// maintenanceMetrics are a Maintainer's OpenTelemetry instruments, created once. Every point
// carries the shard id; the other attributes are bounded (rings, steps, outcomes, tables).
type maintenanceMetrics struct {
	shard        attribute.KeyValue
	generation   metric.Int64Gauge
	steps        metric.Int64Counter
	stepDuration metric.Float64Histogram
	pruneTime    metric.Float64Histogram
	carried      metric.Int64Counter
	deadTuples   metric.Int64Gauge
	pinnedAge    metric.Float64Gauge
}

func newMaintenanceMetrics(mp metric.MeterProvider, shardID int) (*maintenanceMetrics, error) {
	if mp == nil {
		mp = noop.NewMeterProvider()
	}
	meter := mp.Meter("github.com/braidq/braid/engine")
	m := &maintenanceMetrics{shard: attribute.Int("shard_id", shardID)}
	var errs [7]error
	m.generation, errs[0] = meter.Int64Gauge("braid.ring.generation",
		metric.WithDescription("The ring's current generation (attribute ring)."))
	m.steps, errs[1] = meter.Int64Counter("braid.maintenance.steps",
		metric.WithDescription("Maintenance step runs by step and outcome."))
	m.stepDuration, errs[2] = meter.Float64Histogram("braid.maintenance.step.duration", metric.WithUnit("s"),
		metric.WithDescription("Duration of maintenance step runs by step and outcome."))
	m.pruneTime, errs[3] = meter.Float64Histogram("braid.maintenance.prune.phase.duration", metric.WithUnit("s"),
		metric.WithDescription("Where a prune's time went: lock_wait (for the slot's ACCESS EXCLUSIVE locks), truncate, commit."))
	m.deadTuples, errs[4] = meter.Int64Gauge("braid.table.dead_tuples",
		metric.WithDescription("Dead tuples per engine table (partitions summed into their parent), from pg_stat_user_tables."))
	m.pinnedAge, errs[5] = meter.Float64Gauge("braid.horizon.pinned_age", metric.WithUnit("s"),
		metric.WithDescription("How long the oldest snapshot held by another backend of the shard's database has been open."))
	m.carried, errs[6] = meter.Int64Counter("braid.maintenance.prune.carried_rows",
		metric.WithDescription("Pending ready rows queue slot prunes carried forward into the current slot."))
	for _, err := range errs {
		if err != nil {
			return nil, fmt.Errorf("create maintenance instruments: %w", err)
		}
	}
	return m, nil
}

func (m *maintenanceMetrics) ringGeneration(ctx context.Context, ring Ring, gen int64) {
	m.generation.Record(ctx, gen, metric.WithAttributes(m.shard, attribute.String("ring", string(ring))))
}

func (m *maintenanceMetrics) step(ctx context.Context, name, outcome string, took time.Duration) {
	attrs := metric.WithAttributes(m.shard, attribute.String("step", name), attribute.String("outcome", outcome))
	m.steps.Add(ctx, 1, attrs)
	m.stepDuration.Record(ctx, took.Seconds(), attrs)
}

// prunePhases records where a prune that tried to lock its slot spent its time: the lock wait,
// and when it pruned, the TRUNCATE and the commit.
func (m *maintenanceMetrics) prunePhases(ctx context.Context, name string, res PruneResult) {
	type phase struct {
		name string
		d    time.Duration
	}
	var phases []phase
	switch res.Outcome {
	case "blocked":
		phases = []phase{{"lock_wait", res.LockWait}}
	case "pruned":
		phases = []phase{{"lock_wait", res.LockWait}, {"truncate", res.Truncate}, {"commit", res.Commit}}
	}
	if res.Carried > 0 {
		m.carried.Add(ctx, res.Carried, metric.WithAttributes(m.shard))
	}
	for _, p := range phases {
		m.pruneTime.Record(ctx, p.d.Seconds(), metric.WithAttributes(m.shard, attribute.String("step", name), attribute.String("phase", p.name)))
	}
}

func (m *maintenanceMetrics) stats(ctx context.Context, s MaintenanceStats) {
	for _, r := range s.Rings {
		m.ringGeneration(ctx, r.Ring, r.Generation)
	}
	for _, t := range s.Tables {
		m.deadTuples.Record(ctx, t.DeadTuples, metric.WithAttributes(m.shard, attribute.String("table", t.Table)))
	}
	m.pinnedAge.Record(ctx, s.HorizonPinnedFor.Seconds(), metric.WithAttributes(m.shard))
}
