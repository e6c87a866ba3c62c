package localpg_test

import (
	"context"
	"fmt"
	"os"

	"github.com/jackc/pgx/v5"

	"github.com/braidq/braid/localpg"
)

// Start two throwaway servers, make a database owned by braid on one, and connect to it as braid.
func Example() {
	ctx := context.Background()
	dir, err := localpg.TempDir("localpg-example")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)

	g, err := localpg.Start(ctx, localpg.Options{Dir: dir, Servers: 2, Durability: localpg.Throwaway})
	if err != nil {
		panic(err) // e.g. the PostgreSQL server package is not installed: the error says how to
	}
	defer g.Stop(ctx)

	s := g.Servers()[0]
	if err := s.AdminExec(ctx, "CREATE DATABASE app OWNER "+localpg.Role); err != nil {
		panic(err)
	}
	conn, err := pgx.Connect(ctx, s.DSN("app"))
	if err != nil {
		panic(err)
	}
	defer conn.Close(ctx)
	var user, superuser string
	if err := conn.QueryRow(ctx, "SELECT current_user, current_setting('is_superuser')").Scan(&user, &superuser); err != nil {
		panic(err)
	}
	fmt.Println(len(g.Servers()), "servers; connected as", user, "superuser:", superuser)
	// Output: 2 servers; connected as braid superuser: off
}
