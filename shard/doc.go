// Package shard owns the handles to braid's shards (DESIGN.md §1, §3.3): one PostgreSQL
// primary each, opened with an explicit ping and an identity check, with a connection pool, the
// shard's engine and the shard's one circuit breaker, which everything that talks to the shard
// (enqueue, claim loops, maintenance) shares. A Set is the shards of a process, opened and
// closed together; MigrateAll migrates every configured shard concurrently and reports per shard.
//
// # Must never
//
// shard imports engine and health only (never configs, router or memberlist): configs converts
// its YAML into Config. It never runs an operation on a shard outside Call, so the breaker sees
// every outcome, and it never sets timeouts of its own on operations: the caller layer passes
// them to Call. It never prints a DSN: errors name the shard by id and name.
//
// # Identity
//
// Open refuses a database whose identity row names another shard id or braid cluster than the
// configuration (*engine.IdentityError): a DSN pointing at the wrong database must never mix
// two shards' jobs. An unmigrated database is refused with the command to run.
package shard
