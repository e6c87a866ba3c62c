package router

import (
	"context"
	"maps"
	"sync"
	"sync/atomic"
	"time"
)

// directory is an immutable snapshot of the placement directory as this client knows it.
// Writers build a new one and replace it whole; readers never lock.
type directory struct {
	version int64 // every change numbered <= version is in entries
	entries map[string]Entry
}

// dirCache is the client's copy of the directory: a snapshot behind an atomic pointer, a
// writer lock that keeps concurrent installs from losing each other's entries, and a refresh
// gate that makes concurrent refreshes (a redirect storm) share their work.
type dirCache struct {
	snap atomic.Pointer[directory]
	mu   sync.Mutex // serialises writers of snap

	gate      chan struct{} // buffered 1: held by the refresh in flight
	started   atomic.Int64  // refreshes begun
	completed atomic.Int64  // the start number of the newest refresh that succeeded
}

func newDirCache() *dirCache {
	d := &dirCache{gate: make(chan struct{}, 1)}
	d.snap.Store(&directory{entries: map[string]Entry{}})
	return d
}

func (d *dirCache) lookup(queue string) (Entry, bool) {
	e, ok := d.snap.Load().entries[queue]
	return e, ok
}

// install merges entries into the snapshot. An entry replaces the cached one only when it is
// at least as new (its version), so a slow refresh never undoes a newer claim; the snapshot's
// version only grows.
func (d *dirCache) install(version int64, entries ...Entry) {
	d.mu.Lock()
	defer d.mu.Unlock()
	old := d.snap.Load()
	next := &directory{version: max(old.version, version), entries: old.entries}
	copied := false
	for _, e := range entries {
		if cur, ok := old.entries[e.Queue]; ok && cur.Version > e.Version {
			continue
		}
		if !copied {
			next.entries = maps.Clone(old.entries)
			copied = true
		}
		next.entries[e.Queue] = e
	}
	if !copied && next.version == old.version {
		return
	}
	d.snap.Store(next)
}

// refresh reads the directory changes since the cached version and installs them. A caller
// that finds a refresh in flight waits for it; when a refresh that began after this caller
// arrived has succeeded meanwhile, its result is as fresh as the caller needs and no query is
// sent.
func (d *dirCache) refresh(ctx context.Context, cat *Catalog) error {
	arrived := d.started.Load()
	select {
	case d.gate <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-d.gate }()
	if d.completed.Load() > arrived {
		return nil
	}
	n := d.started.Add(1)
	version, changed, err := cat.Since(ctx, d.snap.Load().version)
	if err != nil {
		return err
	}
	d.install(version, changed...)
	d.completed.Store(n)
	return nil
}

// poller refreshes the cache every interval until stopped. Start and Stop are idempotent and
// Stop is safe before Start.
type poller struct {
	interval time.Duration
	run      func(ctx context.Context)

	mu     sync.Mutex
	cancel context.CancelFunc
	done   chan struct{}
}

// Start launches the loop; it returns at once. The loop runs until Stop, not until ctx ends:
// ctx only bounds the start itself, as for every Start in braid.
func (p *poller) Start(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cancel != nil {
		return nil
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	p.cancel, p.done = cancel, done
	go func() {
		defer close(done)
		t := time.NewTicker(p.interval)
		defer t.Stop()
		for {
			p.run(runCtx)
			select {
			case <-runCtx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return nil
}

// Stop ends the loop and waits for it, or for ctx.
func (p *poller) Stop(ctx context.Context) error {
	p.mu.Lock()
	cancel, done := p.cancel, p.done
	p.cancel, p.done = nil, nil
	p.mu.Unlock()
	if cancel == nil {
		return nil
	}
	cancel()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
