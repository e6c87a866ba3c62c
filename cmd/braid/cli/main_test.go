package cli_test

import (
	"os"
	"testing"

	"go.uber.org/goleak"

	"github.com/braidq/braid/cmd/braid/cli"
)

// helperEnv makes the test binary act as the braid command (see startBraid).
const helperEnv = "BRAID_CLI_TEST_AS_BRAID"

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) == "1" {
		os.Exit(cli.Main(os.Args[1:], os.Stdout, os.Stderr))
	}
	goleak.VerifyTestMain(m)
}
