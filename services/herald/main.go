// Command herald is the all-in-one Herald (intake, router and sender in one
// process with NATS embedded, for development and small deployments) and
// the command line client of a running deployment: herald endpoints,
// events, attempts and dlq call its HTTP API. herald --help lists every
// command; the command line lives in package cli.
package main

import (
	"os"

	"github.com/heraldhq/herald/pkg/cli"
)

func main() { os.Exit(cli.Main(os.Args[1:])) }
