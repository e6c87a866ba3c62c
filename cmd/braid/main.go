// Command braid runs and operates braid; the subcommands live in package cli.
package main

import (
	"os"

	"github.com/braidq/braid/cmd/braid/cli"
)

func main() { os.Exit(cli.Main(os.Args[1:], os.Stdout, os.Stderr)) }
