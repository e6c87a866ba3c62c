package bench

import (
	"bytes"
	"encoding/json"
	"image"
	"image/png"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func craftedRun(system, variant string, rate float64) Result {
	r := Result{
		System: system, Variant: variant, Mode: ModeOffered, Shards: 1, Workers: 50, OfferedPerS: rate,
		EnqueuedPerS: rate, CompletedPerS: rate * 0.99, E2EMs: Percentiles{P50: 2, P95: 8, P99: 20},
		WALBytesPerJob: 600, DeadTuplesEnd: 3, Drained: true, DeadTuplesMax: 40, CPUSPerJob: 20e-6,
		StartedAt: time.Date(2026, 11, 29, 8, 0, 0, 0, time.UTC),
		Databases: []DatabaseCost{{Name: "pg-1", WALBytes: 6e6, WALBytesPerJob: 600, DeadTuplesEnd: 3, DeadTuplesMax: 40,
			Tables: map[string]TableDead{"lanes": {End: 3, Max: 40}}}},
	}
	for i := range 5 {
		r.Samples = append(r.Samples, Sample{T: float64(i + 1), Phase: PhaseMeasure, EnqueuedPerS: rate,
			CompletedPerS: rate * float64(i+1) / 5, E2EMs: Percentiles{1, 2, float64(3*(i+1)) * rate / 1000}, Depth: 10})
	}
	return r
}

// The issue names the fields every run object carries; readers of the file rely on their
// names and JSON types.
func TestReportJSONCarriesTheIssuesFieldsWithTheirTypes(t *testing.T) {
	rep := NewReport(craftedRun("braid", "default", 5000), craftedRun("river", "tuned", 5000))
	path := filepath.Join(t.TempDir(), "bench.json")
	require.NoError(t, rep.WriteJSON(path))

	raw := map[string]any{}
	b, err := json.Marshal(rep)
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(b, &raw))
	runs := raw["runs"].([]any)
	require.Len(t, runs, 2)
	run := runs[0].(map[string]any)
	for field, kind := range map[string]string{
		"system": "string", "variant": "string", "mode": "string", "shards": "number", "workers": "number",
		"offered_per_s": "number", "enqueued_per_s": "number", "completed_per_s": "number", "e2e_ms": "object",
		"wal_bytes_per_job": "number", "dead_tuples_end": "number", "dead_tuples_max": "number",
		"cpu_s_per_job": "number", "drained": "bool", "lost": "number", "duplicates": "number", "samples": "array", "databases": "array",
	} {
		require.Contains(t, run, field)
		require.Equal(t, kind, jsonKind(run[field]), "field %s", field)
	}
	for _, p := range []string{"p50", "p95", "p99"} {
		require.Equal(t, "number", jsonKind(run["e2e_ms"].(map[string]any)[p]), "e2e_ms.%s", p)
	}
	sample := run["samples"].([]any)[0].(map[string]any)
	for field, kind := range map[string]string{"t_s": "number", "phase": "string", "enqueued_per_s": "number",
		"completed_per_s": "number", "e2e_ms": "object", "depth": "number", "dead_tuples": "number"} {
		require.Equal(t, kind, jsonKind(sample[field]), "sample field %s", field)
	}

	back, err := ReadReport(path)
	require.NoError(t, err)
	require.Equal(t, rep, back, "the file reads back as written")
}

func jsonKind(v any) string {
	switch v.(type) {
	case string:
		return "string"
	case float64:
		return "number"
	case map[string]any:
		return "object"
	case []any:
		return "array"
	case bool:
		return "bool"
	case nil:
		return "null"
	}
	return "other"
}

func TestRatiosCompareTheFirstRunToEachOther(t *testing.T) {
	b := craftedRun("braid", "default", 30000)
	b.E2EMs.P99, b.WALBytesPerJob, b.CPUSPerJob = 10, 400, 10e-6
	o := craftedRun("river", "tuned", 10000)
	o.E2EMs.P99, o.WALBytesPerJob, o.CPUSPerJob = 40, 3200, 40e-6
	z := craftedRun("river", "default", 0)
	z.CompletedPerS = 0
	rep := NewReport(b, o, z)
	require.Equal(t, []Ratio{
		{Base: "braid/default", Other: "river/tuned", CompletedPerS: 3, E2EP99: 0.25, WALBytesPerJob: 0.125, CPUSPerJob: 0.25},
		{Base: "braid/default", Other: "river/default", CompletedPerS: 0, E2EP99: 0.5, WALBytesPerJob: 400.0 / 600, CPUSPerJob: 0.5},
	}, rep.Ratios)
	md := rep.Markdown()
	require.Contains(t, md, "| braid/default ÷ river/tuned | 3.00 | 0.25 | 0.12 | 0.25 |")
	require.Equal(t, 2+3+2+2, strings.Count(md, "\n|")+1, "three runs and two ratios, each with a header and rule")
	require.Empty(t, NewReport(b).Ratios, "one run has nothing to compare")

	p := craftedRun("river", "default", 900)
	p.Drained, p.Lost = false, 1234
	require.Contains(t, NewReport(p).Markdown(), "| ? (1234 pending) |", "jobs pending when the drain timed out are not called lost")
}

func TestPlotDrawsEachRunInBothPanels(t *testing.T) {
	rep := NewReport(craftedRun("braid", "default", 30000), craftedRun("river", "tuned", 10000))
	var buf bytes.Buffer
	require.NoError(t, rep.Plot(&buf))
	decoded, err := png.Decode(&buf)
	require.NoError(t, err)
	img, ok := decoded.(*image.RGBA) // opaque RGBA encodes and decodes as RGBA
	require.True(t, ok, "decoded as %T", decoded)
	require.Equal(t, plotW, img.Bounds().Dx())
	for ri := range rep.Runs {
		want := palette[ri]
		for panel := range 2 {
			found := false
			for y := panel * panelH; y < (panel+1)*panelH && !found; y++ {
				row := img.Pix[y*img.Stride : (y+1)*img.Stride]
				for x := marginL; x < plotW-marginR && !found; x++ {
					found = row[4*x] == want.R && row[4*x+1] == want.G && row[4*x+2] == want.B
				}
			}
			require.True(t, found, "run %d's line in panel %d", ri, panel)
		}
	}
}

func TestConfigValidateNamesEveryBadField(t *testing.T) {
	err := Config{Mode: "sprint", Rate: -1, Jobs: -1, Depth: -1, Workers: -1, Duration: 1500 * time.Millisecond,
		Warmup: -time.Second, PayloadBytes: -1, Work: -1, Batch: 20000, Producers: -1, CatchUp: -1, DrainTimeout: -1}.Validate()
	require.Error(t, err)
	for _, field := range []string{`mode "sprint"`, "rate -1", "jobs -1", "depth -1", "workers -1", "warmup -1s",
		"duration/warmup 1.5s/-1s", "payload-bytes -1", "work -1ns", "batch 20000", "producers -1", "catch-up -1ns", "drain-timeout -1ns"} {
		require.ErrorContains(t, err, "bench config: "+field)
	}
	require.NoError(t, Config{}.WithDefaults().Validate())
}

func TestConfigArgsRoundTripThroughFlags(t *testing.T) {
	in := Config{Mode: ModeOffered, Rate: 5000, Jobs: 7, Depth: 9, Workers: 11, Duration: 3 * time.Second, Warmup: 2 * time.Second,
		PayloadBytes: 13, Work: 1500 * time.Microsecond, Batch: 17, Producers: 3, CatchUp: 50 * time.Millisecond, DrainTimeout: time.Minute}
	var out Config
	fs := flagSet(&out)
	require.NoError(t, fs.Parse(in.Args()))
	require.Equal(t, in, out)
}

func TestAxisLabelsUseOnlyTheFontsGlyphs(t *testing.T) {
	for _, v := range []float64{0, 0.5, 2.5, 26.4, 104.6, 999, 1000, 12500, 200000} {
		label := compact(v)
		for _, r := range label {
			require.Contains(t, glyphs, r, "label %q of %v", label, v)
		}
	}
	require.Equal(t, "12.5k", compact(12500))
	require.Equal(t, "105", compact(104.6))
	require.Equal(t, "2.5", compact(2.5))
}
