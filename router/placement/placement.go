package placement

import (
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/cespare/xxhash/v2"
)

// State is a shard's placement state. The zero value is StateActive.
type State uint8

const (
	// StateActive shards host queues and receive new ones.
	StateActive State = iota
	// StateJoining shards were just added. Adding a shard moves nothing by
	// itself (DESIGN.md §6), but new queues may land on it at once, so for a
	// new queue's home a joining shard is as eligible as an active one; the
	// rebalancer decides when existing queues move onto it.
	StateJoining
	// StateDraining shards are being emptied for removal: they receive no new
	// queues and are never a desired home.
	StateDraining
)

var stateNames = [...]string{StateActive: "active", StateJoining: "joining", StateDraining: "draining"}

// String returns the state's config spelling.
func (s State) String() string {
	if int(s) < len(stateNames) {
		return stateNames[s]
	}
	return fmt.Sprintf("state(%d)", uint8(s))
}

// ParseState parses a state's config spelling: active, joining or draining.
func ParseState(s string) (State, error) {
	for i, name := range stateNames {
		if s == name {
			return State(i), nil
		}
	}
	return 0, fmt.Errorf("unknown shard state %q (want active, joining or draining)", s)
}

// MarshalText implements encoding.TextMarshaler.
func (s State) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (s *State) UnmarshalText(b []byte) error {
	v, err := ParseState(string(b))
	if err != nil {
		return err
	}
	*s = v
	return nil
}

// Shard is what placement needs to know about a shard.
type Shard struct {
	ID     int16
	Weight float64
	State  State
}

// TakesNewQueues reports whether s may become the desired home of a queue by
// hashing: active or joining, with a positive weight. A pin may still name an
// active or joining shard of weight 0.
func (s Shard) TakesNewQueues() bool {
	return (s.State == StateActive || s.State == StateJoining) && s.Weight > 0
}

// NoEligibleShardError is returned by Home when no shard may take the queue:
// none is configured, or every one is draining or has weight 0.
type NoEligibleShardError struct {
	Queue string
}

func (e *NoEligibleShardError) Error() string {
	return fmt.Sprintf("queue %q: no shard takes new queues (every shard is draining or has weight 0)", e.Queue)
}

// PinError is returned by Home when a queue is pinned to a shard that cannot
// be its home.
type PinError struct {
	Queue   string
	ShardID int16
	Reason  string // "is not configured" or "is draining"
}

func (e *PinError) Error() string {
	return fmt.Sprintf("queue %q: pinned to shard %d, which %s", e.Queue, e.ShardID, e.Reason)
}

// Home returns the desired home shard of queue.
//
// A pin wins over hashing; it must name a configured shard that is not
// draining (its weight does not matter here). Otherwise the home is
// the eligible shard (see Shard.TakesNewQueues) with the highest score; equal
// scores go to the lower shard ID, so the result does not depend on the order
// of shards. Shard IDs are expected to be unique.
func Home(queue string, shards []Shard, pins map[string]int16) (int16, error) {
	if id, ok := pins[queue]; ok {
		for _, s := range shards {
			if s.ID != id {
				continue
			}
			if s.State == StateDraining {
				return 0, &PinError{Queue: queue, ShardID: id, Reason: "is draining"}
			}
			return id, nil
		}
		return 0, &PinError{Queue: queue, ShardID: id, Reason: "is not configured"}
	}

	best := -1
	var bestScore float64
	for i, s := range shards {
		if !s.TakesNewQueues() {
			continue
		}
		sc := score(shardHash(s.ID, queue), s.Weight)
		if best < 0 || beats(sc, bestScore, s.ID < shards[best].ID) {
			best, bestScore = i, sc
		}
	}
	if best < 0 {
		return 0, &NoEligibleShardError{Queue: queue}
	}
	return shards[best].ID, nil
}

// Candidate is a string-named participant in Rank, such as a router node
// weighted by its capacity.
type Candidate struct {
	ID     string
	Weight float64
}

// Rank orders the candidates with a positive weight by their rendezvous score
// for key, best first; candidates with weight <= 0 are left out. Equal scores
// go to the lower ID. The result is a new slice; the first k entries are the
// key's top-k owners, and removing a candidate never reorders the others.
func Rank(key string, candidates []Candidate) []Candidate {
	type scored struct {
		c     Candidate
		score float64
	}
	ranked := make([]scored, 0, len(candidates))
	for _, c := range candidates {
		if !(c.Weight > 0) {
			continue
		}
		ranked = append(ranked, scored{c: c, score: score(candidateHash(c.ID, key), c.Weight)})
	}
	slices.SortFunc(ranked, func(a, b scored) int {
		switch {
		case a.score == b.score:
			return strings.Compare(a.c.ID, b.c.ID)
		case beats(a.score, b.score, false):
			return -1
		default:
			return 1
		}
	})
	out := make([]Candidate, len(ranked))
	for i, r := range ranked {
		out[i] = r.c
	}
	return out
}

// score is the one rendezvous score used by Home and Rank: -weight / ln(u),
// with u uniform in (0,1) taken from the hash. With it, a candidate wins with
// probability weight / Σweight.
//
// u uses the top 52 bits: (h>>12 + 0.5) / 2^52 lies in [2^-53, 1 - 2^-53] and
// every value is exact in a float64. With 53 bits, h>>11 = 2^53-1 would round
// (2^53 - 0.5) up to 2^53, making u = 1 and the score -Inf.
func score(h uint64, weight float64) float64 {
	u := (float64(h>>12) + 0.5) / (1 << 52)
	return -weight / math.Log(u)
}

// beats reports whether score a outranks score b; lowerID breaks ties.
func beats(a, b float64, lowerID bool) bool {
	return a > b || (a == b && lowerID)
}

// shardHash hashes (shard id, queue): the id as 2 bytes big-endian, then the
// queue's bytes. Changing this encoding moves every queue's desired home.
func shardHash(id int16, queue string) uint64 {
	// One-shot hashing of a stack buffer is about twice as fast as streaming
	// through a Digest for the short names queues have; both hash the same
	// bytes.
	var buf [shortKey]byte
	if len(queue) <= len(buf)-2 {
		binary.BigEndian.PutUint16(buf[:2], uint16(id))
		n := copy(buf[2:], queue)
		return xxhash.Sum64(buf[:2+n])
	}
	return shardHashStream(id, queue)
}

// shortKey bounds the queue names shardHash hashes from a stack buffer.
const shortKey = 128

func shardHashStream(id int16, queue string) uint64 {
	var d xxhash.Digest
	d.Reset()
	var b [2]byte
	binary.BigEndian.PutUint16(b[:], uint16(id))
	_, _ = d.Write(b[:])
	_, _ = d.WriteString(queue)
	return d.Sum64()
}

// candidateHash hashes (candidate id, key): the id's length as 4 bytes
// big-endian, the id, then the key, so that no two (id, key) pairs share an
// encoding.
func candidateHash(id, key string) uint64 {
	var d xxhash.Digest
	d.Reset()
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], uint32(len(id)))
	_, _ = d.Write(b[:])
	_, _ = d.WriteString(id)
	_, _ = d.WriteString(key)
	return d.Sum64()
}
