// Package health decides what counts against a shard: it owns the one error
// classifier that every circuit breaker in braid uses (IsInfraError and
// IsExcluded), the breaker settings built on it (NewBreaker) and the helper
// that runs a call through a breaker on behalf of a caller (Run).
//
// Classification rules (DESIGN.md §3.3):
//
//   - Infrastructure errors count as breaker failures: connection errors,
//     SQLSTATE classes 08, 53 and 58, 57P01..57P03, 25006 (a demoted primary
//     answering read-only), and timeouts braid set itself while the caller
//     still waits (context.DeadlineExceeded).
//   - Excluded errors are not counted at all: the caller gave up (its context
//     is done, or the error is context.Canceled), or the error says the work
//     belongs elsewhere (a redirect). Any error in the chain with a method
//     BreakerExcluded() bool that returns true is excluded; the engine's
//     redirect error implements it, so this package never imports the engine.
//   - Everything else — serialization failures, deadlocks, constraint
//     violations, statement timeouts, application errors — proves the shard
//     answered, and counts as a success.
//
// The package must never import the engine, the shard layer or the router: it
// sits below all of them. It holds no package-level mutable state.
package health
