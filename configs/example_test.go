package configs_test

import (
	"fmt"

	"github.com/braidq/braid/configs"
)

func noEnvironment(string) (string, bool) { return "", false }

// Parse (and Load) report every problem at once, each naming its field and
// value, and never a password.
func ExampleParse() {
	_, err := configs.Parse([]byte(`
cluster: prod-eu
shards:
  - {id: 1, name: pg-a, dsn: "postgres://braid:hunter2@10.0.0.1:5432/braid", weight: 0}
  - {id: 1, name: pg-b, dsn: "postgres://braid:${PG_B_PASSWORD}@10.0.0.2:54x2/braid"}
catalog: pg-a
placement:
  pins: {billing: pg-x}
`), noEnvironment) // main passes os.LookupEnv
	fmt.Println(err)
	// Output:
	// shards[1].dsn (line 5): environment variable PG_B_PASSWORD is not set and has no default
	// shards[0].weight: 0 must be > 0 for an active shard
	// shards[1].id: 1 duplicates shards[0].id
	// shards[1].dsn: cannot parse "postgres://braid:xxxxx@10.0.0.2:54x2/braid": invalid port
	// placement.pins.billing: unknown shard "pg-x"
}

// A DSN prints redacted wherever it goes: fmt, slog, JSON.
func ExampleDSN() {
	dsn := configs.DSN("postgres://braid:hunter2@10.0.0.1:5432/braid")
	fmt.Println(dsn)
	fmt.Println(configs.RedactDSN("host=10.0.0.1 user=braid password='hunter 2'"))
	// Output:
	// postgres://braid:xxxxx@10.0.0.1:5432/braid
	// host=10.0.0.1 user=braid password=xxxxx
}
