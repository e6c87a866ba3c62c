package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/braidq/braid/localpg"
	"github.com/braidq/braid/router"
	"github.com/braidq/braid/shard"
)

// localShards is a braid cluster on throwaway local servers, one shard per server, for the
// subcommands that need no outside setup (dev, bench): the servers, the process's shard set,
// the catalog (on shard 1) and a started router client.
type localShards struct {
	servers *localpg.Group
	cfgs    []shard.Config
	set     *shard.Set
	catalog *router.Catalog
	client  *router.Client
}

// localShardsOptions configure startLocalShards.
type localShardsOptions struct {
	Dir        string // empty or new folder for the servers
	Shards     int
	Cluster    string // the braid cluster name in every shard's identity
	Durability localpg.Durability
	Pins       map[string]int16 // queues placed on a shard of their own choosing, see router.Config
	Logger     *slog.Logger
}

// localDatabase is the database each local server holds its shard in.
const localDatabase = "braid"

// startLocalShards starts opts.Shards servers in opts.Dir, creates a database in each, migrates
// it as shard i+1 (shard.MigrateAll) and shard 1 also as the catalog (router.MigrateCatalog),
// and opens the shard set, the catalog and a router client. On error everything started is
// stopped again.
func startLocalShards(ctx context.Context, opts localShardsOptions) (_ *localShards, err error) {
	l := &localShards{}
	defer func() {
		if err != nil {
			err = errors.Join(err, l.stop(context.WithoutCancel(ctx)))
		}
	}()
	l.servers, err = localpg.Start(ctx, localpg.Options{
		Dir: opts.Dir, Servers: opts.Shards, Durability: opts.Durability, Logger: opts.Logger,
	})
	if err != nil {
		return nil, err
	}
	servers := l.servers.Servers()
	created := make([]error, len(servers))
	var wg sync.WaitGroup
	for i, srv := range servers {
		wg.Go(func() {
			if err := srv.AdminExec(ctx, "CREATE DATABASE "+localDatabase+" OWNER "+localpg.Role); err != nil {
				created[i] = fmt.Errorf("server %s: create database: %w", srv.Name, err)
			}
		})
	}
	wg.Wait()
	if err := errors.Join(created...); err != nil {
		return nil, err
	}
	for i, srv := range servers {
		l.cfgs = append(l.cfgs, shard.Config{
			ID:      i + 1,
			Name:    fmt.Sprintf("%s-%d", opts.Cluster, i+1),
			DSN:     srv.DSN(localDatabase),
			Cluster: opts.Cluster,
		})
	}
	reports, err := shard.MigrateAll(ctx, l.cfgs)
	if err != nil {
		return nil, fmt.Errorf("migrate shards: %w", err)
	}
	for _, r := range reports {
		opts.Logger.Info("shard migrated", "shard_id", r.ShardID, "shard", r.Name, "version", r.Current)
	}
	l.set, err = shard.OpenSet(ctx, l.cfgs, shard.Deps{Logger: opts.Logger})
	if err != nil {
		return nil, err
	}
	first, _ := l.set.Get(1)
	if _, _, err := router.MigrateCatalog(ctx, first.Pool(), ""); err != nil {
		return nil, fmt.Errorf("shard 1: migrate the catalog: %w", err)
	}
	l.catalog, err = router.NewCatalog(ctx, first.Pool(), router.CatalogConfig{Logger: opts.Logger})
	if err != nil {
		return nil, err
	}
	l.client, err = router.New(router.Config{Pins: opts.Pins}, router.Deps{Shards: l.set, Catalog: l.catalog, Logger: opts.Logger})
	if err != nil {
		return nil, err
	}
	if err := l.client.Start(ctx); err != nil {
		return nil, err
	}
	return l, nil
}

// stopTimeout bounds each step of stopping local shards when the caller's context has none.
const stopTimeout = 30 * time.Second

// stop stops the client, closes the set and the catalog and stops the servers (each bounded by
// ctx); it works on a partly started localShards.
func (l *localShards) stop(ctx context.Context) error {
	var errs []error
	if l.client != nil {
		errs = append(errs, l.client.Stop(ctx))
	}
	if l.catalog != nil {
		l.catalog.Close()
	}
	if l.set != nil {
		l.set.Close()
	}
	if l.servers != nil {
		errs = append(errs, l.servers.Stop(ctx))
	}
	return errors.Join(errs...)
}
