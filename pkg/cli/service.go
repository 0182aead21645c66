package cli

import (
	"fmt"
	"io"
	"os"

	"github.com/heraldhq/herald/pkg/natsauth"
	"github.com/heraldhq/herald/pkg/service"
	"github.com/heraldhq/herald/pkg/version"
)

// localCommands are the herald binary's commands that run Herald rather
// than call it.
var localCommands = []command{
	{name: "run", summary: "Starts the all-in-one Herald: API, router and sender in one process, NATS\nembedded, configured by HERALD_* variables (herald config shows them).\nWhat herald does without a command.",
		run: func(c *cmd, args []string) error { return c.serve(args, programName, AllInOne) }},
	{name: "config", summary: "Prints the configuration herald run would use: every variable, its\nvalue, default and source, secrets masked. Exits 2 when it is invalid.",
		run: func(c *cmd, args []string) error { return c.printConfig(args, AllInOne) }},
	{name: "nats-callout-key", summary: "Prints a new account key pair for the auth callout of an external\nnats-server: the seed for herald-ingest, the public key for nats.conf.",
		run: (*cmd).calloutKey},
}

// noArgs parses the arguments of a command that takes none but --help.
func (c *cmd) noArgs(args []string) error {
	_, err := parseArgs(bareFlagSet(c.name), args)
	return err
}

// serve runs a Herald process until it is stopped. Its exit status is the
// command's.
func (c *cmd) serve(args []string, role string, def service.Config) error {
	if err := c.noArgs(args); err != nil {
		return err
	}
	if code := c.runService(role, def); code != exitOK {
		return exitStatus(code)
	}
	return nil
}

func (c *cmd) printConfig(args []string, def service.Config) error {
	if err := c.noArgs(args); err != nil {
		return err
	}
	if err := service.PrintConfig(c.std.Out, def); err != nil {
		fmt.Fprintf(c.std.Err, "%s: %v\n", c.name, err)
		return exitStatus(exitUsage)
	}
	return nil
}

// exitStatus is a failure that already explained itself, with its exit
// status: a service that stopped on an error, or refused its settings.
type exitStatus int

func (e exitStatus) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

func (c *cmd) calloutKey(args []string) error {
	if err := c.noArgs(args); err != nil {
		return err
	}
	seed, err := natsauth.NewIssuer()
	if err != nil {
		return err
	}
	kp, err := natsauth.ParseIssuer(seed)
	if err != nil {
		return err
	}
	pub, err := kp.PublicKey()
	if err != nil {
		return err
	}
	fmt.Fprintf(c.std.Out, "# herald-ingest (secret): the auth callout signs with it\nHERALD_NATS_CALLOUT_SEED=%s\n", seed)
	fmt.Fprintf(c.std.Out, "# nats-server: auth_callout { issuer: ... }\nHERALD_NATS_CALLOUT_ISSUER=%s\n", pub)
	return nil
}

// roles describes each service binary's role, for its usage.
var roles = map[string]string{
	"ingest": "Herald's ingest role as its own process: event intake (POST /v1/events)\nand the management API.",
	"router": "Herald's router role as its own process: it matches events to endpoints\nand publishes their delivery jobs.",
	"sender": "Herald's sender role as its own process: it signs and sends deliveries.\nRun as many as you need.",
}

const serviceUsage = `Usage: %[1]s [COMMAND]

%[2]s
It uses the NATS server at NATS_URL and the Redis at REDIS_URL.

Commands:
  run        start it (what it does without a command), configured by
             HERALD_* variables
  config     print the configuration it would use, secrets masked; exit 2
             when it is invalid
  version    print the version (also --version)
  help       this text (also --help, -h)

herald --help describes the all-in-one and the client of a deployment.
`

// Service runs the command line of a service binary (herald-ingest,
// herald-router, herald-sender): help, version and config answer and
// exit; no command, or run, starts role under def and the environment.
// It returns the exit status.
func Service(binary, role string, def service.Config) int {
	return runServiceCLI(os.Args[1:], Stdio{In: os.Stdin, Out: os.Stdout, Err: os.Stderr}, binary, role, def, service.Main)
}

func runServiceCLI(args []string, std Stdio, binary, role string, def service.Config, start func(string, service.Config) int) int {
	if len(args) == 0 {
		return start(role, def)
	}
	usage := func(w io.Writer) { fmt.Fprintf(w, serviceUsage, binary, roles[role]) }
	c := &cmd{std: std, runService: start, name: binary + " " + args[0]}
	var err error
	switch args[0] {
	case "help", "-h", "-help", "--help":
		usage(std.Out)
		return exitOK
	case "version", "-version", "--version":
		fmt.Fprintf(std.Out, "%s %s\n", binary, version.Version)
		return exitOK
	case "run":
		err = c.serve(args[1:], role, def)
	case "config":
		err = c.printConfig(args[1:], def)
	default:
		c.name = binary
		err = usagef("unknown command or flag %q", args[0])
	}
	return c.status(err, usage, fmt.Sprintf("Run '%s --help' for usage.\n", binary))
}
