package router_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"os"

	"github.com/braidq/braid/router"
	"github.com/braidq/braid/router/placement"
	"github.com/braidq/braid/shard"
)

// SendEmailArgs are a job's arguments: a struct encoded as JSON, whose Kind names the worker.
type SendEmailArgs struct {
	To      string `json:"to"`
	Subject string `json:"subject"`
}

func (SendEmailArgs) Kind() string { return "send_email" }

// InsertOpts gives every SendEmailArgs job its queue; Insert's options override it per field.
func (SendEmailArgs) InsertOpts() router.InsertOpts { return router.InsertOpts{Queue: "emails"} }

// Insert a typed job on whichever shard its queue lives. The shards are migrated beforehand
// (`braid migrate`, or shard.MigrateAll and router.MigrateCatalog); the catalog here lives on
// shard 1's database.
func ExampleClient_Insert() {
	ctx := context.Background()
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))

	shards, err := shard.OpenSet(ctx, []shard.Config{
		{ID: 1, Name: "pg-a", DSN: "postgres://braid@127.0.0.1:54321/braid", Cluster: "dev"},
		{ID: 2, Name: "pg-b", DSN: "postgres://braid@127.0.0.1:54322/braid", Cluster: "dev"},
	}, shard.Deps{Logger: logger})
	if err != nil {
		log.Fatal(err) // unreachable, unmigrated, or a database of another shard
	}
	defer shards.Close()
	home, _ := shards.Get(1)
	catalog, err := router.NewCatalog(ctx, home.Pool(), router.CatalogConfig{Logger: logger})
	if err != nil {
		log.Fatal(err)
	}

	client, err := router.New(router.Config{
		Placement: []placement.Shard{{ID: 1, Weight: 1}, {ID: 2, Weight: 2}},
		Pins:      map[string]int16{"billing": 1},
	}, router.Deps{Shards: shards, Catalog: catalog, Logger: logger})
	if err != nil {
		log.Fatal(err)
	}
	if err := client.Start(ctx); err != nil { // polls the directory about once a second
		log.Fatal(err)
	}
	defer func() { _ = client.Stop(ctx) }()

	res, err := client.Insert(ctx, SendEmailArgs{To: "ada@example.com", Subject: "hello"}, &router.InsertOpts{
		UniqueKey: "welcome:ada",
	})
	var (
		conflict    *router.UniqueConflictError
		unavailable *router.ShardUnavailableError
		invalid     *router.ValidationError
	)
	switch {
	case errors.As(err, &conflict):
		fmt.Println("already queued as job", conflict.JobID)
	case errors.As(err, &unavailable):
		fmt.Println("shard", unavailable.ShardID, "is down; other queues still work")
	case errors.As(err, &invalid):
		fmt.Println("bad", invalid.Field)
	case err != nil:
		log.Fatal(err)
	default:
		fmt.Printf("job %d on shard %d in queue %s\n", res.JobID, res.ShardID, res.Queue)
	}
}
