package bench

import (
	"cmp"
	"errors"
	"flag"
	"fmt"
	"strconv"
	"time"
)

// Mode is how the producer loads the System.
type Mode string

// Modes; see the package doc.
const (
	ModeDrain   Mode = "drain"
	ModeOffered Mode = "offered"
	ModeDepth   Mode = "depth"
)

// Config is one run's load. The same Config drives every System of an invocation (the River
// child gets it through Args).
type Config struct {
	Mode         Mode
	Rate         float64       // offered: jobs/s offered
	Jobs         int           // drain: the backlog
	Depth        int           // depth: jobs kept enqueued and not yet completed
	Workers      int           // concurrent handlers
	Duration     time.Duration // offered, depth: the measured window; drain: the longest wait for the backlog
	Warmup       time.Duration // offered, depth: load before the window, not measured
	PayloadBytes int           // about this many bytes of JSON args per job
	Work         time.Duration // each handler's simulated work
	Batch        int           // most jobs per enqueue call
	Producers    int           // concurrent enqueue loops
	CatchUp      time.Duration // offered: how far a late producer may catch up at once
	DrainTimeout time.Duration // offered, depth: the longest wait for the backlog after the window
}

// Defaults for Config fields left zero.
const (
	DefaultMode         = ModeDepth
	DefaultRate         = 5000
	DefaultJobs         = 100_000
	DefaultDepth        = 10_000
	DefaultWorkers      = 100
	DefaultDuration     = 60 * time.Second
	DefaultWarmup       = 10 * time.Second
	DefaultPayloadBytes = 100
	DefaultBatch        = 500
	DefaultProducers    = 2
	DefaultCatchUp      = 100 * time.Millisecond
	DefaultDrainTimeout = 60 * time.Second
)

// WithDefaults returns c with zero fields set to the defaults (Work and Warmup may be zero).
func (c Config) WithDefaults() Config {
	c.Mode = cmp.Or(c.Mode, DefaultMode)
	c.Rate = cmp.Or(c.Rate, DefaultRate)
	c.Jobs = cmp.Or(c.Jobs, DefaultJobs)
	c.Depth = cmp.Or(c.Depth, DefaultDepth)
	c.Workers = cmp.Or(c.Workers, DefaultWorkers)
	c.Duration = cmp.Or(c.Duration, DefaultDuration)
	c.PayloadBytes = cmp.Or(c.PayloadBytes, DefaultPayloadBytes)
	c.Batch = cmp.Or(c.Batch, DefaultBatch)
	c.Producers = cmp.Or(c.Producers, DefaultProducers)
	c.CatchUp = cmp.Or(c.CatchUp, DefaultCatchUp)
	c.DrainTimeout = cmp.Or(c.DrainTimeout, DefaultDrainTimeout)
	return c
}

// Validate returns every problem of the configuration at once, each naming its field.
func (c Config) Validate() error {
	var errs []error
	bad := func(field string, v any, why string) {
		errs = append(errs, fmt.Errorf("bench config: %s %v: %s", field, v, why))
	}
	switch c.Mode {
	case ModeDrain, ModeOffered, ModeDepth:
	default:
		bad("mode", strconv.Quote(string(c.Mode)), "must be drain, offered or depth")
	}
	if !(c.Rate > 0) {
		bad("rate", c.Rate, "must be positive")
	}
	if c.Jobs < 1 {
		bad("jobs", c.Jobs, "must be at least 1")
	}
	if c.Depth < 1 {
		bad("depth", c.Depth, "must be at least 1")
	}
	if c.Workers < 1 {
		bad("workers", c.Workers, "must be at least 1")
	}
	if c.Duration < time.Second {
		bad("duration", c.Duration, "must be at least 1s")
	}
	if c.Warmup < 0 {
		bad("warmup", c.Warmup, "must not be negative")
	}
	if c.Mode != ModeDrain && (c.Duration%time.Second != 0 || c.Warmup%time.Second != 0) {
		bad("duration/warmup", fmt.Sprint(c.Duration, "/", c.Warmup), "must be whole seconds: the window is counted in one-second samples")
	}
	if c.PayloadBytes < 0 || c.PayloadBytes > 1<<20 {
		bad("payload-bytes", c.PayloadBytes, "must be within 0..1048576")
	}
	if c.Work < 0 {
		bad("work", c.Work, "must not be negative")
	}
	if c.Batch < 1 || c.Batch > 10_000 {
		bad("batch", c.Batch, "must be within 1..10000")
	}
	if c.Producers < 1 {
		bad("producers", c.Producers, "must be at least 1")
	}
	if c.CatchUp <= 0 {
		bad("catch-up", c.CatchUp, "must be positive")
	}
	if c.DrainTimeout <= 0 {
		bad("drain-timeout", c.DrainTimeout, "must be positive")
	}
	return errors.Join(errs...)
}

// RegisterFlags binds the configuration's fields to flags of fs (names as in `braid bench`),
// setting them to the defaults shown; a flag given as 0 stays 0 (and Validate names it).
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	c.Mode = DefaultMode
	fs.Func("mode", "drain | offered | depth (default depth)", func(s string) error { c.Mode = Mode(s); return nil })
	fs.Float64Var(&c.Rate, "rate", DefaultRate, "offered: jobs/s offered")
	fs.IntVar(&c.Jobs, "jobs", DefaultJobs, "drain: jobs enqueued before the workers start")
	fs.IntVar(&c.Depth, "depth", DefaultDepth, "depth: jobs kept enqueued and not yet completed")
	fs.IntVar(&c.Workers, "workers", DefaultWorkers, "concurrent job handlers")
	fs.DurationVar(&c.Duration, "duration", DefaultDuration, "measured window (drain: the longest wait)")
	fs.DurationVar(&c.Warmup, "warmup", DefaultWarmup, "load before the window, not measured")
	fs.IntVar(&c.PayloadBytes, "payload-bytes", DefaultPayloadBytes, "bytes of JSON args per job")
	fs.Func("work-ms", "each handler's simulated work in ms (default 0)", func(s string) error {
		ms, err := strconv.ParseFloat(s, 64)
		c.Work = time.Duration(ms * float64(time.Millisecond))
		return err
	})
	fs.IntVar(&c.Batch, "batch", DefaultBatch, "most jobs per enqueue call")
	fs.IntVar(&c.Producers, "producers", DefaultProducers, "concurrent enqueue loops")
	fs.DurationVar(&c.CatchUp, "catch-up", DefaultCatchUp, "offered: how far a late producer may catch up at once")
	fs.DurationVar(&c.DrainTimeout, "drain-timeout", DefaultDrainTimeout, "longest wait for the backlog after the window")
}

// Args renders the configuration as the flags RegisterFlags reads, so a child process runs
// the same load.
func (c Config) Args() []string {
	return []string{
		"--mode", string(c.Mode),
		"--rate", strconv.FormatFloat(c.Rate, 'g', -1, 64),
		"--jobs", strconv.Itoa(c.Jobs),
		"--depth", strconv.Itoa(c.Depth),
		"--workers", strconv.Itoa(c.Workers),
		"--duration", c.Duration.String(),
		"--warmup", c.Warmup.String(),
		"--payload-bytes", strconv.Itoa(c.PayloadBytes),
		"--work-ms", strconv.FormatFloat(float64(c.Work)/float64(time.Millisecond), 'g', -1, 64),
		"--batch", strconv.Itoa(c.Batch),
		"--producers", strconv.Itoa(c.Producers),
		"--catch-up", c.CatchUp.String(),
		"--drain-timeout", c.DrainTimeout.String(),
	}
}
