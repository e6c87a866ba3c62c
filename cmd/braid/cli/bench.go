package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/braidq/braid/bench"
	"github.com/braidq/braid/bench/braidsys"
	"github.com/braidq/braid/localpg"
	"github.com/braidq/braid/router"
	"github.com/braidq/braid/shard"
)

// benchFlags are `braid bench`'s flags besides the load (bench.Config).
type benchFlags struct {
	shards     int
	dsns       []string
	compare    string
	json       string
	markdown   string
	plot       string
	data       string
	riverDir   string
	durability string
	cpuProfile string
}

// durabilities are the --durability values for local servers.
var durabilities = map[string]localpg.Durability{
	localpg.Throwaway.String(): localpg.Throwaway,
	localpg.CrashSafe.String(): localpg.CrashSafe,
	localpg.Durable.String():   localpg.Durable,
}

func (f benchFlags) validate() error {
	var errs []error
	if f.shards < 1 || f.shards > 64 {
		errs = append(errs, fmt.Errorf("-shards %d: must be 1..64", f.shards))
	}
	if len(f.dsns) > 0 && f.shards != len(f.dsns) {
		errs = append(errs, fmt.Errorf("-shards %d: with -dsn the shards are the %d servers named", f.shards, len(f.dsns)))
	}
	if f.compare != "" && f.compare != "river" {
		errs = append(errs, fmt.Errorf("-compare %q: the only system to compare with is river", f.compare))
	}
	if _, err := os.Stat(filepath.Join(f.riverDir, "go.mod")); f.compare == "river" && err != nil {
		errs = append(errs, fmt.Errorf("-river-dir %s: not the River comparison module (braid's bench/river; run from braid's folder or name it): %w", f.riverDir, err))
	}
	if _, ok := durabilities[f.durability]; !ok {
		errs = append(errs, fmt.Errorf("-durability %q: must be throwaway, crash-safe or durable", f.durability))
	}
	return errors.Join(errs...)
}

func runBench(ctx context.Context, args []string, out Output) int {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	var cfg bench.Config
	cfg.RegisterFlags(fs)
	f := benchFlags{}
	fs.IntVar(&f.shards, "shards", 1, "braid shards (local servers, one shard each, unless -dsn names them)")
	fs.Func("dsn", "a database on a server to benchmark on, once per shard (its role needs CREATEDB; fresh databases are made beside it); default: throwaway local servers", func(s string) error {
		f.dsns = append(f.dsns, s)
		return nil
	})
	fs.StringVar(&f.compare, "compare", "", `"river": also run River (default and tuned settings) with the same load on the first server`)
	fs.StringVar(&f.json, "json", "", "write the results as JSON here")
	fs.StringVar(&f.markdown, "markdown", "", "write the results as a markdown table here (it is printed to stdout too)")
	fs.StringVar(&f.plot, "plot", "", "write a PNG plot of completion rate and p99 latency over time here")
	fs.StringVar(&f.data, "data", "", "folder for the River benchmark binary and, in data/pg, the local servers (which the postgres user must reach when run as root); default temporary folders, removed at exit")
	fs.StringVar(&f.riverDir, "river-dir", filepath.Join("bench", "river"), "the River comparison module (braid's bench/river)")
	fs.StringVar(&f.cpuProfile, "cpuprofile", "", "write a CPU profile of braid's run (this process: producer, router client and worker node) here")
	fs.StringVar(&f.durability, "durability", localpg.CrashSafe.String(), "local servers: throwaway (fsync and synchronous_commit off), crash-safe (fsync off, synchronous_commit on) or durable")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: braid bench [flags]\n\n"+
			"Benchmarks braid (router client + one worker node) and, with -compare river, River, one after the\n"+
			"other on the same servers with the same producer and load, and reports rates, end-to-end latency,\n"+
			"WAL bytes and CPU per job, dead tuples and a ledger check, with ratios.\n\nflags:\n")
		fs.PrintDefaults()
	}
	if code := parseFlags(fs, args, out); code >= 0 {
		return code
	}
	if err := errors.Join(cfg.Validate(), f.validate()); err != nil {
		return usageError(fs, out, err)
	}
	rep, err := benchRun(ctx, cfg, f, out.Logger())
	if err != nil {
		fmt.Fprintf(out.Stderr, "braid bench: %v\n", err)
		return ExitFailure
	}
	if err := benchWrite(rep, f, out); err != nil {
		fmt.Fprintf(out.Stderr, "braid bench: %v\n", err)
		return ExitFailure
	}
	return ExitOK
}

// benchRun runs braid, then River when asked, and returns their report.
func benchRun(ctx context.Context, cfg bench.Config, f benchFlags, logger *slog.Logger) (rep bench.Report, err error) {
	servers := f.dsns
	durability := "as configured"
	work, pgDir := f.data, filepath.Join(f.data, "pg")
	if f.data == "" {
		// Two folders: the servers' must be reachable by the postgres user when run as root.
		if work, err = os.MkdirTemp("", "braid-bench-*"); err != nil {
			return rep, err
		}
		defer os.RemoveAll(work)
		if pgDir, err = localpg.TempDir("braid-bench-pg"); err != nil {
			return rep, err
		}
		defer os.RemoveAll(pgDir)
	}
	if len(servers) == 0 {
		d := durabilities[f.durability]
		durability = d.String()
		g, err := localpg.Start(ctx, localpg.Options{Dir: pgDir, Servers: f.shards, Durability: d, Logger: logger})
		if err != nil {
			return rep, err
		}
		defer func() {
			sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), stopTimeout)
			defer cancel()
			err = errors.Join(err, g.Stop(sctx))
		}()
		for _, s := range g.Servers() {
			servers = append(servers, s.DSN("postgres"))
		}
	}
	logger.Info("benchmarking braid", "mode", cfg.Mode, "shards", len(servers), "workers", cfg.Workers, "durability", durability)
	stopProfile, err := startCPUProfile(f.cpuProfile)
	if err != nil {
		return rep, err
	}
	res, err := benchBraid(ctx, cfg, servers, logger)
	if err = errors.Join(err, stopProfile()); err != nil {
		return rep, err
	}
	runs := []bench.Result{res}
	if f.compare == "river" {
		logger.Info("benchmarking river", "mode", cfg.Mode, "workers", cfg.Workers)
		river, err := benchRiver(ctx, cfg, f.riverDir, work, servers[0])
		if err != nil {
			return rep, err
		}
		runs = append(runs, river.Runs...)
	}
	for i := range runs {
		if runs[i].Settings == nil {
			runs[i].Settings = map[string]string{}
		}
		runs[i].Settings["server_durability"] = durability
	}
	return bench.NewReport(runs...), nil
}

// startCPUProfile starts profiling this process into path (nothing when path is empty) and
// returns the function that stops it.
func startCPUProfile(path string) (stop func() error, err error) {
	if path == "" {
		return func() error { return nil }, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	return func() error {
		pprof.StopCPUProfile()
		return f.Close()
	}, nil
}

// benchBraid runs braid in a fresh database on each server, migrated as shards 1..n with the
// catalog on shard 1, dropped afterwards.
func benchBraid(ctx context.Context, cfg bench.Config, servers []string, logger *slog.Logger) (res bench.Result, err error) {
	const cluster = "bench"
	name := fmt.Sprintf("braid_bench_%d", time.Now().UnixNano())
	var cfgs []shard.Config
	var drops []func(context.Context) error
	defer func() {
		for _, drop := range drops { // a database left behind does not void the results
			if err := drop(context.WithoutCancel(ctx)); err != nil {
				logger.Warn("benchmark database left behind", "err", err)
			}
		}
	}()
	for i, server := range servers {
		dsn, drop, err := bench.FreshDatabase(ctx, server, name)
		if err != nil {
			return res, fmt.Errorf("shard %d: %w", i+1, err)
		}
		drops = append(drops, drop)
		cfgs = append(cfgs, shard.Config{ID: i + 1, Name: fmt.Sprintf("shard-%d", i+1), DSN: dsn, Cluster: cluster})
	}
	if _, err := shard.MigrateAll(ctx, cfgs); err != nil {
		return res, fmt.Errorf("migrate shards: %w", err)
	}
	pool, err := pgxpool.New(ctx, cfgs[0].DSN)
	if err != nil {
		return res, fmt.Errorf("shard 1: %w", err)
	}
	_, _, err = router.MigrateCatalog(ctx, pool, "")
	pool.Close()
	if err != nil {
		return res, fmt.Errorf("shard 1: migrate the catalog: %w", err)
	}
	sys, err := braidsys.Open(ctx, braidsys.Config{Shards: cfgs, Workers: cfg.Workers}, braidsys.Deps{Logger: logger})
	if err != nil {
		return res, err
	}
	defer sys.Close()
	return bench.Run(ctx, cfg, sys, bench.Deps{Logger: logger})
}

// benchRiver builds the River comparison module once into work and runs it with the same load
// on server (each River variant in a fresh database of its own), returning its report.
func benchRiver(ctx context.Context, cfg bench.Config, riverDir, work, server string) (bench.Report, error) {
	bin := filepath.Join(work, "braid-bench-river")
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, ".")
	build.Dir = riverDir
	if b, err := build.CombinedOutput(); err != nil {
		return bench.Report{}, fmt.Errorf("build the River benchmark in %s: %w\n%s", riverDir, err, strings.TrimSpace(string(b)))
	}
	out := filepath.Join(work, "river.json")
	run := exec.CommandContext(ctx, bin, append(cfg.Args(), "--dsn", server, "--json", out)...)
	run.Stdout, run.Stderr = os.Stderr, os.Stderr
	run.Cancel = func() error { return run.Process.Signal(os.Interrupt) }
	run.WaitDelay = stopTimeout
	if err := run.Run(); err != nil {
		return bench.Report{}, fmt.Errorf("run the River benchmark: %w", err)
	}
	return bench.ReadReport(out)
}

// benchWrite prints the markdown table and writes the files asked for.
func benchWrite(rep bench.Report, f benchFlags, out Output) error {
	md := rep.Markdown()
	fmt.Fprint(out.Stdout, md)
	var errs []error
	if f.json != "" {
		errs = append(errs, rep.WriteJSON(f.json))
	}
	if f.markdown != "" {
		if err := os.WriteFile(f.markdown, []byte(md), 0o644); err != nil {
			errs = append(errs, fmt.Errorf("write markdown %s: %w", f.markdown, err))
		}
	}
	if f.plot != "" {
		errs = append(errs, rep.WritePNG(f.plot))
	}
	return errors.Join(errs...)
}
