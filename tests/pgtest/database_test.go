package pgtest

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestUniqueNameIsAValidDistinctIdentifier(t *testing.T) {
	long := "TestSomething/with a very long subtest name, punctuation & ünïcode that goes on and on"
	a, b := uniqueName("t", long), uniqueName("t", long)
	require.NotEqual(t, a, b)
	for _, name := range []string{a, b} {
		require.LessOrEqual(t, len(name), maxIdentLen)
		require.Regexp(t, `^t_[0-9]+_[a-z0-9_]*$`, name)
	}
}
