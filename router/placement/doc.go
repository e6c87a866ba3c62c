// Package placement decides where things live, by weighted rendezvous hashing
// (highest random weight) over xxhash64 (DESIGN.md §3.1, §4).
//
// Home picks a queue's desired shard: pins first, then the highest score among
// eligible shards. Rank orders any set of string-named candidates for a key by
// the same score; router nodes use it for claim-unit ownership (top-k nodes by
// capacity) and maintenance candidacy (top-1). Both go through one scorer, so
// a change to the hash or the score changes both together.
//
// The score of candidate c for key k is -w(c) / ln(u), where u in (0,1) comes
// from the 64-bit hash of (c, k). The winner's probability is exactly
// w(c) / Σw, and adding or removing one candidate only moves the keys that it
// wins or loses: adding a shard of weight w to a total W moves w/(W+w) of the
// queues, all of them onto the new shard; removing one moves only its own.
//
// Placement is a pure function of its inputs: no I/O, no clock, no state. The
// desired home is not where a queue is: the catalog's directory routes, and
// this package only chooses a new queue's first home and a rebalance target.
// It must stay importable by producers without memberlist or database code.
package placement
