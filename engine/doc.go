// Package engine is one shard's segmented queue engine: the braid schema inside one PostgreSQL
// database (embedded, numbered migrations) and the operations on it: Enqueue, Claim, Complete,
// JobGet, Counts, and the unhappy paths: Fail (retry with backoff, dead letters, failed),
// Snooze, Cancel, Discard, Retry, Promote, Heartbeat, Rescue and dead-letter retry, purge and
// trim. It knows nothing about other shards, routing or gossip, and it must never
// read configuration files or the environment, keep package-level state, or issue one round
// trip per job: every operation is one call of one PL/pgSQL function over arrays.
//
// # Storage
//
// Two rings of LIST partitions, each rotated by appending a generation to an append-only ledger
// (braid.ring_gen; slot = generation mod slots) and reclaimed only by TRUNCATE of a whole slot.
// The queue ring holds ready rows (the immutable job body) and everything learned about them
// afterwards, in the same slot: tombstones, claim emissions, compact completion batches,
// terminal rows and count deltas. The claim ring holds claim batches (one row per claim, arrays
// of members) and closures (which members of a batch ended, and how). The hot tables take only
// INSERTs; the fast path writes no per-job row after enqueue and no UPDATE at all.
//
// # The rules, each defined once in SQL
//
//   - Open attempt (braid.open_attempts): an attempt is open iff its claim-batch member has no
//     closure. Nothing else (a terminal row, a deferred row, a dead letter) implies closure.
//     Every statement that ends attempts takes the claim batch lock first, in its own
//     statement, then validates through open_attempts and writes exactly one closure per
//     member, so closure multiplicity is 0 or 1.
//   - Lane cursor (braid.lane_cursor): the newest lane_seq any retained emission of the lane
//     covers. It is never stored elsewhere, so it cannot be lost: a crash after a claim commits
//     leaves nothing to recover, and sequence gaps from aborted enqueues are skipped because a
//     claim reads "lane_seq > cursor", never "cursor + 1".
//   - Tombstones (braid.tombstones): a ready row with a tombstone is never claimed.
//   - Counter bucket (braid.bucket): job_id mod 256, for every writer, fold and rebuild.
//
// # Why the cursor survives prune
//
// A claim's emission is written into the slot of the rows it emitted, and a claim never spans
// two slots. Enqueue reads the current generation only under its lane locks, so within a lane
// the generation never decreases as lane_seq grows. Prune (queue_slot_prune) takes slots oldest
// first and carries rows still pending in a pruned slot forward with their lane_seq. So when an
// emission disappears, every row it covered disappears with it, and every retained row at or
// below the new (smaller) cursor was emitted by a retained emission.
//
// # Locks
//
// Advisory locks use the two-int form (namespace, key):
//
//	1 lane enqueue  key lane_id                   exclusive, held to commit by enqueue
//	2 lane claim    key lane_id                   try-lock by claim (a held lane is skipped)
//	3 claim batch   key batch_id & 0x7fffffff     every statement that ends attempts of the batch
//	4 queue fence   key hashtext(queue)           shared by enqueue, exclusive by fence seal
//	5 job retry     key hashint8(job_id)          an operator retry of a failed or cancelled job
//	6 ring          key hashtext(ring)            one rotation of a ring at a time
//
// Lock order, for every transaction that takes more than one:
//
//	enqueue:     fence (4, shared) sorted by queue -> lane enqueue (1) sorted by lane_id -> row locks
//	claim:       lane claim (2) -> ready/emission slot -> claim slot
//	completion:  claim batch (3) sorted by batch_id -> claim slot children -> queue slot children
//	fail/snooze/rescue: as completion, then deferred, dead_letter, terminal and unique-key rows
//	cancel:      deferred row, or lane claim (2) -> claim batch (3) when running
//	promotion:   deferred rows (FOR UPDATE SKIP LOCKED) -> lane enqueue (1) sorted by lane_id
//	retry:       job retry (5) -> unique-key row -> lane enqueue (1)
//	maintenance: lease row (FOR KEY SHARE, to commit) -> ring (6) -> the slot's child partitions
//	             (ACCESS EXCLUSIVE within the lock timeout, waiting for one at a time while
//	             holding none of the others) -> current slot (carry-forward) -> counter_log;
//	             a lease takeover locks the lease row FOR UPDATE first
//	counter rebuild: lease row -> counter_log (SHARE ROW EXCLUSIVE, so no fold or prune log insert
//	             changes the bucket's history meanwhile) -> counter rows
//	ledger trim: lease row -> ring (6) of the queue ring, then of the claim ring -> ring_gen rows
//	heartbeat:   claim batch (3) of the resolved receipts, resolved again under the lock until
//	             stable (a re-home it waited for moved them on)
//
// Every hot-path statement runs a generic plan, and in PostgreSQL 15 a generic plan locks every
// partition of the tables it reads when it starts, so a slot's ACCESS EXCLUSIVE locks stop all
// traffic on those tables for as long as they are held or queued for. Prune therefore never
// holds one of a slot's partitions while it waits for another (slot_lock: a round that finds one
// busy releases what it took and waits for that one alone next), so it stands in at most one
// partition's lock queue at a time, holding nothing the transactions ahead of it could need, and
// its locked phase is bounded by the rows it carries, not by the slot's size (queue_slot_prune
// reads per lane of the slot, by index).
//
// A lock that guards a read is always taken in a statement of its own: in READ COMMITTED a
// statement's snapshot predates its own lock wait, so a lock-and-read statement can miss the
// write of the transaction it waited for (DESIGN.md §2.5, "the correctness trap").
//
// Deviation from DESIGN.md §2.5: claims serialise per lane with a transaction-level advisory
// try-lock instead of SELECT ... FOR UPDATE SKIP LOCKED on the lane row. The semantics are the
// same (a held lane is skipped), but an advisory lock writes no WAL and assigns no transaction
// id, so an empty claim of an idle lane writes nothing and forces no commit flush.
//
// # Plans
//
// Every function is PL/pgSQL (planned once per connection) with generic plans forced, shaped to
// stay index walks without statistics: partitions are often new or just truncated, and a plan
// made for an "empty" partition must not become a scan of the backlog once it fills
// (TestCachedPlansStayIndexedOnceTablesFill).
//
// # The Maintainer
//
// A Maintainer (NewMaintainer, Run) runs one shard's maintenance while it holds the shard's lease.
// Run takes the lease (retrying every AcquireRetry while another holder's is live: a standby's
// attempt reads the live lease without locking it, so it never stalls the leader's steps), renews
// it every LeaseTTL/3 on a goroutine of its own, and runs each step on its own goroutine: promote,
// rescue, rehome, rotate (queue, claim), prune (claim, queue), counter fold, ring ledger trim,
// counter rebuild (one bucket per run, in turn), dead-letter trim and stats. Run opens its own
// pool of the engine's database with one connection per step plus one for the lease, so a slow or
// blocked prune never delays promotion or rescue by holding a connection they wait for, and the
// maintainer never takes connections from traffic (a prune waiting for one of its slot's
// partitions still delays anything that needs it, for at most LockTimeout; see Locks).
//
// Each step waits its interval after a run that did its work or found nothing to do, runs again at
// once after a full batch (promote, rescue, rehome, trim) or a pruned slot, and backs off after a
// skipped or blocked prune, a rotation refused by a busy next slot, a fold, ledger trim or rebuild
// standing down, or an error: the wait doubles each time, capped at MaxBackoff (never below the interval),
// and returns to the interval after the first run that is not a back-off outcome.
//
// The lease-checked steps (rotate, prune, fold, ledger trim, rebuild) start their transactions
// with the lease check; promote, rescue, rehome and dead-letter trim are safe to run concurrently
// and are scheduled only while the lease is held. After a fold or a ledger trim that wrote, the
// step VACUUMs the small tables it churned (counter_log, counter, maintenance_lease; ring_gen) as
// soon as no snapshot older than the write is held (waiting at most a second; otherwise its next
// run VACUUMs first), so their dead tuples last milliseconds, not until autovacuum's next visit. When a renewal or a step finds the lease lost
// (or no renewal succeeded for a whole TTL), Run cancels the other steps, waits for them and
// returns ErrLeaseLost; when its context ends it waits for them and releases the lease
// (LeaseRelease), so a successor takes it at once. Every change of the lease's hands is in the
// shard's append-only lease log (LeaseHistory), with the previous lease's final expiry as read
// under the lease row's lock. Status reports each step's last outcome, and the steps' outcomes,
// durations, prune phases (lock wait, truncate, commit), ring generations, dead tuples per table
// and the pinned horizon's age go to the injected MeterProvider.
package engine
