package node

import "sync"

// slots is a counting semaphore for handler concurrency. A claim loop takes as many slots as
// are free (up to what it wants) without waiting, claims that many jobs, and gives back what
// the claim did not fill; a loop with nothing free waits on released.
type slots struct {
	mu   sync.Mutex
	free int
	rel  chan struct{} // closed (and replaced) by the next give
}

func newSlots(n int) *slots { return &slots{free: n, rel: make(chan struct{})} }

// take takes up to max free slots and says how many it took.
func (s *slots) take(max int) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := min(max, s.free)
	s.free -= n
	return n
}

// give returns n slots and wakes every waiter.
func (s *slots) give(n int) {
	if n <= 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.free += n
	close(s.rel)
	s.rel = make(chan struct{})
}

// released returns a channel closed at the next give.
func (s *slots) released() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rel
}

// pair takes slots from a queue's semaphore and the node's at once, so that a job runs only
// while it holds one of each.
type pair struct{ queue, node *slots }

func (p pair) take(max int) int {
	q := p.queue.take(max)
	n := p.node.take(q)
	p.queue.give(q - n)
	return n
}

func (p pair) give(n int) {
	p.node.give(n)
	p.queue.give(n)
}
