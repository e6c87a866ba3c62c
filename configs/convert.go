package configs

import (
	"github.com/braidq/braid/engine"
	"github.com/braidq/braid/router"
	"github.com/braidq/braid/shard"
)

// The conversions below turn a loaded config (valid, through WithDefaults: Load and Parse
// return one) into the Config types of the packages that run it. Those packages never import
// configs.

// ShardConfigs returns every shard as shard.Config, for shard.OpenSet and shard.MigrateAll.
// Each shard's engine gets the schema and the default queue settings.
func (c Config) ShardConfigs() []shard.Config {
	c = c.WithDefaults()
	d := c.Queues.Queue("")
	out := make([]shard.Config, len(c.Shards))
	for i, s := range c.Shards {
		out[i] = shard.Config{
			ID:             s.ID,
			Name:           s.Name,
			DSN:            string(s.DSN),
			Cluster:        c.Cluster,
			MaxConns:       s.Pool.MaxConns,
			MinConns:       s.Pool.MinConns,
			ConnectTimeout: c.Timeouts.Connect,
			Engine: engine.Config{
				Schema:      c.Schema,
				Lanes:       d.Lanes,
				DisableDLQ:  !d.DLQ,
				MaxAttempts: d.MaxAttempts,
				Deadline:    d.Deadline,
			},
		}
	}
	return out
}

// RouterConfig returns the producer client's configuration: placement weights and states,
// pins resolved to shard ids, and the enqueue timeout.
func (c Config) RouterConfig() router.Config {
	c = c.WithDefaults()
	return router.Config{
		Placement:      c.PlacementShards(),
		Pins:           c.PinnedShardIDs(),
		EnqueueTimeout: c.Timeouts.Enqueue,
	}
}

// CatalogConfig returns the catalog client's configuration.
func (c Config) CatalogConfig() router.CatalogConfig {
	c = c.WithDefaults()
	return router.CatalogConfig{Schema: c.Schema, Timeout: c.Timeouts.Statement}
}

// CatalogShardID returns the id of the shard whose database holds the catalog, or false when
// the catalog has a database of its own (Catalog.DSN).
func (c Config) CatalogShardID() (int, bool) {
	if c.Catalog.Shard == "" {
		return 0, false
	}
	for _, s := range c.Shards {
		if s.Name == c.Catalog.Shard {
			return s.ID, true
		}
	}
	return 0, false
}
