package bench

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// FreshDatabase creates the database name on the server dsn connects to (its role needs
// CREATEDB) and returns a DSN for it and a function that drops it again. Every System of an
// invocation runs in a fresh database of the same server, so none inherits another's bloat.
func FreshDatabase(ctx context.Context, dsn, name string) (string, func(context.Context) error, error) {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return "", nil, fmt.Errorf("bench: create database %s: connect: %w", name, err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return "", nil, fmt.Errorf("bench: create database %s: %w", name, err)
	}
	drop := func(ctx context.Context) error {
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			return fmt.Errorf("bench: drop database %s: connect: %w", name, err)
		}
		defer conn.Close(ctx)
		// Not WITH (FORCE): that needs the right to signal every backend, which a CREATEDB role
		// lacks. Connections closed a moment ago may still be leaving: retry for a few seconds.
		for try := 0; ; try++ {
			_, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize())
			var pgErr *pgconn.PgError
			if err == nil || !errors.As(err, &pgErr) || pgErr.Code != pgerrcode.ObjectInUse || try == 50 {
				if err != nil {
					return fmt.Errorf("bench: drop database %s: %w", name, err)
				}
				return nil
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("bench: drop database %s: %w", name, ctx.Err())
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	out, err := WithDatabase(dsn, name)
	if err != nil {
		_ = drop(ctx)
		return "", nil, err
	}
	return out, drop, nil
}

// WithDatabase returns dsn (a URL or keyword/value connection string) naming database db.
func WithDatabase(dsn, db string) (string, error) {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err != nil {
			return "", fmt.Errorf("bench: dsn: not a valid URL: %w", err)
		}
		u.Path = "/" + db
		return u.String(), nil
	}
	// In a keyword/value string the last setting of a keyword wins.
	return strings.TrimSpace(dsn) + " dbname='" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(db) + "'", nil
}
