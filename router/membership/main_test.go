package membership_test

import (
	"fmt"
	"os"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// TestMain checks for leaked goroutines after the tests. memberlist's
// Shutdown does not wait for its own probe goroutines; each ends at its
// probe deadline (well under a second in the fast preset), so the check
// allows them a few seconds. Goroutines of this package (the re-join loop,
// the partition filter) never end on their own and are still caught.
func TestMain(m *testing.M) {
	code := m.Run()
	if code == 0 {
		err := goleak.Find()
		for deadline := time.Now().Add(5 * time.Second); err != nil && time.Now().Before(deadline); {
			time.Sleep(100 * time.Millisecond)
			err = goleak.Find()
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}
