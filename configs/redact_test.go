package configs

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestRedactDSN(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		dsn  string
		want string
	}{
		{name: "a URL password is masked", dsn: "postgres://braid:s3cr3t@10.0.0.1:5432/braid", want: "postgres://braid:xxxxx@10.0.0.1:5432/braid"},
		{name: "a postgresql:// URL password is masked", dsn: "postgresql://braid:s3cr3t@h/db?sslmode=disable", want: "postgresql://braid:xxxxx@h/db?sslmode=disable"},
		{name: "a URL without a password is unchanged", dsn: "postgres://braid@10.0.0.1:5432/braid", want: "postgres://braid@10.0.0.1:5432/braid"},
		{name: "an empty URL password is masked too", dsn: "postgres://braid:@h/db", want: "postgres://braid:xxxxx@h/db"},
		{name: "a password with an unencoded @ is masked whole", dsn: "postgres://u:p@ss@h/db", want: "postgres://u:xxxxx@h/db"},
		{name: "a password query parameter is masked", dsn: "postgres://h/db?user=u&password=s3cr3t&sslmode=disable", want: "postgres://h/db?user=u&password=xxxxx&sslmode=disable"},
		{name: "an encoded password key is still masked", dsn: "postgres://h/db?pass%77ord=s3cr3t", want: "postgres://h/db?pass%77ord=xxxxx"},
		{name: "an sslpassword parameter is masked", dsn: "postgres://u@h/db?sslpassword=s3cr3t", want: "postgres://u@h/db?sslpassword=xxxxx"},
		{name: "multiple hosts keep their ports", dsn: "postgres://u:pw@h1:5432,h2:5433/db", want: "postgres://u:xxxxx@h1:5432,h2:5433/db"},
		{name: "a password stranded in the port slot is masked", dsn: "postgres://braid:s3cr3t/db", want: "postgres://braid:xxxxx/db"},
		{name: "an IPv6 host keeps its port", dsn: "postgres://u@[::1]:5432/db", want: "postgres://u@[::1]:5432/db"},
		{name: "a keyword/value password is masked", dsn: "host=h user=u password=s3cr3t dbname=db", want: "host=h user=u password=xxxxx dbname=db"},
		{name: "a quoted keyword/value password is masked", dsn: `host=h password='it\'s a secret' dbname=db`, want: "host=h password=xxxxx dbname=db"},
		{name: "spaces around = are kept", dsn: "host = h password = s3cr3t", want: "host = h password = xxxxx"},
		{name: "an uppercase key is masked", dsn: "host=h PASSWORD=s3cr3t", want: "host=h PASSWORD=xxxxx"},
		{name: "an unterminated quote masks the rest", dsn: "host=h password='s3cr3t dbname=db", want: "host=h password=xxxxx"},
		{name: "a bare word masks the rest", dsn: "host=h s3cr3t dbname=db", want: "host=h xxxxx"},
		{name: "a string that is no DSN at all is masked", dsn: "s3cr3t", want: "xxxxx"},
		{name: "an empty DSN is empty", dsn: "", want: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tt.want, RedactDSN(tt.dsn))
			require.Equal(t, tt.want, DSN(tt.dsn).String())
		})
	}
}

func TestSecretsIn(t *testing.T) {
	t.Parallel()
	got := secretsIn(`dsn: postgres://u:pa:ss@h/db other: "host=h password='q w' x" PassWord = plain&x=1`)
	require.Contains(t, got, "pa:ss")
	require.Contains(t, got, "q w")
	require.Contains(t, got, "plain")
}
