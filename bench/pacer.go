package bench

import (
	"context"
	"fmt"
	"math"
	"sync"
	"time"
)

// Pacer hands out permission to enqueue at a fixed rate: a token bucket that fills at Rate
// tokens per second and holds at most Rate×CatchUp of them. A producer that falls behind may
// catch up by that much at once; tokens beyond it are dropped (counted by Dropped), so a stall
// never turns into a burst that was not offered. Take hands out about a tick's worth of tokens
// at a time (at least one), so a fast rate is offered in batches, not one call per job. It is
// safe for concurrent use.
type Pacer struct {
	rate  float64
	burst float64
	batch float64 // tokens per tick

	mu      sync.Mutex
	tokens  float64
	last    time.Time
	dropped float64
}

// NewPacer returns a pacer at rate tokens/s with catch-up bound catchUp, handing out a tick's
// worth of tokens at a time; the bucket starts empty.
func NewPacer(rate float64, catchUp, tick time.Duration) (*Pacer, error) {
	if !(rate > 0) || math.IsInf(rate, 0) {
		return nil, fmt.Errorf("pacer: rate %v: must be a positive number of jobs/s", rate)
	}
	if catchUp <= 0 {
		return nil, fmt.Errorf("pacer: catch-up %v: must be positive", catchUp)
	}
	if tick <= 0 || tick > catchUp {
		return nil, fmt.Errorf("pacer: tick %v: must be positive and at most the catch-up %v", tick, catchUp)
	}
	return &Pacer{rate: rate, burst: max(1, rate*catchUp.Seconds()), batch: max(1, math.Floor(rate*tick.Seconds())), last: time.Now()}, nil
}

// Take waits until a tick's worth of tokens (or most, if fewer) is available and takes up to
// most of them.
func (p *Pacer) Take(ctx context.Context, most int) (int, error) {
	if most < 1 {
		return 0, fmt.Errorf("pacer: take %d: must take at least 1", most)
	}
	want := min(p.batch, float64(most))
	for {
		p.mu.Lock()
		p.refill(time.Now())
		if p.tokens >= want {
			n := min(int(p.tokens), most)
			p.tokens -= float64(n)
			p.mu.Unlock()
			return n, nil
		}
		wait := time.Duration((want - p.tokens) / p.rate * float64(time.Second))
		p.mu.Unlock()
		t := time.NewTimer(max(wait, time.Microsecond))
		select {
		case <-ctx.Done():
			t.Stop()
			return 0, ctx.Err()
		case <-t.C:
		}
	}
}

// Dropped is the number of tokens lost to the catch-up bound so far.
func (p *Pacer) Dropped() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.refill(time.Now())
	return int64(p.dropped)
}

func (p *Pacer) refill(now time.Time) {
	if el := now.Sub(p.last); el > 0 {
		p.tokens += el.Seconds() * p.rate
		p.last = now
	}
	if p.tokens > p.burst {
		p.dropped += p.tokens - p.burst
		p.tokens = p.burst
	}
}
