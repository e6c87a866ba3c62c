package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/braidq/braid/localpg"
	"github.com/braidq/braid/router/membership"
	"github.com/braidq/braid/router/node"
)

// devFlags are `braid dev`'s flags.
type devFlags struct {
	data     string
	keep     bool
	duration time.Duration
	rate     int
	interval time.Duration
	drain    time.Duration
}

func (f devFlags) validate() error {
	var errs []error
	if f.duration < 0 {
		errs = append(errs, fmt.Errorf("-duration %v: must not be negative (0 runs until Ctrl-C)", f.duration))
	}
	if f.rate < 1 || f.rate > 100_000 {
		errs = append(errs, fmt.Errorf("-rate %d: must be 1..100000 jobs per second", f.rate))
	}
	if f.interval <= 0 {
		errs = append(errs, fmt.Errorf("-interval %v: must be positive", f.interval))
	}
	if f.drain <= 0 {
		errs = append(errs, fmt.Errorf("-drain %v: must be positive", f.drain))
	}
	return errors.Join(errs...)
}

// devShards is how many throwaway shards `braid dev` runs.
const devShards = 3

// devDurability is the servers' durability: fsync off (the data is thrown away, and a demo
// on a laptop should not wait for disk flushes), synchronous_commit on (a job the producer saw
// enqueued survives a crash of its server, so the ledger's lost count means what it says).
const devDurability = localpg.CrashSafe

func runDev(ctx context.Context, args []string, out Output) int {
	fs := flag.NewFlagSet("dev", flag.ContinueOnError)
	var f devFlags
	fs.StringVar(&f.data, "data", "", "folder for the servers' data (empty or new); default a fresh temporary folder")
	fs.BoolVar(&f.keep, "keep", false, "keep the data folder at exit")
	fs.DurationVar(&f.duration, "duration", 0, "stop cleanly after this long (0: run until Ctrl-C)")
	fs.IntVar(&f.rate, "rate", 200, "demo jobs enqueued per second")
	fs.DurationVar(&f.interval, "interval", 3*time.Second, "how often progress is printed")
	fs.DurationVar(&f.drain, "drain", 30*time.Second, "at stop, how long to wait for enqueued jobs to finish")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: braid dev [flags]\n\n"+
			"Starts %d throwaway PostgreSQL shards on loopback, migrates them, runs a router node with demo\n"+
			"workers and a demo producer over %d queues, and prints progress to stdout (logs go to stderr).\n"+
			"At the end it prints a summary from the demo's own ledger and exits 0 only when no job was\n"+
			"lost or run twice.\n\nflags:\n", devShards, len(demoQueues()))
		fs.PrintDefaults()
	}
	if code := parseFlags(fs, args, out); code >= 0 {
		return code
	}
	if err := f.validate(); err != nil {
		return usageError(fs, out, err)
	}
	logger := out.Logger()
	d := &dev{flags: f, out: out, logger: logger, ledger: newLedger(), start: time.Now()}
	err := d.run(ctx)
	if err != nil {
		fmt.Fprintf(out.Stderr, "braid dev: %v\n", err)
		return ExitFailure
	}
	t := d.ledger.tally()
	if t.Lost > 0 || t.Duplicates > 0 {
		return ExitFailure
	}
	return ExitOK
}

// dev is one run of `braid dev`.
type dev struct {
	flags  devFlags
	out    Output
	logger *slog.Logger
	ledger *ledger
	start  time.Time
}

func (d *dev) run(ctx context.Context) (err error) {
	dir, cleanup, err := d.dataDir()
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, cleanup()) }()

	fmt.Fprintf(d.out.Stdout, "braid dev: starting %d shards in %s\n", devShards, dir)
	world, err := startLocalShards(ctx, localShardsOptions{
		Dir: dir, Shards: devShards, Cluster: "dev", Durability: devDurability, Pins: demoPins(devShards), Logger: d.logger,
	})
	if err != nil {
		return err
	}
	defer func() {
		stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), stopTimeout)
		defer cancel()
		err = errors.Join(err, world.stop(stopCtx))
	}()
	fmt.Fprintf(d.out.Stdout, "braid dev: PostgreSQL binaries in %s\n", world.servers.BinDir())
	for i, s := range world.servers.Servers() {
		fmt.Fprintf(d.out.Stdout, "braid dev: shard %d (%s): %s, data %s\n", i+1, world.cfgs[i].Name, s.DSN(localDatabase), s.DataDir)
	}

	queues := map[string]node.QueueConfig{}
	for _, q := range demoQueues() {
		queues[q] = node.QueueConfig{}
	}
	n, err := node.New(node.Config{
		ID:         "dev",
		Queues:     queues,
		MaxWorkers: 50,
		Gossip:     membership.Config{ClusterLabel: "braid-dev"},
	}, node.Deps{
		Shards:  world.set,
		Client:  world.client,
		Workers: demoWorkers(d.ledger),
		Logger:  d.logger,
	})
	if err != nil {
		return err
	}
	if err := n.Start(ctx); err != nil {
		return errors.Join(err, n.Stop(context.WithoutCancel(ctx)))
	}
	nodeStopped := false
	stopNode := func() error {
		if nodeStopped {
			return nil
		}
		nodeStopped = true
		stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), stopTimeout)
		defer cancel()
		return n.Stop(stopCtx)
	}
	defer func() { err = errors.Join(err, stopNode()) }()

	// The producer and the progress printer run until the run ends (duration or signal).
	runCtx, stopRun := context.WithCancel(ctx)
	defer stopRun()
	if d.flags.duration > 0 {
		var cancel context.CancelFunc
		runCtx, cancel = context.WithTimeout(runCtx, d.flags.duration)
		defer cancel()
	}
	var wg sync.WaitGroup
	wg.Go(func() { produce(runCtx, world.client, d.flags.rate, d.ledger, d.logger) })
	p := &progress{world: world, ledger: d.ledger, out: d.out.Stdout, logger: d.logger, start: time.Now()}
	wg.Go(func() { p.loop(runCtx, d.flags.interval) })
	<-runCtx.Done()
	wg.Wait()
	if ctx.Err() != nil {
		fmt.Fprintln(d.out.Stdout, "braid dev: interrupted: stopping the producer and draining (interrupt again to quit at once)")
	} else {
		fmt.Fprintln(d.out.Stdout, "braid dev: duration reached: stopping the producer and draining")
	}

	// Drain without the signal's context: the point of a clean stop is to finish the work.
	drainCtx, cancelDrain := context.WithTimeout(context.WithoutCancel(ctx), d.flags.drain)
	defer cancelDrain()
	d.drain(drainCtx)
	err = errors.Join(err, stopNode())
	p.print(context.WithoutCancel(ctx))

	t := d.ledger.tally()
	fmt.Fprintf(d.out.Stdout, "braid dev: summary: enqueued=%d completed=%d lost=%d duplicates=%d untracked=%d failures=%d snoozes=%d elapsed=%s\n",
		t.Enqueued, t.Completed, t.Lost, t.Duplicates, t.Untracked, t.Failures, t.Snoozes, time.Since(d.start).Round(100*time.Millisecond))
	return err
}

// drain waits until every enqueued job ran successfully, or ctx ends.
func (d *dev) drain(ctx context.Context) {
	ticker := time.NewTicker(200 * time.Millisecond)
	defer ticker.Stop()
	for {
		if t := d.ledger.tally(); t.Lost == 0 {
			return
		}
		select {
		case <-ctx.Done():
			t := d.ledger.tally()
			fmt.Fprintf(d.out.Stdout, "braid dev: drain gave up after %s with %d jobs not run\n", d.flags.drain, t.Lost)
			return
		case <-ticker.C:
		}
	}
}

// dataDir returns the servers' folder and what removes it at exit (nothing with --keep).
func (d *dev) dataDir() (string, func() error, error) {
	dir := d.flags.data
	created := false
	if dir == "" {
		var err error
		if dir, err = localpg.TempDir("braid-dev"); err != nil {
			return "", nil, err
		}
		created = true
	} else {
		abs, err := filepath.Abs(dir)
		if err != nil {
			return "", nil, fmt.Errorf("-data %q: %w", dir, err)
		}
		dir = abs
	}
	// What was there before is the caller's: only what this run adds is removed.
	before, err := os.ReadDir(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		created = true
	case err != nil:
		return "", nil, fmt.Errorf("-data %s: %w", dir, err)
	}
	cleanup := func() error {
		if d.flags.keep {
			fmt.Fprintf(d.out.Stdout, "braid dev: data kept in %s\n", dir)
			return nil
		}
		if created {
			return os.RemoveAll(dir)
		}
		return removeAddedEntries(dir, before)
	}
	return dir, cleanup, nil
}

// removeAddedEntries removes the entries of dir that are not in before.
func removeAddedEntries(dir string, before []os.DirEntry) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	old := make(map[string]bool, len(before))
	for _, e := range before {
		old[e.Name()] = true
	}
	var errs []error
	for _, e := range entries {
		if !old[e.Name()] {
			errs = append(errs, os.RemoveAll(filepath.Join(dir, e.Name())))
		}
	}
	return errors.Join(errs...)
}
