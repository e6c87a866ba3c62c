package bench

import (
	"math"
	"slices"
	"time"
)

// Percentiles are end-to-end latencies in milliseconds.
type Percentiles struct {
	P50 float64 `json:"p50"`
	P95 float64 `json:"p95"`
	P99 float64 `json:"p99"`
}

// percentiles sorts lat in place and returns its p50, p95 and p99 by the nearest-rank method
// (the smallest latency that at least p% of the jobs did not exceed); zeros when lat is empty.
func percentiles(lat []time.Duration) Percentiles {
	slices.Sort(lat)
	return Percentiles{P50: rank(lat, 50), P95: rank(lat, 95), P99: rank(lat, 99)}
}

// rank is the nearest-rank p-th percentile of sorted, in milliseconds.
func rank(sorted []time.Duration, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(p/100*float64(len(sorted)))) - 1
	return float64(sorted[max(0, i)]) / float64(time.Millisecond)
}
