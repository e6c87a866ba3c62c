package worker_test

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestWorkerDependencies keeps the package direction of DESIGN.md §1: the worker runtime sits
// below the node, so it never pulls in gossip, the producer client or configuration.
func TestWorkerDependencies(t *testing.T) {
	t.Parallel()
	out, err := exec.Command("go", "list", "-deps", "github.com/braidq/braid/router/worker").CombinedOutput()
	require.NoError(t, err, "go list: %s", out)
	deps := strings.Fields(string(out))
	require.Contains(t, deps, "github.com/braidq/braid/shard", "the listing works")
	for _, f := range []string{"github.com/hashicorp/memberlist", "github.com/braidq/braid/configs",
		"github.com/braidq/braid/router", "github.com/braidq/braid/router/node", "github.com/braidq/braid/router/membership"} {
		require.NotContains(t, deps, f)
	}
}
