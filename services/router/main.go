// Command herald-router runs Herald's router role as its own process, against
// the NATS server at NATS_URL and the Redis at REDIS_URL. --help and
// --version answer instead of starting it (package cli).
package main

import (
	"os"

	"github.com/heraldhq/herald/pkg/cli"
)

func main() {
	os.Exit(cli.Service("herald-router"))
}
