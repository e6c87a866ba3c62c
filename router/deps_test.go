package router_test

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestProducerDependencies keeps the producer client light and the package direction of
// DESIGN.md §1: producers embed router, so it must not pull in gossip; router and shard never
// import configs (configs converts its YAML into their Config types).
func TestProducerDependencies(t *testing.T) {
	t.Parallel()
	for pkg, forbidden := range map[string][]string{
		"github.com/braidq/braid/router": {"github.com/hashicorp/memberlist", "github.com/braidq/braid/configs", "github.com/braidq/braid/rebalance"},
		"github.com/braidq/braid/shard":  {"github.com/hashicorp/memberlist", "github.com/braidq/braid/configs", "github.com/braidq/braid/router"},
	} {
		out, err := exec.Command("go", "list", "-deps", pkg).CombinedOutput()
		require.NoError(t, err, "go list: %s", out)
		deps := strings.Fields(string(out))
		require.Contains(t, deps, "github.com/braidq/braid/engine", "the listing works")
		for _, f := range forbidden {
			for _, d := range deps {
				require.False(t, d == f || strings.HasPrefix(d, f+"/"), "%s imports %s", pkg, d)
			}
		}
	}
}
