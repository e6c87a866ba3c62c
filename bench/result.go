package bench

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"time"
)

// Sample is one second of a run.
type Sample struct {
	T             float64     `json:"t_s"`   // seconds since the workers started, at the sample's end
	Phase         string      `json:"phase"` // warmup, measure or drain
	EnqueuedPerS  float64     `json:"enqueued_per_s"`
	CompletedPerS float64     `json:"completed_per_s"`
	E2EMs         Percentiles `json:"e2e_ms"`
	Depth         int64       `json:"depth"`       // jobs enqueued whose completion has not committed yet
	DeadTuples    int64       `json:"dead_tuples"` // over every database of the System; -1 if unread
}

// Phases of a run, as samples carry them.
const (
	PhaseWarmup  = "warmup"
	PhaseMeasure = "measure"
	PhaseDrain   = "drain"
)

// Result is one (system, variant) run. Rates, latencies and costs cover the measured span:
// the window after warmup (offered, depth), or the whole backlog from its first enqueue
// (drain).
type Result struct {
	System       string            `json:"system"`
	Variant      string            `json:"variant"`
	Settings     map[string]string `json:"settings,omitempty"`
	Mode         Mode              `json:"mode"`
	Shards       int               `json:"shards"`
	Workers      int               `json:"workers"`
	PayloadBytes int               `json:"payload_bytes"`
	WorkMs       float64           `json:"work_ms"`
	StartedAt    time.Time         `json:"started_at"`
	DurationS    float64           `json:"duration_s"` // the measured span

	OfferedPerS   float64     `json:"offered_per_s"` // offered mode: the rate; else 0
	DepthTarget   int         `json:"depth_target,omitempty"`
	Enqueued      int64       `json:"enqueued"`
	Completed     int64       `json:"completed"`
	EnqueuedPerS  float64     `json:"enqueued_per_s"`
	CompletedPerS float64     `json:"completed_per_s"`
	E2EMs         Percentiles `json:"e2e_ms"`
	DroppedOffers int64       `json:"dropped_offers"` // offers the producer could not keep up with

	WALBytesPerJob float64        `json:"wal_bytes_per_job"`
	DeadTuplesEnd  int64          `json:"dead_tuples_end"`
	DeadTuplesMax  int64          `json:"dead_tuples_max"`
	CPUSPerJob     float64        `json:"cpu_s_per_job"`
	Databases      []DatabaseCost `json:"databases"`

	// Drained says every enqueued job completed before the run ended. When false (the drain
	// timed out), Lost counts jobs still pending, not proven lost.
	Drained    bool  `json:"drained"`
	Lost       int64 `json:"lost"`
	Duplicates int64 `json:"duplicates"`
	Unknown    int64 `json:"unknown"`

	Samples []Sample `json:"samples"`
}

// Label is "system/variant".
func (r Result) Label() string { return r.System + "/" + r.Variant }

// DatabaseCost is what one database of a System paid (per shard for braid).
type DatabaseCost struct {
	Name           string               `json:"name"`
	WALBytes       int64                `json:"wal_bytes"`
	WALBytesPerJob float64              `json:"wal_bytes_per_job"`
	DeadTuplesEnd  int64                `json:"dead_tuples_end"`
	DeadTuplesMax  int64                `json:"dead_tuples_max"`
	Tables         map[string]TableDead `json:"tables"`
}

// TableDead is one table's dead tuples at the end and the most seen in any sample.
type TableDead struct {
	End int64 `json:"end"`
	Max int64 `json:"max"`
}

// Report is the content of the JSON file: every run of one invocation and the ratios of the
// first run (braid's) to each of the others.
type Report struct {
	Runs   []Result `json:"runs"`
	Ratios []Ratio  `json:"ratios,omitempty"`
}

// Ratio compares two runs of one invocation: each field is Base's figure divided by Other's
// (so completed_per_s above 1 and the others below 1 favour Base). Zero when a divisor is 0.
type Ratio struct {
	Base           string  `json:"base"`
	Other          string  `json:"other"`
	CompletedPerS  float64 `json:"completed_per_s"`
	E2EP99         float64 `json:"e2e_p99"`
	WALBytesPerJob float64 `json:"wal_bytes_per_job"`
	CPUSPerJob     float64 `json:"cpu_s_per_job"`
}

// NewReport collects runs and computes the ratios of the first to each other run.
func NewReport(runs ...Result) Report {
	rep := Report{Runs: runs}
	for _, o := range runs[min(1, len(runs)):] {
		b := runs[0]
		rep.Ratios = append(rep.Ratios, Ratio{
			Base: b.Label(), Other: o.Label(),
			CompletedPerS:  ratio(b.CompletedPerS, o.CompletedPerS),
			E2EP99:         ratio(b.E2EMs.P99, o.E2EMs.P99),
			WALBytesPerJob: ratio(b.WALBytesPerJob, o.WALBytesPerJob),
			CPUSPerJob:     ratio(b.CPUSPerJob, o.CPUSPerJob),
		})
	}
	return rep
}

func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

// WriteJSON writes the report to path, indented.
func (rep Report) WriteJSON(path string) error {
	b, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return fmt.Errorf("bench: encode report: %w", err)
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("bench: write report %s: %w", path, err)
	}
	return nil
}

// ReadReport reads a report WriteJSON wrote.
func ReadReport(path string) (Report, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Report{}, fmt.Errorf("bench: read report: %w", err)
	}
	var rep Report
	if err := json.Unmarshal(b, &rep); err != nil {
		return Report{}, fmt.Errorf("bench: decode report %s: %w", path, err)
	}
	return rep, nil
}

// Markdown renders the runs and ratios as markdown tables.
func (rep Report) Markdown() string {
	var b strings.Builder
	b.WriteString("| system | variant | mode | shards | workers | offered/s | enqueued/s | completed/s | e2e p50 ms | p95 ms | p99 ms | WAL B/job | dead tuples end | max | CPU µs/job | lost | dup |\n")
	b.WriteString("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n")
	for _, r := range rep.Runs {
		lost := fmt.Sprint(r.Lost)
		if !r.Drained && r.Lost > 0 {
			lost = fmt.Sprintf("? (%d pending)", r.Lost)
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %d | %d | %.0f | %.0f | %.0f | %.1f | %.1f | %.1f | %.0f | %d | %d | %.1f | %s | %d |\n",
			r.System, r.Variant, r.Mode, r.Shards, r.Workers, r.OfferedPerS, r.EnqueuedPerS, r.CompletedPerS,
			r.E2EMs.P50, r.E2EMs.P95, r.E2EMs.P99, r.WALBytesPerJob, r.DeadTuplesEnd, r.DeadTuplesMax,
			r.CPUSPerJob*1e6, lost, r.Duplicates)
	}
	if len(rep.Ratios) > 0 {
		b.WriteString("\n| ratio | completed/s | e2e p99 | WAL B/job | CPU s/job |\n| --- | ---: | ---: | ---: | ---: |\n")
		for _, q := range rep.Ratios {
			fmt.Fprintf(&b, "| %s ÷ %s | %.2f | %.2f | %.2f | %.2f |\n", q.Base, q.Other, q.CompletedPerS, q.E2EP99, q.WALBytesPerJob, q.CPUSPerJob)
		}
	}
	return b.String()
}
