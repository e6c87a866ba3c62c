package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

// Exit codes of the braid command.
const (
	ExitOK      = 0 // the command did what it was asked
	ExitFailure = 1 // it ran and failed (or, for dev, its ledger found lost or duplicated jobs)
	ExitUsage   = 2 // unknown subcommand, flag or argument, or a bad flag value
)

// command is one subcommand: run gets the arguments after the subcommand's name.
type command struct {
	name    string
	summary string
	run     func(ctx context.Context, args []string, out Output) int
}

// commands is the dispatch table: add a subcommand with one line here.
func commands() []command {
	return []command{
		{"dev", "run three throwaway local shards with demo workers and a demo producer, printing progress", runDev},
		{"bench", "benchmark braid (and, with -compare river, River) on the same servers; JSON, markdown, PNG", runBench},
	}
}

// Output is where a subcommand writes: results and progress to Stdout, logs and errors to
// Stderr.
type Output struct {
	Stdout io.Writer
	Stderr io.Writer
}

// Logger returns the subcommand's logger: slog text lines on Stderr.
func (o Output) Logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(o.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

// Main runs the braid command with args (without the program name) and returns its exit code.
// The first SIGINT or SIGTERM cancels the subcommand's context: subcommands stop cleanly on it.
// A second one ends the process at once (the signal's default action); servers started with
// localpg die with it.
func Main(args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	context.AfterFunc(ctx, stop)
	return Run(ctx, args, Output{Stdout: stdout, Stderr: stderr})
}

// Run dispatches args to their subcommand; the end of ctx asks the subcommand to stop.
func Run(ctx context.Context, args []string, out Output) int {
	if len(args) == 0 {
		usage(out.Stderr)
		return ExitUsage
	}
	name := args[0]
	switch name {
	case "help", "-h", "-help", "--help":
		usage(out.Stdout)
		return ExitOK
	}
	for _, c := range commands() {
		if c.name == name {
			return c.run(ctx, args[1:], out)
		}
	}
	fmt.Fprintf(out.Stderr, "braid: unknown subcommand %q\n\n", name)
	usage(out.Stderr)
	return ExitUsage
}

func usage(w io.Writer) {
	var b strings.Builder
	b.WriteString("usage: braid <subcommand> [flags]\n\nsubcommands:\n")
	for _, c := range commands() {
		fmt.Fprintf(&b, "  %-8s %s\n", c.name, c.summary)
	}
	b.WriteString("\n`braid <subcommand> -h` lists the subcommand's flags.\n")
	io.WriteString(w, b.String())
}

// parseFlags parses a subcommand's flags and refuses positional arguments. It returns the exit
// code to end with, or -1 to go on: -h prints the flags and ends with ExitOK, a bad flag or
// argument ends with ExitUsage after naming it.
func parseFlags(fs *flag.FlagSet, args []string, out Output) int {
	fs.SetOutput(out.Stderr)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return ExitOK
		}
		return ExitUsage // the flag package has named the flag and printed the flags
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(out.Stderr, "braid %s: unexpected argument %q (this subcommand takes flags only)\n", fs.Name(), fs.Arg(0))
		fs.Usage()
		return ExitUsage
	}
	return -1
}

// usageError ends a subcommand whose flag values are wrong, naming each problem on a line.
func usageError(fs *flag.FlagSet, out Output, err error) int {
	for line := range strings.SplitSeq(err.Error(), "\n") {
		fmt.Fprintf(out.Stderr, "braid %s: %s\n", fs.Name(), line)
	}
	return ExitUsage
}
