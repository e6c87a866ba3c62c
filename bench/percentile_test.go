package bench

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestPercentilesByNearestRank(t *testing.T) {
	ms := func(v ...int) []time.Duration {
		out := make([]time.Duration, len(v))
		for i, x := range v {
			out[i] = time.Duration(x) * time.Millisecond
		}
		return out
	}
	for _, tc := range []struct {
		name string
		lat  []time.Duration
		want Percentiles
	}{
		{"no completions give zeros", nil, Percentiles{}},
		{"one latency is every percentile", ms(7), Percentiles{7, 7, 7}},
		{"1..100 in any order gives its ranks", shuffled(ms(seq(1, 100)...)), Percentiles{50, 95, 99}},
		{"1..10: the rank rounds up", ms(10, 9, 8, 7, 6, 5, 4, 3, 2, 1), Percentiles{5, 10, 10}},
		{"one slow job in 200 shows at p99 but not p95", append(ms(seq(1, 199)...), 5*time.Second), Percentiles{100, 190, 198}},
		{"sub-millisecond latencies keep their fraction", []time.Duration{250 * time.Microsecond, 750 * time.Microsecond}, Percentiles{0.25, 0.75, 0.75}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, percentiles(tc.lat))
		})
	}
}

func seq(from, to int) []int {
	var out []int
	for i := from; i <= to; i++ {
		out = append(out, i)
	}
	return out
}

func shuffled(d []time.Duration) []time.Duration {
	r := rand.New(rand.NewPCG(1, 2))
	r.Shuffle(len(d), func(i, j int) { d[i], d[j] = d[j], d[i] })
	return d
}
