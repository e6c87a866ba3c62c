package shard

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"

	"golang.org/x/sync/errgroup"
)

// openLimit bounds how many shards are opened or migrated at once.
const openLimit = 16

// ValidateAll returns every problem of a set of shard configurations at once: each shard's own
// (named shards[i].field) and duplicated ids and names.
func ValidateAll(cfgs []Config) error {
	var errs []error
	if len(cfgs) == 0 {
		errs = append(errs, errors.New("shards: at least one shard is required"))
	}
	idAt, nameAt := map[int]int{}, map[string]int{}
	for i, c := range cfgs {
		errs = append(errs, c.problems(fmt.Sprintf("shards[%d].", i))...)
		if j, dup := idAt[c.ID]; dup {
			errs = append(errs, fmt.Errorf("shards[%d].id: %d duplicates shards[%d].id", i, c.ID, j))
		} else {
			idAt[c.ID] = i
		}
		if j, dup := nameAt[c.Name]; dup {
			errs = append(errs, fmt.Errorf("shards[%d].name: %q duplicates shards[%d].name", i, c.Name, j))
		} else {
			nameAt[c.Name] = i
		}
	}
	return errors.Join(errs...)
}

// Set is the shards of a process, by id. It is immutable once built and safe for concurrent
// use.
type Set struct {
	byID map[int]*Shard
	ids  []int // sorted
}

// OpenSet opens every configured shard concurrently. It is all or nothing: when any shard
// fails (unreachable, wrong identity, unmigrated), the others are closed again and the error
// joins every failure, each naming its shard.
func OpenSet(ctx context.Context, cfgs []Config, deps Deps) (*Set, error) {
	if err := ValidateAll(cfgs); err != nil {
		return nil, err
	}
	var (
		mu     sync.Mutex
		opened []*Shard
		errs   []error
		g      errgroup.Group
	)
	g.SetLimit(openLimit)
	for _, cfg := range cfgs {
		g.Go(func() error {
			s, err := Open(ctx, cfg, deps)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
			} else {
				opened = append(opened, s)
			}
			return nil
		})
	}
	_ = g.Wait()
	if len(errs) > 0 {
		for _, s := range opened {
			s.Close()
		}
		return nil, fmt.Errorf("open shards: %w", errors.Join(errs...))
	}
	return NewSet(opened...)
}

// NewSet builds a set of shards opened by the caller. Ids must be unique. Closing the set
// closes them.
func NewSet(shards ...*Shard) (*Set, error) {
	byID := make(map[int]*Shard, len(shards))
	for _, s := range shards {
		if _, dup := byID[s.id]; dup {
			return nil, fmt.Errorf("shard %d given twice", s.id)
		}
		byID[s.id] = s
	}
	return &Set{byID: byID, ids: slices.Sorted(maps.Keys(byID))}, nil
}

// Get returns the shard with the id.
func (s *Set) Get(id int) (*Shard, bool) {
	sh, ok := s.byID[id]
	return sh, ok
}

// IDs returns the shard ids in ascending order.
func (s *Set) IDs() []int { return slices.Clone(s.ids) }

// All returns the shards in ascending id order.
func (s *Set) All() []*Shard {
	out := make([]*Shard, len(s.ids))
	for i, id := range s.ids {
		out[i] = s.byID[id]
	}
	return out
}

// Close closes every shard.
func (s *Set) Close() {
	for _, sh := range s.byID {
		sh.Close()
	}
}
