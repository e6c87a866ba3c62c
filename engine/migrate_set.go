package engine

import (
	"context"
	"fmt"
	"io/fs"

	"github.com/jackc/pgx/v5"
)

// MigrationSet is one numbered series of migrations applied to a schema and recorded in a table
// of its own in that schema. The engine's series (Migrations) is recorded in schema_migration;
// another series that lives in the same schema, such as the router's placement directory in
// the catalog database, names another table. Every series goes through ApplyMigrations: there
// is one migration runner in braid.
type MigrationSet struct {
	Name       string      // for errors and reports, e.g. "engine" or "catalog"
	Table      string      // the record table in the schema: a fixed identifier from code
	Migrations []Migration // contiguous from version 1 (LoadMigrationSet checks)
}

// engineTable records the engine's own series. Open reads it to refuse an unmigrated schema.
const engineTable = "schema_migration"

// LoadMigrationSet reads the series named name from the NNN_name.sql files of dir in fsys,
// validated like the engine's own (contiguous from 1, no duplicates), recorded in table.
func LoadMigrationSet(name, table string, fsys fs.FS, dir string) (MigrationSet, error) {
	if err := validateIdent("table", table); err != nil {
		return MigrationSet{}, err
	}
	all, err := loadMigrations(fsys, dir)
	if err != nil {
		return MigrationSet{}, fmt.Errorf("%s migrations: %w", name, err)
	}
	return MigrationSet{Name: name, Table: table, Migrations: all}, nil
}

// ApplyMigrations applies the set's pending migrations to schema inside tx and records each in
// the set's table, creating the schema and the table when missing. It first takes the schema's
// migration lock (a transaction advisory lock shared by every series of the schema), so
// concurrent migrators of one database serialise and series never interleave. It needs no
// superuser rights, only a role that owns (or may create) the schema. It returns the versions
// it applied and the set's version afterwards; a schema newer than the set is refused.
func ApplyMigrations(ctx context.Context, tx pgx.Tx, schema string, set MigrationSet) (applied []int, current int, err error) {
	if err := ValidateSchema(schema); err != nil {
		return nil, 0, err
	}
	if err := validateIdent("table", set.Table); err != nil {
		return nil, 0, err
	}
	for i, m := range set.Migrations {
		if m.Version != i+1 {
			return nil, 0, fmt.Errorf("%s migration version %d (%s): expected version %d", set.Name, m.Version, m.Name, i+1)
		}
	}
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtext('braid.migrate'), hashtext($1))`, schema); err != nil {
		return nil, 0, fmt.Errorf("lock: %w", err)
	}
	// The schema and table names are validated identifiers, never raw input.
	if _, err := tx.Exec(ctx, `CREATE SCHEMA IF NOT EXISTS `+schema); err != nil {
		return nil, 0, fmt.Errorf("create schema %s: %w", schema, err)
	}
	table := schema + "." + set.Table
	if _, err := tx.Exec(ctx, `
		CREATE TABLE IF NOT EXISTS `+table+` (
			version    integer     PRIMARY KEY,
			name       text        NOT NULL,
			applied_at timestamptz NOT NULL DEFAULT now()
		)`); err != nil {
		return nil, 0, fmt.Errorf("create %s migration table: %w", set.Name, err)
	}
	if err := tx.QueryRow(ctx, `SELECT coalesce(max(version), 0) FROM `+table).Scan(&current); err != nil {
		return nil, 0, fmt.Errorf("read %s schema version: %w", set.Name, err)
	}
	if current > len(set.Migrations) {
		return nil, 0, fmt.Errorf("schema %s is at %s version %d, newer than this binary knows (%d)", schema, set.Name, current, len(set.Migrations))
	}
	for _, m := range set.Migrations[current:] {
		if _, err := tx.Exec(ctx, inSchema(m.SQL, schema)); err != nil {
			return nil, 0, fmt.Errorf("migration %03d_%s: %w", m.Version, m.Name, err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO `+table+` (version, name) VALUES ($1, $2)`, m.Version, m.Name); err != nil {
			return nil, 0, fmt.Errorf("record migration %d: %w", m.Version, err)
		}
		applied = append(applied, m.Version)
	}
	return applied, len(set.Migrations), nil
}

// MigrationVersion returns the set's version recorded in schema: 0 when the schema or the
// set's table does not exist yet.
func MigrationVersion(ctx context.Context, db interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}, schema string, set MigrationSet) (int, error) {
	if err := ValidateSchema(schema); err != nil {
		return 0, err
	}
	if err := validateIdent("table", set.Table); err != nil {
		return 0, err
	}
	var exists bool
	if err := db.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`, schema+"."+set.Table).Scan(&exists); err != nil {
		return 0, fmt.Errorf("read %s schema version: %w", set.Name, err)
	}
	if !exists {
		return 0, nil
	}
	var v int
	if err := db.QueryRow(ctx, `SELECT coalesce(max(version), 0) FROM `+schema+"."+set.Table).Scan(&v); err != nil {
		return 0, fmt.Errorf("read %s schema version: %w", set.Name, err)
	}
	return v, nil
}

// validateIdent checks a fixed identifier that braid pastes into SQL.
func validateIdent(field, name string) error {
	if !schemaName.MatchString(name) {
		return &ValidationError{Field: field, Value: name, Problem: "must match ^[a-z_][a-z0-9_]{0,62}$"}
	}
	return nil
}
