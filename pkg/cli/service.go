package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"slices"
	"time"

	"github.com/heraldhq/herald/pkg/health"
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
	{name: "healthcheck", synopsis: "[--probe ready|live|startup] [--timeout 5s]",
		summary: "Asks the herald running on this host (HERALD_HTTP_ADDR) for its readiness\n(/readyz) and exits 0 when ready, 1 otherwise: a Docker HEALTHCHECK for\nimages without curl.",
		help:    healthcheckHelp,
		run:     func(c *cmd, args []string) error { return c.healthcheck(args, AllInOne) }},
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

// A ServiceBinary is one of the binaries that run one role each.
type ServiceBinary struct {
	Name string // herald-ingest
	Role string // ingest, as in its logs
	// Defaults are its own defaults, under the environment.
	Defaults service.Config
	about    string // for its usage
}

// ServiceBinaries are herald-ingest, herald-router and herald-sender:
// their names, roles and defaults, which their mains run and the deploy
// module's tests check deployments against.
var ServiceBinaries = []ServiceBinary{
	{Name: "herald-ingest", Role: "ingest", Defaults: service.Config{Roles: service.Roles{API: true}, HTTPAddr: "127.0.0.1:8080"},
		about: "Herald's ingest role as its own process: event intake (POST /v1/events)\nand the management API."},
	{Name: "herald-router", Role: "router", Defaults: service.Config{Roles: service.Roles{Router: true}, HTTPAddr: "127.0.0.1:8081"},
		about: "Herald's router role as its own process: it matches events to endpoints\nand publishes their delivery jobs."},
	{Name: "herald-sender", Role: "sender", Defaults: service.Config{Roles: service.Roles{Sender: true}, HTTPAddr: "127.0.0.1:8082"},
		about: "Herald's sender role as its own process: it signs and sends deliveries.\nRun as many as you need."},
}

const healthcheckHelp = `  --probe NAME     ready (/readyz, the default), live (/livez) or startup
                   (/startupz)
  --timeout D      how long to wait for the answer (default 5s)`

// probePaths are the probes healthcheck --probe names.
var probePaths = map[string]string{"ready": health.PathReady, "live": health.PathLive, "startup": health.PathStartup}

// healthcheck asks the process def and the environment configure for a
// probe: exit 0 when it answers 200, 1 otherwise, as Docker's HEALTHCHECK
// wants (2 is reserved there, so a usage error is the only 2).
func (c *cmd) healthcheck(args []string, def service.Config) error {
	fs := bareFlagSet(c.name)
	probe := fs.String("probe", "ready", "")
	timeout := fs.Duration("timeout", 5*time.Second, "")
	if _, err := parseArgs(fs, args); err != nil {
		return err
	}
	path, ok := probePaths[*probe]
	if !ok {
		return usagef("--probe %q: want ready, live or startup", *probe)
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	if err := service.Healthcheck(ctx, def, path); err != nil {
		fmt.Fprintf(c.std.Err, "%s: %v\n", c.name, err)
		return exitStatus(exitFailed)
	}
	fmt.Fprintf(c.std.Out, "%s: %s\n", c.name, *probe)
	return nil
}

const serviceUsage = `Usage: %[1]s [COMMAND]

%[2]s
It uses the NATS server at NATS_URL and the Redis at REDIS_URL.

Commands:
  run        start it (what it does without a command), configured by
             HERALD_* variables
  config     print the configuration it would use, secrets masked; exit 2
             when it is invalid
  healthcheck [--probe ready|live|startup] [--timeout 5s]
             ask the process running on this host (HERALD_HTTP_ADDR) for
             its readiness; exit 0 when ready, 1 otherwise (a Docker
             HEALTHCHECK)
  version    print the version (also --version)
  help       this text (also --help, -h)

herald --help describes the all-in-one and the client of a deployment.
`

// Service runs the command line of the service binary named binary (one
// of ServiceBinaries): help, version, config and healthcheck answer and
// exit; no command, or run, starts its role under its defaults and the
// environment. It returns the exit status.
func Service(binary string) int {
	i := slices.IndexFunc(ServiceBinaries, func(b ServiceBinary) bool { return b.Name == binary })
	if i < 0 {
		panic("cli.Service: no service binary " + binary)
	}
	return runServiceCLI(os.Args[1:], Stdio{In: os.Stdin, Out: os.Stdout, Err: os.Stderr}, ServiceBinaries[i], service.Main)
}

func runServiceCLI(args []string, std Stdio, sb ServiceBinary, start func(string, service.Config) int) int {
	binary, role, def := sb.Name, sb.Role, sb.Defaults
	if len(args) == 0 {
		return start(role, def)
	}
	usage := func(w io.Writer) { fmt.Fprintf(w, serviceUsage, binary, sb.about) }
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
	case "healthcheck":
		err = c.healthcheck(args[1:], def)
	default:
		c.name = binary
		err = usagef("unknown command or flag %q", args[0])
	}
	return c.status(err, usage, fmt.Sprintf("Run '%s --help' for usage.\n", binary))
}
