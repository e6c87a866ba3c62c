package membership

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
)

// State is a node's lifecycle state as gossiped in its meta.
type State string

const (
	// StateStarting: the node has joined gossip but does not take work yet.
	StateStarting State = "starting"
	// StateActive: the node claims units it owns and may run maintenance.
	StateActive State = "active"
	// StateLeaving: the node is stopping; others should take over its units.
	StateLeaving State = "leaving"
)

var states = []State{StateStarting, StateActive, StateLeaving}

func (s State) valid() bool { return slices.Contains(states, s) }

// Roles a node may announce.
const (
	RoleWorker      = "worker"      // runs job handlers and claims units
	RoleMaintenance = "maintenance" // may be the maintenance candidate of a shard
)

var roles = []string{RoleWorker, RoleMaintenance}

// Member is one live node as seen through gossip. Members returned by
// Membership are shared snapshots: do not modify their slices.
type Member struct {
	Name     string   // memberlist name: node id + random suffix, unique per process start
	NodeID   string   // the configured node id
	Roles    []string // RoleWorker, RoleMaintenance
	State    State
	Capacity int      // ownership weight; 0 for a member whose meta could not be read
	Queues   []string // queues the node has workers for; empty = every queue
	Addr     string   // gossip host:port
}

// HasRole reports whether m announced role r.
func (m Member) HasRole(r string) bool { return slices.Contains(m.Roles, r) }

// Serves reports whether m has workers for queue: it lists the queue, or
// lists none (serves every queue). A member without the worker role serves
// nothing.
func (m Member) Serves(queue string) bool {
	return m.HasRole(RoleWorker) && (len(m.Queues) == 0 || slices.Contains(m.Queues, queue))
}

// Meta wire format: one version byte, then JSON with short keys. memberlist
// caps meta at 512 bytes (memberlist.MetaMaxSize); Config.Validate checks the
// encoded size with the longest state, so SetState can never overflow it.
const metaVersion byte = 1

type wireMeta struct {
	NodeID   string   `json:"i"`
	Roles    []string `json:"r,omitempty"`
	State    State    `json:"s"`
	Capacity int      `json:"c"`
	Queues   []string `json:"q,omitempty"`
}

func encodeMeta(m Member) []byte {
	b, err := json.Marshal(wireMeta{NodeID: m.NodeID, Roles: m.Roles, State: m.State, Capacity: m.Capacity, Queues: m.Queues})
	if err != nil { // only strings and ints: cannot fail
		panic(fmt.Sprintf("membership: encode meta: %v", err))
	}
	return append([]byte{metaVersion}, b...)
}

// decodeMeta fills m's meta fields from a remote node's meta bytes. On error
// m is left without roles, state or capacity: it owns nothing.
func decodeMeta(m *Member, b []byte) error {
	if len(b) == 0 {
		return errors.New("empty meta")
	}
	if b[0] != metaVersion {
		return fmt.Errorf("meta version %d (want %d)", b[0], metaVersion)
	}
	var w wireMeta
	if err := json.Unmarshal(b[1:], &w); err != nil {
		return fmt.Errorf("meta: %w", err)
	}
	switch {
	case w.NodeID == "":
		return errors.New("meta: empty node id")
	case !w.State.valid():
		return fmt.Errorf("meta: unknown state %q", w.State)
	case w.Capacity <= 0:
		return fmt.Errorf("meta: capacity %d", w.Capacity)
	}
	m.NodeID, m.Roles, m.State, m.Capacity, m.Queues = w.NodeID, w.Roles, w.State, w.Capacity, w.Queues
	if len(m.Roles) == 0 { // [] and absent mean the same: spell both nil
		m.Roles = nil
	}
	if len(m.Queues) == 0 {
		m.Queues = nil
	}
	return nil
}
