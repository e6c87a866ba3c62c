package bench

import (
	"context"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"
)

func TestPacerHandsOutTheRateOverTime(t *testing.T) {
	for _, tc := range []struct {
		name string
		rate float64
		most int
	}{
		{"a slow rate taken one at a time", 50, 1},
		{"a fast rate taken in batches of a tick", 20_000, 1000},
		{"a fast rate taken in batches smaller than a tick", 20_000, 40},
		{"a fractional rate", 2.5, 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				p, err := NewPacer(tc.rate, 100*time.Millisecond, 5*time.Millisecond)
				require.NoError(t, err)
				start := time.Now()
				got := 0
				for time.Since(start) < 10*time.Second {
					n, err := p.Take(t.Context(), tc.most)
					require.NoError(t, err)
					require.LessOrEqual(t, n, tc.most)
					require.GreaterOrEqual(t, n, min(tc.most, max(1, int(tc.rate*0.005))), "a tick's worth per call")
					got += n
				}
				want := tc.rate * time.Since(start).Seconds()
				require.InDelta(t, want, float64(got), 1.0, "tokens in %v", time.Since(start))
				require.Zero(t, p.Dropped(), "a producer that keeps up drops nothing")
			})
		})
	}
}

func TestPacerCatchesUpAtMostTheBoundAfterAStall(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p, err := NewPacer(1000, 50*time.Millisecond, time.Millisecond)
		require.NoError(t, err)
		time.Sleep(2 * time.Second) // the producer stalls
		n, err := p.Take(t.Context(), 1_000_000)
		require.NoError(t, err)
		require.Equal(t, 50, n, "catch-up is bounded by rate × catch-up")
		require.Equal(t, int64(1950), p.Dropped())

		// After the catch-up it paces again: the next token comes after 1ms.
		start := time.Now()
		n, err = p.Take(t.Context(), 1_000_000)
		require.NoError(t, err)
		require.Equal(t, 1, n)
		require.Equal(t, time.Millisecond, time.Since(start))
	})
}

func TestPacerTakeStopsWithItsContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p, err := NewPacer(0.1, time.Second, time.Millisecond)
		require.NoError(t, err)
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		defer cancel()
		_, err = p.Take(ctx, 1)
		require.ErrorIs(t, err, context.DeadlineExceeded)
	})
}

func TestPacerRefusesBadSettings(t *testing.T) {
	_, err := NewPacer(0, time.Second, time.Millisecond)
	require.ErrorContains(t, err, "rate 0")
	_, err = NewPacer(10, 0, time.Millisecond)
	require.ErrorContains(t, err, "catch-up 0s")
	_, err = NewPacer(10, time.Millisecond, time.Second)
	require.ErrorContains(t, err, "tick 1s")
	p, err := NewPacer(10, time.Second, time.Millisecond)
	require.NoError(t, err)
	_, err = p.Take(t.Context(), 0)
	require.ErrorContains(t, err, "take 0")
}
