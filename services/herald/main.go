// Command herald is the all-in-one Herald: intake, router and sender in one
// process with NATS embedded, for development and small deployments.
// `herald` (or `herald run`) runs it; `herald dlq ...` operates a running
// deployment's dead letters through its API.
package main

import (
	"fmt"
	"os"

	"github.com/heraldhq/herald/pkg/cli"
	"github.com/heraldhq/herald/pkg/service"
)

func main() {
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case "run":
		case "dlq":
			os.Exit(cli.Main(os.Args[1:]))
		default:
			fmt.Fprintf(os.Stderr, "usage: herald [run]\n       herald dlq (list|replay|status) ...   (herald dlq help)\n")
			os.Exit(2)
		}
	}
	os.Exit(service.Main("herald", service.Config{
		Roles:         service.Roles{API: true, Router: true, Sender: true},
		Embedded:      true,
		RedisOptional: true,
		HTTPAddr:      "127.0.0.1:8080",
		// Development: deliver to receivers on this machine and network.
		// HERALD_EGRESS_ALLOW_PRIVATE=false turns the egress guard on.
		EgressAllowPrivate: true,
	}))
}
