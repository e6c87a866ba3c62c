package engine

import (
	"cmp"
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

//go:embed migrations/*.sql
var migrationFS embed.FS

// Migration is one numbered schema change, embedded in the binary.
type Migration struct {
	Version int
	Name    string
	SQL     string
}

var migrationName = regexp.MustCompile(`^(\d{3})_([a-z0-9_]+)\.sql$`)

// loadMigrations reads and validates the numbered migrations in dir: names NNN_name.sql,
// versions contiguous from 1, no duplicates.
func loadMigrations(fsys fs.FS, dir string) ([]Migration, error) {
	entries, err := fs.ReadDir(fsys, dir)
	if err != nil {
		return nil, fmt.Errorf("read migrations: %w", err)
	}
	var out []Migration
	for _, e := range entries {
		m := migrationName.FindStringSubmatch(e.Name())
		if m == nil {
			return nil, fmt.Errorf("migration file %q: name must be NNN_name.sql", e.Name())
		}
		v, _ := strconv.Atoi(m[1])
		body, err := fs.ReadFile(fsys, dir+"/"+e.Name())
		if err != nil {
			return nil, fmt.Errorf("read migration %q: %w", e.Name(), err)
		}
		out = append(out, Migration{Version: v, Name: m[2], SQL: string(body)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Version < out[j].Version })
	for i, m := range out {
		if m.Version != i+1 {
			if i > 0 && m.Version == out[i-1].Version {
				return nil, fmt.Errorf("migration version %d: defined twice (%s, %s)", m.Version, out[i-1].Name, m.Name)
			}
			return nil, fmt.Errorf("migration version %d (%s): expected version %d, versions must be contiguous from 1", m.Version, m.Name, i+1)
		}
	}
	return out, nil
}

// Migrations returns the engine's embedded migrations in order.
func Migrations() ([]Migration, error) { return loadMigrations(migrationFS, "migrations") }

var schemaName = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)

// ValidateSchema reports whether name can be used as the engine's schema.
func ValidateSchema(name string) error {
	if !schemaName.MatchString(name) {
		return &ValidationError{Field: "schema", Value: name, Problem: "must match ^[a-z_][a-z0-9_]{0,62}$"}
	}
	if strings.HasPrefix(name, "pg_") {
		return &ValidationError{Field: "schema", Value: name, Problem: "must not start with pg_ (reserved by PostgreSQL)"}
	}
	return nil
}

var schemaToken = regexp.MustCompile(`\bbraid\.`)

// inSchema rewrites the schema token "braid." of embedded SQL to the configured schema.
func inSchema(sql, schema string) string {
	if schema == "braid" {
		return sql
	}
	return schemaToken.ReplaceAllLiteralString(sql, schema+".")
}

// MigrateOptions says which schema to migrate and which shard the database is.
type MigrateOptions struct {
	Schema  string // default "braid"
	ShardID int    // 1..32767
	Cluster string // the braid cluster name
}

// MigrateResult reports what Migrate did.
type MigrateResult struct {
	Applied  []int // versions applied by this call
	Current  int   // the schema version afterwards
	Identity Identity
}

// Migrate applies the pending migrations to the schema under an advisory lock, in one
// transaction, recording each in the schema_migration table, then writes the shard identity on
// first run or verifies it on later runs. It must run as a role that owns (or may create) the
// schema; it needs no superuser rights.
func Migrate(ctx context.Context, pool *pgxpool.Pool, opts MigrateOptions) (MigrateResult, error) {
	opts.Schema = cmp.Or(opts.Schema, "braid")
	id := Identity{ShardID: opts.ShardID, Cluster: opts.Cluster}
	if err := errors.Join(ValidateSchema(opts.Schema), id.validate()); err != nil {
		return MigrateResult{}, err
	}
	all, err := Migrations()
	if err != nil {
		return MigrateResult{}, err
	}
	var res MigrateResult
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		// The one migration runner (migrate_set.go), shared with the catalog's series.
		applied, current, err := ApplyMigrations(ctx, tx, opts.Schema, MigrationSet{Name: "engine", Table: engineTable, Migrations: all})
		if err != nil {
			return err
		}
		res.Applied, res.Current = applied, current
		got, err := ensureIdentity(ctx, tx, opts.Schema, id)
		res.Identity = got
		return err
	})
	if err != nil {
		return MigrateResult{}, fmt.Errorf("migrate schema %s: %w", opts.Schema, err)
	}
	return res, nil
}

// ensureIdentity writes the identity row and restricts the job id sequence to the shard's
// range on first run; later runs must find the same identity.
func ensureIdentity(ctx context.Context, tx pgx.Tx, schema string, want Identity) (Identity, error) {
	var got Identity
	err := tx.QueryRow(ctx, inSchema(`SELECT shard_id, cluster, created_at FROM braid.identity`, schema)).Scan(&got.ShardID, &got.Cluster, &got.CreatedAt)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		lo, hi := JobIDRange(want.ShardID)
		if _, err := tx.Exec(ctx, inSchema(`INSERT INTO braid.identity (shard_id, cluster) VALUES ($1, $2)`, schema), want.ShardID, want.Cluster); err != nil {
			return Identity{}, fmt.Errorf("write identity: %w", err)
		}
		// Sequence bounds are DDL; the values come from a validated integer, never from input text.
		if _, err := tx.Exec(ctx, inSchema(fmt.Sprintf(`ALTER SEQUENCE braid.job_id_seq MINVALUE %d MAXVALUE %d START %d RESTART %d NO CYCLE`, lo, hi, lo, lo), schema)); err != nil {
			return Identity{}, fmt.Errorf("set job id range: %w", err)
		}
		return ensureIdentity(ctx, tx, schema, want)
	case err != nil:
		return Identity{}, fmt.Errorf("read identity: %w", err)
	}
	if got.ShardID != want.ShardID || got.Cluster != want.Cluster {
		return got, &IdentityError{Want: want, Got: got}
	}
	return got, nil
}

// JobIDRange is the inclusive range of job ids that shard id allocates: job_id >> 48 == id.
func JobIDRange(shardID int) (lo, hi int64) {
	return int64(shardID)<<48 + 1, int64(shardID+1)<<48 - 1
}

// ShardOf returns the shard that created the job.
func ShardOf(jobID int64) int { return int(jobID >> 48) }
