package membership

import (
	"fmt"

	"github.com/braidq/braid/router/placement"
)

// Owners returns the top-k members for key, best first: the eligible members
// ranked by placement.Rank (weighted rendezvous, the one scorer braid uses
// for every placement decision) on their NodeID, weighted by Capacity.
// Members with no capacity (including those whose meta could not be read)
// never own. A nil eligible admits every member; k larger than the number of
// candidates returns them all; no candidate (or k <= 0) returns nil.
//
// Scoring by NodeID rather than by memberlist name keeps a restarted node's
// units where they were. While a restarted node's previous incarnation is
// still listed, both share a NodeID; the one with the lowest Name stands for
// it, so the result stays a function of the member set alone.
func Owners(key string, k int, members []Member, eligible func(Member) bool) []Member {
	if k <= 0 {
		return nil
	}
	byID := make(map[string]Member, len(members))
	for _, m := range members {
		if m.Capacity <= 0 || (eligible != nil && !eligible(m)) {
			continue
		}
		if prev, ok := byID[m.NodeID]; ok && prev.Name < m.Name {
			continue
		}
		byID[m.NodeID] = m
	}
	candidates := make([]placement.Candidate, 0, len(byID))
	for id, m := range byID {
		candidates = append(candidates, placement.Candidate{ID: id, Weight: float64(m.Capacity)})
	}
	ranked := placement.Rank(key, candidates)
	if len(ranked) == 0 {
		return nil
	}
	out := make([]Member, min(k, len(ranked)))
	for i := range out {
		out[i] = byID[ranked[i].ID]
	}
	return out
}

// UnitKey is the ownership key of the claim unit (shard, queue, lane). Shard
// and lane are numbers at either end, so a queue name cannot make two units'
// keys collide.
func UnitKey(shardID int, queue string, lane int) string {
	return fmt.Sprintf("unit:%d/%s/%d", shardID, queue, lane)
}

// MaintenanceKey is the key whose top-1 owner among maintenance nodes is the
// maintenance candidate of a shard.
func MaintenanceKey(shardID int) string { return fmt.Sprintf("maint:%d", shardID) }
