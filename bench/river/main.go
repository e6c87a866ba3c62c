// Command river runs braid's benchmark harness (package bench) against River
// (github.com/riverqueue/river with the riverpgxv5 driver), in its own module so that River
// never enters braid's dependencies. `braid bench --compare river` runs it as a child process
// with the same load flags and merges its JSON report; it can also run alone:
//
//	go run . --dsn postgres://braid@127.0.0.1:5432/postgres --mode depth --json river.json
//
// Each variant (default, tuned) runs in a fresh database of the server --dsn names (its role
// needs CREATEDB), dropped afterwards.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"time"

	"github.com/braidq/braid/bench"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "river bench:", err)
		os.Exit(1)
	}
}

// riverVersion is the River module this binary was built with.
var riverVersion = func() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, m := range bi.Deps {
			if m.Path == "github.com/riverqueue/river" {
				return m.Version
			}
		}
	}
	return "unknown"
}()

func run(ctx context.Context, args []string) error {
	var cfg bench.Config
	fs := flag.NewFlagSet("river", flag.ContinueOnError)
	cfg.RegisterFlags(fs)
	dsn := fs.String("dsn", "", "a database on the server to benchmark on (required; its role needs CREATEDB)")
	variants := fs.String("variants", VariantDefault+","+VariantTuned, "River settings to run, comma-separated: default, tuned")
	out := fs.String("json", "", "write the report here (required)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var errs []error
	if *dsn == "" {
		errs = append(errs, errors.New("--dsn is required"))
	}
	if *out == "" {
		errs = append(errs, errors.New("--json is required"))
	}
	errs = append(errs, cfg.Validate())
	if err := errors.Join(errs...); err != nil {
		return err
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	var runs []bench.Result
	for _, v := range strings.Split(*variants, ",") {
		res, err := runVariant(ctx, cfg, strings.TrimSpace(v), *dsn, logger)
		if err != nil {
			return err
		}
		runs = append(runs, res)
	}
	return bench.NewReport(runs...).WriteJSON(*out)
}

// runVariant runs one variant in a fresh database.
func runVariant(ctx context.Context, cfg bench.Config, variant, dsn string, logger *slog.Logger) (bench.Result, error) {
	name := fmt.Sprintf("river_bench_%s_%d", variant, time.Now().UnixNano())
	db, drop, err := bench.FreshDatabase(ctx, dsn, name)
	if err != nil {
		return bench.Result{}, err
	}
	defer func() { // a database left behind does not void the results
		if err := drop(context.WithoutCancel(ctx)); err != nil {
			logger.Warn("benchmark database left behind", "err", err)
		}
	}()
	sys, err := openSystem(ctx, variant, db, cfg.Workers, logger)
	if err != nil {
		return bench.Result{}, err
	}
	defer sys.close()
	return bench.Run(ctx, cfg, sys, bench.Deps{Logger: logger})
}
