// Package bench is braid's benchmark harness: it drives a job queue System (braid, or River from
// the separate module in bench/river) with one producer and one worker handler, and measures
// it the way the public PostgreSQL job-queue benchmarks do, plus WAL bytes per job.
//
// # Phases and modes
//
// A run starts the System's workers, then produces in one of three modes:
//
//   - drain: J jobs are enqueued before the workers start; the run times their completion.
//   - offered: a paced producer ([Pacer]) offers R jobs/s; the run reports what was enqueued
//     and completed. Tokens a slow producer could not use are dropped after a bounded
//     catch-up, so the offered load never bursts beyond Rate×CatchUp.
//   - depth: the producer keeps about N jobs enqueued and not yet completed, which measures
//     the peak sustainable rate.
//
// offered and depth runs have a warmup and a measured window; after the window the producer
// stops and the backlog drains (bounded by DrainTimeout) so the ledger can tell lost jobs from
// late ones. Every second a [Sample] records the enqueue rate, the durable completion rate
// (counted when the System reports the completion committed), end-to-end latency percentiles
// (enqueue call → completion commit) and the queue depth. Depth is the harness's own count of
// jobs enqueued whose completion has not committed (waiting, running or being acknowledged),
// the same for every System and free for the database (braid's exact counts took 0.2–0.5 s
// on a small idle shard here, too much to ask every second during a run).
//
// # What a System must report
//
// The System calls [Ledger.Work] from its handler (that records the execution and simulates
// the work) and [Ledger.Completed] once the completion of a job has committed in the database.
// Jobs are identified by the harness's own sequence number in [Args], so lost and duplicated
// executions are judged the same way for every System.
//
// # Costs
//
// WAL bytes are pg_current_wal_lsn deltas per database the System names (a server's WAL: two
// databases on one server both see its whole WAL), dead tuples come from pg_stat_user_tables
// of the System's schema (sampled every second, and once more at the end after the statistics
// are flushed), CPU seconds from getrusage of this process. Costs are divided by the jobs
// completed over the same span.
//
// # Must never
//
// bench asserts no speed: figures are reported, compared only within one invocation. It uses
// no global state, and every goroutine it starts is waited for before Run returns.
package bench
