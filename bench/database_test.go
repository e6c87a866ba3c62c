package bench

import (
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
)

func TestWithDatabaseNamesTheDatabaseInBothDSNForms(t *testing.T) {
	for _, tc := range []struct{ name, dsn string }{
		{"a URL with a database", "postgres://braid:pw@127.0.0.1:5432/braid?sslmode=disable"},
		{"a URL without one", "postgresql://braid@localhost"},
		{"a keyword/value string with one", "host=127.0.0.1 port=5432 user=braid dbname=braid"},
		{"a keyword/value string without one", "host=/tmp user=braid"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := WithDatabase(tc.dsn, "river_bench_1")
			require.NoError(t, err)
			cfg, err := pgx.ParseConfig(out)
			require.NoError(t, err)
			require.Equal(t, "river_bench_1", cfg.Database)
			orig, err := pgx.ParseConfig(tc.dsn)
			require.NoError(t, err)
			require.Equal(t, orig.User, cfg.User, "the rest of the DSN is kept")
			require.Equal(t, orig.Host, cfg.Host)
		})
	}
}
