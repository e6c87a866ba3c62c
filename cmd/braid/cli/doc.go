// Package cli is the braid command: subcommand dispatch, flags, exit codes, and each
// subcommand's logic. cmd/braid/main.go only hands it the arguments and the output streams.
//
// # Subcommands
//
// A subcommand is one line of the dispatch table in commands() and a run function that gets
// the arguments after its name and an Output (results and progress on Stdout; slog text logs
// and errors on Stderr). Flags are parsed with the standard flag package (parseFlags): an
// unknown subcommand, flag or argument, or a bad flag value, ends with ExitUsage (2) after
// naming it; -h lists the flags. Main turns the first SIGINT or SIGTERM into the end of the
// subcommand's context, which subcommands treat as "stop cleanly"; a second one ends the
// process at once.
//
// # braid dev
//
// dev runs braid with nothing to set up: localShards (local.go, shared with other subcommands
// that need a throwaway cluster) starts three PostgreSQL servers with localpg, one shard each,
// migrates them (shard.MigrateAll) and the catalog on shard 1 (router.MigrateCatalog), and opens
// the shard set, the catalog and a router client. A router node (router/node) runs the demo
// workers (demo.go) over four queues, pinned round-robin so every shard has work; a producer
// enqueues through the router client at -rate jobs per second. A few jobs fail once and retry
// with braid's backoff, a few snooze once. The demo keeps a ledger (ledger.go): the job ids
// InsertMany reported enqueued and the successful executions per job id, from which it reports
// lost (enqueued, never run successfully) and duplicates (run successfully more than once). The
// servers run with localpg.CrashSafe durability: no disk flushes (the data is throwaway), but a
// job the producer saw enqueued survives a crash of its server.
//
// Stopping (after -duration, or on a signal) stops the producer, waits up to -drain for every
// enqueued job to run, stops the node (which hands back what did not finish), prints a last
// report and the summary line, stops the servers and removes what it added to the data folder
// unless -keep. The exit code is 0 only when the run worked and the ledger shows no lost and no
// duplicated job.
//
// # Must never
//
// Run work of its own in place of braid's: the demo's jobs are claimed, run and acknowledged by
// the router node only. It never leaves a server running: localpg ties every server to this
// process.
package cli
