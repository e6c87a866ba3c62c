package configs

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/braidq/braid/router/placement"
)

// env is a hermetic environment for Parse and Load.
func env(vars map[string]string) func(string) (string, bool) {
	return func(name string) (string, bool) {
		v, ok := vars[name]
		return v, ok
	}
}

var noEnv = env(nil)

// problemLines splits a joined error into its problems.
func problemLines(t *testing.T, err error) []string {
	t.Helper()
	require.Error(t, err)
	var joined interface{ Unwrap() []error }
	if errors.As(err, &joined) {
		var out []string
		for _, e := range joined.Unwrap() {
			out = append(out, e.Error())
		}
		return out
	}
	return []string{err.Error()}
}

func TestLoadExample(t *testing.T) {
	t.Parallel()
	cfg, err := Load("example.yaml", noEnv)
	require.NoError(t, err)

	require.Equal(t, "dev", cfg.Cluster)
	require.Equal(t, "braid", cfg.Schema)
	require.Len(t, cfg.Shards, 3)
	require.Equal(t, DSN("postgres://braid:braid-a@127.0.0.1:54321/braid?sslmode=disable"), cfg.Shards[0].DSN)
	require.Equal(t, DSN("host=127.0.0.1 port=54323 dbname=braid user=braid password='braid-c' sslmode=disable"), cfg.Shards[2].DSN)
	require.Equal(t, []placement.Shard{
		{ID: 1, Weight: 1, State: placement.StateActive},
		{ID: 2, Weight: 2, State: placement.StateActive},
		{ID: 3, Weight: 1, State: placement.StateActive},
	}, cfg.PlacementShards())
	require.Equal(t, Catalog{Shard: "pg-a"}, cfg.Catalog)
	require.Equal(t, map[string]int16{"billing": 2}, cfg.PinnedShardIDs())

	require.Equal(t, Pool{MaxConns: 20, MinConns: 2}, *cfg.Shards[0].Pool)
	require.Equal(t, Pool{MaxConns: 8, MinConns: 2}, *cfg.Shards[2].Pool, "a shard pool overrides the root field by field")
	require.Equal(t, Timeouts{Connect: 5 * time.Second, Statement: 30 * time.Second, Enqueue: 5 * time.Second}, cfg.Timeouts)

	require.Equal(t, Queue{Lanes: 8, DLQ: true, MaxAttempts: 5, Deadline: 5 * time.Minute}, cfg.Queues.Queue("emails"))
	require.Equal(t, Queue{Lanes: 4, DLQ: false, MaxAttempts: 25, Deadline: 30 * time.Minute}, cfg.Queues.Queue("reports"))
	require.Equal(t, Queue{Lanes: 4, DLQ: true, MaxAttempts: 25, Deadline: 5 * time.Minute}, cfg.Queues.Queue("anything-else"))

	// The placement the config describes is usable as is.
	home, err := placement.Home("billing", cfg.PlacementShards(), cfg.PinnedShardIDs())
	require.NoError(t, err)
	require.Equal(t, int16(2), home)
}

func TestLoadExampleTakesPasswordsFromTheEnvironment(t *testing.T) {
	t.Parallel()
	cfg, err := Load("example.yaml", env(map[string]string{"PG_A_PASSWORD": "s3cr3t-PW", "PG_C_PASSWORD": "c-pass"}))
	require.NoError(t, err)
	require.Equal(t, DSN("postgres://braid:s3cr3t-PW@127.0.0.1:54321/braid?sslmode=disable"), cfg.Shards[0].DSN)
	require.Equal(t, "postgres://braid:xxxxx@127.0.0.1:54321/braid?sslmode=disable", cfg.Shards[0].DSN.String())
	require.Equal(t, "host=127.0.0.1 port=54323 dbname=braid user=braid password=xxxxx sslmode=disable", cfg.Shards[2].DSN.String())
}

func TestLoadMissingFile(t *testing.T) {
	t.Parallel()
	_, err := Load(filepath.Join(t.TempDir(), "nope.yaml"), noEnv)
	require.ErrorIs(t, err, os.ErrNotExist)
}

// validYAML is a valid config; the table tests below break one thing each.
const validYAML = `cluster: prod-eu
schema: braid
shards:
  - id: 1
    name: pg-a
    dsn: postgres://braid:s3cr3t-PW@10.0.0.1:5432/braid
    weight: 1.0
    state: active
  - id: 2
    name: pg-b
    dsn: host=10.0.0.2 user=braid password=s3cr3t-PW dbname=braid
    state: joining
  - id: 3
    name: pg-c
    dsn: postgres://braid@10.0.0.3:5432/braid
    weight: 0
    state: draining
    pool: {max_conns: 10, min_conns: 1}
catalog: pg-a
placement:
  pins: {billing: pg-b}
queues:
  default: {lanes: 4, dlq: true, max_attempts: 25, deadline: 5m}
  overrides:
    emails: {lanes: 8, max_attempts: 5}
pool: {max_conns: 20, min_conns: 2}
timeouts: {connect: 5s, statement: 30s, enqueue: 5s}
`

func TestParseValid(t *testing.T) {
	t.Parallel()
	cfg, err := Parse([]byte(validYAML), noEnv)
	require.NoError(t, err)
	require.NoError(t, cfg.Validate(), "a loaded config validates again")
	require.Equal(t, 1.0, *cfg.Shards[1].Weight, "weight defaults to 1")
	require.Equal(t, 0.0, *cfg.Shards[2].Weight, "an explicit 0 stays 0")
}

func TestParseReportsProblems(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		replace [][2]string // applied to validYAML in order
		want    string      // the one problem, exactly
	}{
		{
			name:    "a missing cluster name is reported",
			replace: [][2]string{{"cluster: prod-eu\n", ""}},
			want:    "cluster: required (the braid cluster name)",
		},
		{
			name:    "a cluster name with a space is reported with its value",
			replace: [][2]string{{"cluster: prod-eu", "cluster: prod eu"}},
			want:    `cluster: "prod eu" must match [A-Za-z0-9_.-]{1,63}`,
		},
		{
			name:    "an uppercase schema is reported",
			replace: [][2]string{{"schema: braid", "schema: Braid"}},
			want:    `schema: "Braid" must be a lowercase SQL identifier matching ^[a-z_][a-z0-9_]{0,62}$`,
		},
		{
			name:    "a pg_ schema is reserved",
			replace: [][2]string{{"schema: braid", "schema: pg_braid"}},
			want:    `schema: "pg_braid": names starting with pg_ are reserved by PostgreSQL`,
		},
		{
			name:    "a duplicate shard id names both shards",
			replace: [][2]string{{"id: 2", "id: 1"}},
			want:    "shards[1].id: 1 duplicates shards[0].id",
		},
		{
			name:    "a shard id out of range is reported",
			replace: [][2]string{{"id: 3", "id: 40000"}},
			want:    "shards[2].id: 40000 must be in 1..32767",
		},
		{
			name:    "shard id 0 is not a shard id",
			replace: [][2]string{{"id: 3", "id: 0"}},
			want:    "shards[2].id: 0 must be in 1..32767",
		},
		{
			name:    "a duplicate shard name is reported",
			replace: [][2]string{{"name: pg-b", "name: pg-a"}, {"billing: pg-b", "billing: pg-a"}},
			want:    `shards[1].name: "pg-a" duplicates shards[0].name`,
		},
		{
			name:    "an uppercase shard name is reported",
			replace: [][2]string{{"name: pg-c", "name: PG-C"}},
			want:    `shards[2].name: "PG-C" must match [a-z0-9-]{1,63}`,
		},
		{
			name:    "weight 0 on an active shard is reported",
			replace: [][2]string{{"weight: 1.0", "weight: 0"}},
			want:    "shards[0].weight: 0 must be > 0 for an active shard",
		},
		{
			name:    "weight 0 on a joining shard is reported",
			replace: [][2]string{{"state: joining", "state: joining\n    weight: 0"}},
			want:    "shards[1].weight: 0 must be > 0 for a joining shard",
		},
		{
			name:    "a negative weight is reported",
			replace: [][2]string{{"weight: 1.0", "weight: -2"}},
			want:    "shards[0].weight: -2 must be a finite number >= 0",
		},
		{
			name:    "an unknown state is reported",
			replace: [][2]string{{"state: joining", "state: retired"}},
			want:    `shards[1].state: "retired" must be joining, active or draining`,
		},
		{
			name:    "an unparseable URL DSN is reported redacted",
			replace: [][2]string{{"10.0.0.1:5432", "10.0.0.1:54x32"}},
			want:    `shards[0].dsn: cannot parse "postgres://braid:xxxxx@10.0.0.1:54x32/braid": invalid port`,
		},
		{
			name:    "an unparseable keyword/value DSN is reported redacted",
			replace: [][2]string{{"dbname=braid", "dbname=braid port=abc"}},
			want:    `shards[1].dsn: cannot parse "host=10.0.0.2 user=braid password=xxxxx dbname=braid port=abc": invalid port`,
		},
		{
			name:    "two shards on one database are reported",
			replace: [][2]string{{"10.0.0.3:5432", "10.0.0.1:5432"}},
			want:    `shards[2].dsn: "postgres://braid@10.0.0.1:5432/braid" points at the same database (10.0.0.1:5432/braid) as shards[0].dsn`,
		},
		{
			name:    "a missing DSN is reported",
			replace: [][2]string{{"    dsn: postgres://braid@10.0.0.3:5432/braid\n", ""}},
			want:    "shards[2].dsn: required",
		},
		{
			name:    "a catalog on an unknown shard is reported",
			replace: [][2]string{{"catalog: pg-a", "catalog: pg-x"}},
			want:    `catalog: unknown shard "pg-x"`,
		},
		{
			name:    "a missing catalog is reported",
			replace: [][2]string{{"catalog: pg-a\n", ""}},
			want:    "catalog: required: a shard name, or {dsn: ...} for a database of its own",
		},
		{
			name:    "a catalog DSN that does not parse is reported redacted",
			replace: [][2]string{{"catalog: pg-a", "catalog: {dsn: 'postgres://cat:s3cr3t-PW@10.0.0.9:x/catalog'}"}},
			want:    `catalog.dsn: cannot parse "postgres://cat:xxxxx@10.0.0.9:x/catalog": invalid port`,
		},
		{
			name:    "a pin to an unknown shard is reported",
			replace: [][2]string{{"billing: pg-b", "billing: pg-x"}},
			want:    `placement.pins.billing: unknown shard "pg-x"`,
		},
		{
			name:    "a pin to a draining shard is reported",
			replace: [][2]string{{"billing: pg-b", "billing: pg-c"}},
			want:    `placement.pins.billing: shard "pg-c" is draining; a pinned queue cannot stay on it`,
		},
		{
			name:    "too many lanes are reported",
			replace: [][2]string{{"lanes: 8", "lanes: 300"}},
			want:    "queues.overrides.emails.lanes: 300 must be in 1..256",
		},
		{
			name:    "negative lanes in the defaults are reported",
			replace: [][2]string{{"lanes: 4", "lanes: -1"}},
			want:    "queues.default.lanes: -1 must be in 1..256",
		},
		{
			name:    "a negative max_attempts is reported",
			replace: [][2]string{{"max_attempts: 5", "max_attempts: -5"}},
			want:    "queues.overrides.emails.max_attempts: -5 must be >= 1",
		},
		{
			name:    "a negative deadline is reported",
			replace: [][2]string{{"deadline: 5m", "deadline: -5m"}},
			want:    "queues.default.deadline: -5m0s must be > 0",
		},
		{
			name:    "a negative timeout is reported",
			replace: [][2]string{{"statement: 30s", "statement: -1s"}},
			want:    "timeouts.statement: -1s must be > 0",
		},
		{
			name:    "min_conns above max_conns is reported for the shard that overrides it",
			replace: [][2]string{{"{max_conns: 10, min_conns: 1}", "{max_conns: 10, min_conns: 11}"}},
			want:    "shards[2].pool.min_conns: 11 must be <= max_conns (10)",
		},
		{
			name:    "a shard set that takes no new queues is reported",
			replace: [][2]string{{"weight: 1.0\n    state: active", "state: draining"}, {"state: joining", "state: draining"}, {"pins: {billing: pg-b}", "pins: {}"}, {"catalog: pg-a", "catalog: pg-b"}},
			want:    "shards: no shard takes new queues: at least one must be active or joining with weight > 0",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			in := validYAML
			for _, r := range tt.replace {
				require.Contains(t, in, r[0], "test setup: nothing to replace")
				in = strings.Replace(in, r[0], r[1], 1)
			}
			_, err := Parse([]byte(in), noEnv)
			require.Equal(t, []string{tt.want}, problemLines(t, err))
			require.NotContains(t, err.Error(), "s3cr3t-PW")
		})
	}
}

func TestParseReportsAllProblemsAtOnce(t *testing.T) {
	t.Parallel()
	in := strings.NewReplacer(
		"id: 2", "id: 1",
		"weight: 1.0", "weight: 0",
		"billing: pg-b", "billing: pg-x",
		"10.0.0.1:5432", "10.0.0.1:bad",
	).Replace(validYAML)
	_, err := Parse([]byte(in), noEnv)
	require.Equal(t, []string{
		"shards[0].dsn: cannot parse \"postgres://braid:xxxxx@10.0.0.1:bad/braid\": invalid port",
		"shards[0].weight: 0 must be > 0 for an active shard",
		"shards[1].id: 1 duplicates shards[0].id",
		`placement.pins.billing: unknown shard "pg-x"`,
	}, problemLines(t, err))
}

func TestParseDecodesStrictly(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   string
		want string
	}{
		{
			name: "an unknown field is named with its line",
			in:   strings.Replace(validYAML, "    state: joining\n", "    state: joining\n    colour: blue\n", 1),
			want: "shards[1].colour (line 13): unknown field",
		},
		{
			name: "an unknown top-level field is named with its line",
			in:   validYAML + "replicas: 3\n",
			want: "replicas (line 28): unknown field",
		},
		{
			name: "a misspelt nested field is named",
			in:   strings.Replace(validYAML, "max_attempts: 5", "max_attempt: 5", 1),
			want: "queues.overrides.emails.max_attempt (line 25): unknown field",
		},
		{
			name: "a string where a number belongs is named",
			in:   strings.Replace(validYAML, "id: 3", "id: three", 1),
			want: "shards[2].id (line 13): want int, got string",
		},
		{
			name: "an unknown field inside the catalog is named",
			in:   strings.Replace(validYAML, "catalog: pg-a", "catalog: {dsn: 'postgres://c@h/db', schema: x}", 1),
			want: "catalog.schema (line 19): unknown field",
		},
		{
			name: "a duplicate key is named",
			in:   strings.Replace(validYAML, "cluster: prod-eu\n", "cluster: prod-eu\ncluster: prod-us\n", 1),
			want: "line 2: mapping key \"cluster\" already defined at [1:1]",
		},
		{
			name: "a YAML syntax error names its line and shows no source",
			in:   strings.Replace(validYAML, "pins: {billing: pg-b}", "pins: {billing: pg-b", 1),
			want: "line 22: ',' or '}' must be specified",
		},
		{
			name: "an empty file is reported",
			in:   "# nothing\n",
			want: "config is empty",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := Parse([]byte(tt.in), noEnv)
			require.Error(t, err)
			require.Contains(t, err.Error(), tt.want)
			require.NotContains(t, err.Error(), "s3cr3t-PW")
			require.NotContains(t, err.Error(), "\n", "one problem, and no source excerpt")
		})
	}
}

func TestParseCatalogForms(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		yaml string
		want Catalog
	}{
		{name: "a shard name", yaml: "catalog: pg-b", want: Catalog{Shard: "pg-b"}},
		{name: "a quoted shard name", yaml: `catalog: "pg-b"`, want: Catalog{Shard: "pg-b"}},
		{name: "a flow mapping with a dsn", yaml: "catalog: {dsn: 'postgres://cat@10.0.0.9/catalog'}", want: Catalog{DSN: "postgres://cat@10.0.0.9/catalog"}},
		{name: "a block mapping with a dsn", yaml: "catalog:\n  dsn: postgres://cat@10.0.0.9/catalog", want: Catalog{DSN: "postgres://cat@10.0.0.9/catalog"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg, err := Parse([]byte(strings.Replace(validYAML, "catalog: pg-a", tt.yaml, 1)), noEnv)
			require.NoError(t, err)
			require.Equal(t, tt.want, cfg.Catalog)
		})
	}

	t.Run("a list is not a catalog", func(t *testing.T) {
		t.Parallel()
		_, err := Parse([]byte(strings.Replace(validYAML, "catalog: pg-a", "catalog: [pg-a]", 1)), noEnv)
		require.ErrorContains(t, err, "catalog (line 19): want a shard name or {dsn: ...}")
	})
}

func TestParseExpandsEnvironment(t *testing.T) {
	t.Parallel()
	base := strings.NewReplacer(
		"cluster: prod-eu", "cluster: ${CLUSTER}",
		"postgres://braid:s3cr3t-PW@10.0.0.1:5432/braid", "postgres://braid:${PG_A_PASSWORD}@${PG_A_HOST:-10.0.0.1}:5432/braid",
		"weight: 1.0", "weight: ${PG_A_WEIGHT:-1.5}",
		"max_attempts: 25", "max_attempts: '${MAX_ATTEMPTS:-25}'", // {}-flow style needs quotes
		"deadline: 5m", "deadline: '${DEADLINE:-5m}'",
	).Replace(validYAML)

	t.Run("set variables and defaults are substituted, typed by their field", func(t *testing.T) {
		t.Parallel()
		cfg, err := Parse([]byte(base), env(map[string]string{
			"CLUSTER": "prod-eu", "PG_A_PASSWORD": "pa$$word", "PG_A_HOST": "", "MAX_ATTEMPTS": "7", "DEADLINE": "90s",
		}))
		require.NoError(t, err)
		require.Equal(t, "prod-eu", cfg.Cluster)
		require.Equal(t, DSN("postgres://braid:pa$$word@10.0.0.1:5432/braid"), cfg.Shards[0].DSN, "an empty variable takes the default")
		require.Equal(t, 1.5, *cfg.Shards[0].Weight)
		require.Equal(t, 7, cfg.Queues.Default.MaxAttempts)
		require.Equal(t, 90*time.Second, cfg.Queues.Default.Deadline)
	})

	t.Run("a value is literal text, never YAML", func(t *testing.T) {
		t.Parallel()
		cfg, err := Parse([]byte(base), env(map[string]string{
			"CLUSTER":       "prod-eu",
			"PG_A_PASSWORD": "a'b\" #c\nschema: evil",
		}))
		require.Error(t, err, "the password makes the URL unparseable")
		require.NotContains(t, err.Error(), "evil")
		require.Empty(t, cfg.Cluster)

		cfg, err = Parse([]byte(strings.Replace(base, "cluster: ${CLUSTER}", "cluster: ${CLUSTER} # comment", 1)), env(map[string]string{
			"CLUSTER": "prod-eu", "PG_A_PASSWORD": "x",
		}))
		require.NoError(t, err)
		require.Equal(t, "prod-eu", cfg.Cluster)
	})

	t.Run("a missing variable without default names the variable and the field", func(t *testing.T) {
		t.Parallel()
		_, err := Parse([]byte(base), env(map[string]string{"CLUSTER": "prod-eu"}))
		require.Equal(t, []string{
			"shards[0].dsn (line 6): environment variable PG_A_PASSWORD is not set and has no default",
		}, problemLines(t, err))
	})

	t.Run("every missing variable is reported, with the validation problems", func(t *testing.T) {
		t.Parallel()
		in := strings.Replace(base, "id: 2", "id: 1", 1)
		_, err := Parse([]byte(in), noEnv)
		require.Equal(t, []string{
			"cluster (line 1): environment variable CLUSTER is not set and has no default",
			"shards[0].dsn (line 6): environment variable PG_A_PASSWORD is not set and has no default",
			"cluster: required (the braid cluster name)",
			"shards[1].id: 1 duplicates shards[0].id",
		}, problemLines(t, err))
	})

	t.Run("$${ is a literal ${ and a lone $ is kept", func(t *testing.T) {
		t.Parallel()
		in := strings.Replace(validYAML, "s3cr3t-PW@10.0.0.1", "pa$${x}$y@10.0.0.1", 1)
		cfg, err := Parse([]byte(in), noEnv)
		require.NoError(t, err)
		require.Equal(t, DSN("postgres://braid:pa${x}$y@10.0.0.1:5432/braid"), cfg.Shards[0].DSN)
	})

	t.Run("malformed references are reported without echoing values", func(t *testing.T) {
		t.Parallel()
		in := strings.Replace(validYAML, "cluster: prod-eu", "cluster: ${1BAD}", 1)
		in = strings.Replace(in, "s3cr3t-PW@", "${OPEN@", 1)
		_, err := Parse([]byte(in), noEnv)
		lines := problemLines(t, err)
		require.Contains(t, lines, `cluster (line 1): invalid environment variable name "1BAD" (want [A-Za-z_][A-Za-z0-9_]*)`)
		require.Contains(t, lines, "shards[0].dsn (line 6): unterminated ${ (want ${NAME} or ${NAME:-default})")
	})

	t.Run("keys are not expanded", func(t *testing.T) {
		t.Parallel()
		in := strings.Replace(validYAML, "pins: {billing: pg-b}", "pins:\n    ${QUEUE}: pg-b", 1)
		cfg, err := Parse([]byte(in), env(map[string]string{"QUEUE": "billing"}))
		require.NoError(t, err)
		require.Equal(t, map[string]string{"${QUEUE}": "pg-b"}, cfg.Placement.Pins)
	})
}

func TestErrorsNeverShowPasswords(t *testing.T) {
	t.Parallel()
	const pw = "s3cr3t-PW"
	dsns := []string{
		"postgres://braid:" + pw + "@10.0.0.1:54x32/braid",
		"postgres://braid:" + pw + "@10.0.0.1:5432/braid?connect_timeout=abc",
		"postgres://braid:" + pw + "@10.0.0.1:5432/braid?sslmode=bogus",
		"postgres://braid:" + pw + "@10.0.0.1:5432/braid?target_session_attrs=" + pw,
		"postgres://braid@10.0.0.1:5432/braid?password=" + pw + "&port=x",
		"postgres://braid:" + pw + "/braid",
		"postgres://braid:pa/" + pw + "@10.0.0.1/braid?port=x",
		"postgres://braid:" + pw + "@[::1/braid",
		"host=10.0.0.1 password=" + pw + " port=abc",
		"host=10.0.0.1 password='" + pw + " port=5432",
		"host=10.0.0.1 password=" + pw + " sslmode=bogus",
		pw + " host=10.0.0.1",
		"host=10.0.0.1 " + pw,
		"host=10.0.0.1 password=ok" + pw + " port",
	}
	for _, dsn := range dsns {
		t.Run(dsn, func(t *testing.T) {
			t.Parallel()
			in := strings.Replace(validYAML, "postgres://braid:s3cr3t-PW@10.0.0.1:5432/braid", "'"+strings.ReplaceAll(dsn, "'", "''")+"'", 1)
			_, err := Parse([]byte(in), noEnv)
			require.Error(t, err)
			require.Contains(t, err.Error(), "shards[0].dsn")
			require.NotContains(t, err.Error(), pw)

			err = Config{Cluster: "c", Shards: []Shard{{ID: 1, Name: "a", DSN: DSN(dsn)}}, Catalog: Catalog{DSN: DSN(dsn)}}.Validate()
			require.Error(t, err)
			require.NotContains(t, err.Error(), pw)
		})
	}

	t.Run("a password pasted into another field is not shown either", func(t *testing.T) {
		t.Parallel()
		in := strings.Replace(validYAML, "name: pg-c", "name: postgres://braid:s3cr3t-PW@10.0.0.3", 1)
		_, err := Parse([]byte(in), noEnv)
		require.ErrorContains(t, err, "shards[2].name")
		require.NotContains(t, err.Error(), pw)
	})
}

func TestDSNPrintsRedacted(t *testing.T) {
	t.Parallel()
	cfg, err := Parse([]byte(validYAML), noEnv)
	require.NoError(t, err)

	var logs bytes.Buffer
	logger := slog.New(slog.NewJSONHandler(&logs, nil))
	logger.Info("shard", "shard", cfg.Shards[0], "dsn", cfg.Shards[1].DSN)
	jsonCfg, err := json.Marshal(cfg)
	require.NoError(t, err)

	for _, out := range []string{
		fmt.Sprint(cfg.Shards[0]),
		fmt.Sprintf("%v %+v %#v %s %q", cfg, cfg, cfg, cfg.Shards[0].DSN, cfg.Shards[1].DSN),
		logs.String(),
		string(jsonCfg),
	} {
		require.NotContains(t, out, "s3cr3t-PW")
		require.Contains(t, out, "xxxxx")
	}
	require.Contains(t, logs.String(), `"dsn":"postgres://braid:xxxxx@10.0.0.1:5432/braid"`)
	require.Contains(t, logs.String(), `"shard_id":1`)
}

func TestWithDefaultsLeavesItsInputAlone(t *testing.T) {
	t.Parallel()
	in := Config{Cluster: "c", Shards: []Shard{{ID: 1, Name: "a", DSN: "postgres://h/db", Pool: &Pool{MaxConns: 3}}}}
	out := in.WithDefaults()
	require.Nil(t, in.Shards[0].Weight)
	require.Empty(t, in.Shards[0].State)
	require.Equal(t, Pool{MaxConns: 3}, *in.Shards[0].Pool)
	require.Equal(t, Pool{MaxConns: 3}, *out.Shards[0].Pool)
	require.Equal(t, 1.0, *out.Shards[0].Weight)
	require.Equal(t, "active", out.Shards[0].State)
	require.Equal(t, "braid", out.Schema)

	// A config built in Go validates with the same rules.
	in.Catalog = Catalog{Shard: "a"}
	require.NoError(t, in.Validate())
}
