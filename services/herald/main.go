// Command herald is the all-in-one Herald: intake, router and sender in one
// process with NATS embedded, for development and small deployments.
// `herald` (or `herald run`) runs it; `herald config` prints the
// configuration `herald run` would use, secrets masked, and fails on an
// invalid one; `herald dlq ...` operates a running deployment's dead letters
// through its API; `herald nats-callout-key` prints a new key pair for the
// auth callout of an external nats-server.
package main

import (
	"fmt"
	"os"

	"github.com/heraldhq/herald/pkg/cli"
	"github.com/heraldhq/herald/pkg/natsauth"
	"github.com/heraldhq/herald/pkg/service"
)

func main() {
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case "run":
		case "config":
			if err := service.PrintConfig(os.Stdout, allInOne); err != nil {
				fmt.Fprintln(os.Stderr, "herald:", err)
				os.Exit(2)
			}
			os.Exit(0)
		case "dlq":
			os.Exit(cli.Main(os.Args[1:]))
		case "nats-callout-key":
			os.Exit(calloutKey())
		default:
			fmt.Fprintf(os.Stderr, "usage: herald [run]\n       herald config\n       herald dlq (list|replay|status) ...   (herald dlq help)\n       herald nats-callout-key\n")
			os.Exit(2)
		}
	}
	os.Exit(service.Main("herald", allInOne))
}

// allInOne is the all-in-one's own defaults, under the environment.
var allInOne = service.Config{
	Roles:         service.Roles{API: true, Router: true, Sender: true},
	Embedded:      true,
	RedisOptional: true,
	HTTPAddr:      "127.0.0.1:8080",
	// Development: deliver to receivers on this machine and network.
	// HERALD_EGRESS_ALLOW_PRIVATE=false turns the egress guard on.
	EgressAllowPrivate: true,
}

// calloutKey prints a new account key pair for the auth callout: the seed
// for herald-ingest, the public key for the nats-server configuration
// (deploy/nats/nats.conf).
func calloutKey() int {
	seed, err := natsauth.NewIssuer()
	if err != nil {
		fmt.Fprintln(os.Stderr, "herald:", err)
		return 1
	}
	kp, err := natsauth.ParseIssuer(seed)
	if err != nil {
		fmt.Fprintln(os.Stderr, "herald:", err)
		return 1
	}
	pub, _ := kp.PublicKey()
	fmt.Printf("# herald-ingest (secret): the auth callout signs with it\nHERALD_NATS_CALLOUT_SEED=%s\n", seed)
	fmt.Printf("# nats-server: auth_callout { issuer: ... }\nHERALD_NATS_CALLOUT_ISSUER=%s\n", pub)
	return 0
}
