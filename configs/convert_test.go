package configs

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/braidq/braid/router/placement"
	"github.com/braidq/braid/shard"
)

func TestConvert(t *testing.T) {
	t.Parallel()
	cfg, err := Load("example.yaml", noEnv)
	require.NoError(t, err)

	shards := cfg.ShardConfigs()
	require.Len(t, shards, 3)
	require.NoError(t, shard.ValidateAll(shards), "the example converts to valid shard configs")
	require.Equal(t, 2, shards[1].ID)
	require.Equal(t, "pg-b", shards[1].Name)
	require.Equal(t, string(cfg.Shards[1].DSN), shards[1].DSN)
	require.Equal(t, "dev", shards[1].Cluster)
	require.Equal(t, int32(20), shards[0].MaxConns)
	require.Equal(t, int32(8), shards[2].MaxConns, "the shard's pool override")
	require.Equal(t, int32(2), shards[2].MinConns, "inherited from the root pool")
	require.Equal(t, 5*time.Second, shards[0].ConnectTimeout)
	require.Equal(t, "braid", shards[0].Engine.Schema)
	require.Equal(t, 4, shards[0].Engine.Lanes)
	require.Equal(t, 25, shards[0].Engine.MaxAttempts)
	require.False(t, shards[0].Engine.DisableDLQ)

	rc := cfg.RouterConfig()
	require.NoError(t, rc.Validate())
	require.Equal(t, map[string]int16{"billing": 2}, rc.Pins)
	require.Equal(t, placement.Shard{ID: 2, Weight: 2}, rc.Placement[1])
	require.Equal(t, 5*time.Second, rc.EnqueueTimeout)

	require.Equal(t, "braid", cfg.CatalogConfig().Schema)
	id, ok := cfg.CatalogShardID()
	require.True(t, ok)
	require.Equal(t, 1, id)
	cfg.Catalog = Catalog{DSN: "postgres://braid@127.0.0.1:54320/braid_catalog"}
	_, ok = cfg.CatalogShardID()
	require.False(t, ok)
}
