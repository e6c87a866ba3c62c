// Package router is braid's producer client: one queue API over every shard (DESIGN.md §3).
//
// # Routing
//
// Hashing chooses, the directory routes. A queue's first enqueue places it: its desired home by
// weighted rendezvous hashing (router/placement; pins override) is inserted into the catalog's
// directory first-writer-wins (Catalog.Claim), so routers whose configurations disagree still
// agree on the directory, and then its fence is created on the winner (never overwriting a
// fence already there). Every later enqueue routes by the client's cached copy of the
// directory: an immutable snapshot behind an atomic pointer, replaced whole, refreshed by a
// delta read on redirects, on unknown queues and, once Start runs, about every second. Known
// queues keep routing from the cache while the catalog is down.
//
// A shard refuses an enqueue for a queue whose fence is sealed (engine.RedirectError). The client
// refreshes the directory and retries the refused jobs, at once when the directory names a new
// home, with jittered backoff while it does not yet; the caller sees the redirect only when
// no new home appeared within Config.RedirectAttempts rounds. A producer never sends a queue to
// a shard the directory does not name: ordering and uniqueness depend on it.
//
// Job ids name their shard (engine.ShardOf): JobGet, JobCancel, JobDiscard, JobRetry,
// DeadLetterRetry and DeadLetterPurge go to that shard, never through current placement, because
// a queue that moves leaves its jobs (and their dead letters) where they were made. An id of a
// shard the client does not have is a *ShardNotConfiguredError. QueueStats and DeadLetters ask
// every shard, because a queue's history stays on every shard it lived on; DeadLetters merges
// the shards' pages newest first and pages by the last letter seen (keyset, see its doc).
//
// # Failures
//
// Every shard call goes through the shard's one circuit breaker (shard.Call) with braid's own
// timeout (Config.EnqueueTimeout); every catalog call through the catalog's breaker. An open
// breaker fails fast with *ShardUnavailableError naming the shard (or ErrCatalogUnavailable);
// other shards are untouched. InsertMany, DeadLetterRetry and DeadLetterPurge group their jobs
// by shard and call each shard once, all at once, so a failure is per shard: *BatchError lists
// exactly the jobs that were not handled, by shard, and the others' results are returned. Calls
// that ask every shard (QueueStats, DeadLetters) return what the others answered, with the
// missing shards listed. fanout.go holds these patterns; new multi-shard calls reuse them.
//
// # Must never
//
// router imports shard, engine and health (and its own sub-packages), never configs and never
// memberlist: producers embed this package, and the worker runtime and gossip will live in
// sub-packages of their own. It keeps no package-level mutable state.
//
// Not yet here: metrics.
package router
