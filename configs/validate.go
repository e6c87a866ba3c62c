package configs

import (
	"fmt"
	"maps"
	"math"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/braidq/braid/router/placement"
)

var (
	clusterPattern   = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,63}$`)
	schemaPattern    = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)
	shardNamePattern = regexp.MustCompile(`^[a-z0-9-]{1,63}$`)
)

const (
	maxShardID = 32767
	maxLanes   = 256
)

// Validate reports every problem of c (after WithDefaults) at once, joined
// with errors.Join, each naming the field path and the offending value. It
// never shows a password.
func (c Config) Validate() error {
	c = c.WithDefaults()
	var scrub scrubber
	scrub.add(c.secrets()...)
	return scrub.join(c.problems())
}

// problems lists what is wrong with c, which must have been through
// WithDefaults.
func (c Config) problems() []string {
	var p problemList

	if c.Cluster == "" {
		p.add("cluster", "required (the braid cluster name)")
	} else if !clusterPattern.MatchString(c.Cluster) {
		p.add("cluster", "%q must match [A-Za-z0-9_.-]{1,63}", c.Cluster)
	}
	switch {
	case !schemaPattern.MatchString(c.Schema):
		p.add("schema", "%q must be a lowercase SQL identifier matching ^[a-z_][a-z0-9_]{0,62}$", c.Schema)
	case strings.HasPrefix(c.Schema, "pg_"):
		p.add("schema", "%q: names starting with pg_ are reserved by PostgreSQL", c.Schema)
	}

	shardsByName := c.validateShards(&p)
	c.validateCatalog(&p, shardsByName)
	c.validatePins(&p, shardsByName)
	validateQueueSettings(&p, "queues.default", c.Queues.Default)
	for _, name := range slices.Sorted(maps.Keys(c.Queues.Overrides)) {
		path := "queues.overrides." + name
		if strings.TrimSpace(name) == "" {
			p.add(path, "queue name %q is empty", name)
		}
		validateQueueSettings(&p, path, c.Queues.Overrides[name])
	}
	validatePool(&p, "pool", c.Pool)
	for _, t := range []struct {
		path string
		d    time.Duration
	}{
		{"timeouts.connect", c.Timeouts.Connect},
		{"timeouts.statement", c.Timeouts.Statement},
		{"timeouts.enqueue", c.Timeouts.Enqueue},
	} {
		if t.d <= 0 {
			p.add(t.path, "%s must be > 0", t.d)
		}
	}
	return p
}

// validateShards checks the shards and returns them by name.
func (c Config) validateShards(p *problemList) map[string]Shard {
	byName := map[string]Shard{}
	if len(c.Shards) == 0 {
		p.add("shards", "at least one shard is required")
		return byName
	}
	idAt := map[int]int{}
	nameAt := map[string]int{}
	databaseAt := map[string]int{}
	takesNewQueues := false
	for i, s := range c.Shards {
		path := fmt.Sprintf("shards[%d]", i)

		if s.ID < 1 || s.ID > maxShardID {
			p.add(path+".id", "%d must be in 1..%d", s.ID, maxShardID)
		} else if j, dup := idAt[s.ID]; dup {
			p.add(path+".id", "%d duplicates shards[%d].id", s.ID, j)
		} else {
			idAt[s.ID] = i
		}

		switch j, dup := nameAt[s.Name]; {
		case s.Name == "":
			p.add(path+".name", "required")
		case !shardNamePattern.MatchString(s.Name):
			p.add(path+".name", "%q must match [a-z0-9-]{1,63}", s.Name)
		case dup:
			p.add(path+".name", "%q duplicates shards[%d].name", s.Name, j)
		default:
			nameAt[s.Name] = i
			byName[s.Name] = s
		}

		if db, ok := validateDSN(p, path+".dsn", s.DSN); ok {
			if j, dup := databaseAt[db]; dup {
				p.add(path+".dsn", "%q points at the same database (%s) as shards[%d].dsn", s.DSN.String(), db, j)
			} else {
				databaseAt[db] = i
			}
		}

		state, err := placement.ParseState(s.State)
		if err != nil {
			p.add(path+".state", "%q must be joining, active or draining", s.State)
		}
		switch w := *s.Weight; {
		case math.IsNaN(w) || math.IsInf(w, 0) || w < 0:
			p.add(path+".weight", "%v must be a finite number >= 0", w)
		case w == 0 && err == nil && state != placement.StateDraining:
			article := "an"
			if state == placement.StateJoining {
				article = "a"
			}
			p.add(path+".weight", "0 must be > 0 for %s %s shard", article, state)
		}
		if err == nil && s.Placement().TakesNewQueues() {
			takesNewQueues = true
		}

		validatePool(p, path+".pool", *s.Pool)
	}
	if !takesNewQueues {
		p.add("shards", "no shard takes new queues: at least one must be active or joining with weight > 0")
	}
	return byName
}

func (c Config) validateCatalog(p *problemList, shards map[string]Shard) {
	switch cat := c.Catalog; {
	case cat.Shard == "" && cat.DSN == "":
		p.add("catalog", "required: a shard name, or {dsn: ...} for a database of its own")
	case cat.Shard != "" && cat.DSN != "":
		p.add("catalog", "set a shard name or a dsn, not both")
	case cat.Shard != "":
		if _, ok := shards[cat.Shard]; !ok && !slices.ContainsFunc(c.Shards, func(s Shard) bool { return s.Name == cat.Shard }) {
			p.add("catalog", "unknown shard %q", cat.Shard)
		}
	default:
		validateDSN(p, "catalog.dsn", cat.DSN)
	}
}

func (c Config) validatePins(p *problemList, shards map[string]Shard) {
	for _, queue := range slices.Sorted(maps.Keys(c.Placement.Pins)) {
		path := "placement.pins." + queue
		name := c.Placement.Pins[queue]
		if strings.TrimSpace(queue) == "" {
			p.add(path, "queue name %q is empty", queue)
		}
		s, ok := shards[name]
		switch {
		case !ok && !slices.ContainsFunc(c.Shards, func(s Shard) bool { return s.Name == name }):
			p.add(path, "unknown shard %q", name)
		case ok && s.State == placement.StateDraining.String():
			p.add(path, "shard %q is draining; a pinned queue cannot stay on it", name)
		}
	}
}

func validateQueueSettings(p *problemList, path string, q QueueSettings) {
	// Zero means "inherit", so only values that were set can be wrong.
	if q.Lanes < 0 || q.Lanes > maxLanes {
		p.add(path+".lanes", "%d must be in 1..%d", q.Lanes, maxLanes)
	}
	if q.MaxAttempts < 0 {
		p.add(path+".max_attempts", "%d must be >= 1", q.MaxAttempts)
	}
	if q.Deadline < 0 {
		p.add(path+".deadline", "%s must be > 0", q.Deadline)
	}
}

func validatePool(p *problemList, path string, pool Pool) {
	if pool.MaxConns < 1 {
		p.add(path+".max_conns", "%d must be >= 1", pool.MaxConns)
	}
	if pool.MinConns < 0 {
		p.add(path+".min_conns", "%d must be >= 0", pool.MinConns)
	} else if pool.MaxConns >= 1 && pool.MinConns > pool.MaxConns {
		p.add(path+".min_conns", "%d must be <= max_conns (%d)", pool.MinConns, pool.MaxConns)
	}
}

// validateDSN parses dsn with pgx and returns the database it names as
// host:port/database. Problems show the DSN redacted, and leave out the
// parser's explanation when it would repeat a password. Like every pgx parse,
// it applies libpq's PG* environment defaults and may read the files a DSN
// names (passfile, service file, TLS keys); it never connects.
func validateDSN(p *problemList, path string, dsn DSN) (string, bool) {
	if dsn == "" {
		p.add(path, "required")
		return "", false
	}
	cfg, err := pgx.ParseConfig(string(dsn))
	if err != nil {
		redacted, secrets := redactDSN(string(dsn))
		reason := parseReason(err)
		for _, s := range secrets {
			if s != "" && strings.Contains(reason, s) {
				reason = "malformed (details withheld: they would show the password)"
				break
			}
		}
		p.add(path, "cannot parse %q: %s", redacted, reason)
		return "", false
	}
	return fmt.Sprintf("%s:%d/%s", cfg.Host, cfg.Port, cfg.Database), true
}

// parseReason is pgx's explanation without its copy of the connection
// string, which pgx redacts only on a best-effort basis.
func parseReason(err error) string {
	msg := err.Error()
	if i := strings.LastIndex(msg, "`: "); i >= 0 && strings.HasPrefix(msg, "cannot parse `") {
		return msg[i+len("`: "):]
	}
	return msg
}

// secrets lists every password-like text in c's strings, for scrubbing.
func (c Config) secrets() []string {
	fields := []string{c.Cluster, c.Schema, c.Catalog.Shard}
	var out []string
	add := func(dsn DSN) {
		_, s := redactDSN(string(dsn))
		out = append(out, s...)
		fields = append(fields, string(dsn))
	}
	for _, s := range c.Shards {
		fields = append(fields, s.Name, s.State)
		add(s.DSN)
	}
	add(c.Catalog.DSN)
	for q, name := range c.Placement.Pins {
		fields = append(fields, q, name)
	}
	for q := range c.Queues.Overrides {
		fields = append(fields, q)
	}
	for _, f := range fields {
		out = append(out, secretsIn(f)...)
	}
	return out
}

// problemList collects "path: message" problems.
type problemList []string

func (p *problemList) add(path, format string, args ...any) {
	*p = append(*p, path+": "+fmt.Sprintf(format, args...))
}
