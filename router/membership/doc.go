// Package membership owns a router node's view of the other router nodes:
// hashicorp/memberlist gossip, the node meta each node announces, and the
// ownership rule that turns a member list into claim-unit owners and
// maintenance candidates (DESIGN.md §4).
//
// # Membership
//
// Start creates a memberlist named node id + random suffix (a restarted node
// must not reuse a name memberlist saw die), announcing in its meta the node
// id, roles, state and capacity, and the queues it has workers for. The meta
// is one version byte and compact JSON; Config.Validate refuses a config whose
// meta, in its longest state, would not fit memberlist's 512-byte limit. A
// remote node's meta that cannot be decoded is logged and that member gets no
// roles and no capacity: it owns nothing, and nothing crashes.
//
// Members is an immutable snapshot behind an atomic pointer, replaced whole
// when memberlist reports a join, leave, failure or meta update; Changes is a
// coalescing wake-up (buffered one, non-blocking send) to re-read it.
// memberlist calls its event delegates under its node lock, so they never call
// back into memberlist: they update the view and signal.
//
// Seeds are joined at Start and re-joined every RejoinInterval: memberlist
// never contacts a node it declared dead, so without re-joins a healed
// partition would stay split. SetState gossips a new state; Leave broadcasts
// a graceful leave then shuts down; Crash shuts down without a word, as a
// killed process would.
//
// Security: ClusterLabel makes nodes of another cluster refuse each other's
// packets; SecretKey encrypts gossip and refuses unencrypted peers. Binding
// beyond loopback without a key is refused unless AllowInsecure is set.
// PresetLAN (memberlist.DefaultLANConfig) is the production default;
// PresetFast detects failures in under a second on loopback, for tests.
//
// # Ownership
//
// Owners is a pure function over a member list: the top-k eligible members
// for a key by placement.Rank weighted by Capacity. Callers choose
// eligibility (typically active workers that serve the queue, or active
// maintenance nodes) and keys (UnitKey, MaintenanceKey). Adding a node moves
// only the keys it wins; removing one moves only the keys it held.
//
// # Partitions
//
// PartitionTransport wraps the gossip transport (Config.Transport) and drops
// traffic to and from blocked addresses: the chaos and test tool for split
// views.
//
// This package must never touch a database or decide what a node does with
// ownership: router/node takes the decisions, this package supplies the view.
// memberlist's log output goes to the injected slog logger with its levels;
// the braid.members gauge goes to the injected meter provider.
package membership
