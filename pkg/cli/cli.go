// Package cli is the command line of Herald's binaries. The herald binary
// runs the all-in-one (herald run, herald config) and is the client of a
// running deployment: its API commands (herald endpoints, events, attempts,
// dlq) call only the public HTTP API with a tenant's API key, so they work
// the same against the all-in-one and against a cluster. The service
// binaries (herald-ingest, herald-router, herald-sender) share its help,
// version and config commands (Service).
//
// An API command finds its API and key in this order: the flags --api-url
// and --api-key; the profile --profile names; the variables
// HERALD_API_URL and HERALD_API_KEY; the profile HERALD_PROFILE names, else
// the current one (the last herald login or herald profiles use). Profiles
// are kept in os.UserConfigDir()/herald/config.json (HERALD_CLI_CONFIG
// names another file), readable by the user alone.
//
// Every command prints a table that fits 80 columns, or with --output json
// the API's JSON. Exit status: 0 done, 1 the operation failed, 2 a usage
// error.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/heraldhq/herald/pkg/service"
	"github.com/heraldhq/herald/pkg/version"
)

// Exit statuses.
const (
	exitOK     = 0
	exitFailed = 1
	exitUsage  = 2
)

const (
	programName = "herald"
	// defaultAPI is where the all-in-one listens unless told otherwise.
	defaultAPI = "http://127.0.0.1:8080"
)

// Env is how the commands read the environment (os.Getenv in a process).
type Env func(string) string

// Stdio is where a command reads and writes.
type Stdio struct {
	In       io.Reader
	Out, Err io.Writer
}

// AllInOne is the herald binary's own defaults for herald run, under the
// environment: every role in one process with NATS embedded.
var AllInOne = service.Config{
	Roles:         service.Roles{API: true, Router: true, Sender: true},
	Embedded:      true,
	RedisOptional: true,
	HTTPAddr:      "127.0.0.1:8080",
	// Development: deliver to receivers on this machine and network.
	// HERALD_EGRESS_ALLOW_PRIVATE=false turns the egress guard on.
	EgressAllowPrivate: true,
}

// Main runs the herald binary's command line (args without the program
// name) as a process: signals cancel it, it uses the standard streams and
// the environment. It returns the exit status.
func Main(args []string) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	return Run(ctx, args, Stdio{In: os.Stdin, Out: os.Stdout, Err: os.Stderr}, os.Getenv)
}

// Run runs one herald command line. Without a command it runs the
// all-in-one, as herald run does.
func Run(ctx context.Context, args []string, std Stdio, env Env) int {
	c := &cmd{ctx: ctx, std: std, env: env, now: time.Now, runService: service.Main}
	return c.main(args)
}

// cmd is one command line being run: where it writes, and the flags common
// to every API command.
type cmd struct {
	ctx context.Context
	std Stdio
	env Env
	now func() time.Time
	// runService runs a Herald process (service.Main; tests stub it).
	runService func(role string, def service.Config) int

	name string // "herald endpoints list", in messages
	conn connFlags
}

// command is one thing herald does: a single command (login) or a group's
// member (endpoints list).
type command struct {
	name     string // "endpoints list"
	synopsis string // its arguments, after the name
	summary  string
	help     string // its flags, one per line; "" when it has none of its own
	api      bool   // it calls the API, so it takes the connection flags
	run      func(c *cmd, args []string) error
}

// group is a command with subcommands (herald endpoints ...).
type group struct {
	name, summary string
}

var groups = []group{
	{"endpoints", "manage the tenant's endpoints"},
	{"events", "send an event, see what became of one"},
	{"attempts", "list an endpoint's delivery attempts"},
	{"dlq", "list and replay dead letters"},
	{"profiles", "list the saved profiles, pick the current one"},
}

// commands is every command but help and version, in the order usage lists
// them. It is filled by init to break the cycle help -> commands -> help.
var commands []command

func init() {
	commands = slices.Concat(localCommands, profileCommands, endpointCommands, eventCommands, tailCommands, listenCommands, dlqCommands)
}

// main finds the command args name and runs it: help and version first,
// then flags given before the command, then a group's member or a single
// command. It returns the exit status.
func (c *cmd) main(args []string) int {
	if len(args) == 0 {
		return c.runService(programName, AllInOne)
	}
	switch args[0] {
	case "help", "-h", "-help", "--help":
		return c.help(args[1:])
	case "version", "-version", "--version":
		fmt.Fprintf(c.std.Out, "%s %s\n", programName, version.Version)
		return exitOK
	}
	if strings.HasPrefix(args[0], "-") {
		// Connection flags may come before the command:
		// herald --profile staging endpoints list.
		fs := c.flagSet("")
		if err := fs.Parse(args); err != nil {
			return c.flagError(err)
		}
		if args = fs.Args(); len(args) == 0 {
			fmt.Fprintf(c.std.Err, "herald: no command after the flags\n%s", seeHelp(""))
			return exitUsage
		}
	}
	name := args[0]
	if isGroup(name) {
		switch {
		case len(args) > 1 && isHelp(args[1]):
			c.groupUsage(c.std.Out, name)
			return exitOK
		case name == "profiles" && (len(args) == 1 || strings.HasPrefix(args[1], "-")):
			return c.exec(find("profiles list"), args[1:])
		case len(args) == 1 || strings.HasPrefix(args[1], "-"):
			fmt.Fprintf(c.std.Err, "herald %s: say which command, before its flags\n\n", name)
			c.groupUsage(c.std.Err, name)
			return exitUsage
		}
		sub := find(name + " " + args[1])
		if sub == nil && args[1] == "ls" {
			sub = find(name + " list")
		}
		if sub == nil {
			fmt.Fprintf(c.std.Err, "herald %s: unknown command %q\n%s", name, args[1], seeHelp(name))
			return exitUsage
		}
		return c.exec(sub, args[2:])
	}
	if k := find(name); k != nil {
		return c.exec(k, args[1:])
	}
	fmt.Fprintf(c.std.Err, "herald: unknown command %q\n%s", name, seeHelp(""))
	return exitUsage
}

func isHelp(s string) bool { return s == "help" || s == "-h" || s == "-help" || s == "--help" }

func isGroup(name string) bool {
	return slices.ContainsFunc(groups, func(g group) bool { return g.name == name })
}

func find(name string) *command {
	i := slices.IndexFunc(commands, func(k command) bool { return k.name == name })
	if i < 0 {
		return nil
	}
	return &commands[i]
}

// seeHelp is the hint under a usage error: where the usage is.
func seeHelp(name string) string {
	return fmt.Sprintf("Run '%s --help' for usage.\n", strings.TrimSpace("herald "+name))
}

// exec runs k and turns its error into the exit status.
func (c *cmd) exec(k *command, args []string) int {
	c.name = "herald " + k.name
	return c.status(k.run(c, args), func(w io.Writer) { c.commandUsage(w, k) }, seeHelp(k.name))
}

// status turns a command's error into its exit status, telling the user
// what they need: the usage asked for (on stdout), what went wrong.
func (c *cmd) status(err error, usage func(io.Writer), hint string) int {
	var u usageError
	var code exitStatus
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, flag.ErrHelp):
		usage(c.std.Out)
		return exitOK
	case errors.As(err, &u):
		fmt.Fprintf(c.std.Err, "%s: %s\n%s", c.name, u.msg, hint)
		return exitUsage
	case errors.As(err, &code):
		return int(code)
	case errors.Is(err, errReported):
		return exitFailed
	default:
		fmt.Fprintf(c.std.Err, "%s: %v\n", c.name, err)
		return exitFailed
	}
}

// usageError is a mistake in the command line: exit status 2.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return usageError{fmt.Sprintf(format, args...)} }

// errReported is a failure the command has explained on its output
// already (a test send that the endpoint refused): exit status 1.
var errReported = errors.New("failed")

// flagError turns an error parsing the flags given before the command
// into the exit status.
func (c *cmd) flagError(err error) int {
	if errors.Is(err, flag.ErrHelp) {
		return c.help(nil)
	}
	fmt.Fprintf(c.std.Err, "herald: %v\n%s", flagProblem(err), seeHelp(""))
	return exitUsage
}

// flagSet returns a flag set for the API command named (in messages): it
// knows the connection flags.
func (c *cmd) flagSet(name string) *flag.FlagSet {
	fs := bareFlagSet("herald " + name)
	c.conn.register(fs)
	return fs
}

// bareFlagSet returns a flag set without flags. It prints nothing: parse
// reports its errors, the caller prints the usage (on stdout when asked
// for).
func bareFlagSet(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(strings.TrimSpace(name), flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return fs
}

// flagProblem rewords the flag package's errors to name the flag first.
func flagProblem(err error) error {
	msg := err.Error()
	if f, ok := strings.CutPrefix(msg, "flag provided but not defined: "); ok {
		msg = "unknown flag " + f
	}
	return usageError{msg}
}

// parse parses flags that may come before, between or after positional
// arguments, and returns the positional ones.
func parse(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, flagProblem(err)
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

// parseArgs parses args and checks that exactly the positional arguments
// named came with them (ID, REPLAY_ID).
func parseArgs(fs *flag.FlagSet, args []string, names ...string) ([]string, error) {
	pos, err := parse(fs, args)
	if err != nil {
		return nil, err
	}
	switch {
	case len(pos) < len(names):
		return nil, usagef("missing %s", names[len(pos)])
	case len(pos) > len(names):
		return nil, usagef("unexpected argument %q", pos[len(names)])
	}
	return pos, nil
}

const topUsage = `Herald, a webhook dispatcher.

Usage: herald <command> [arguments]

Run Herald:
  run                 start the all-in-one: API, router, sender, NATS embedded
                      (what herald does without a command)
  config              print the configuration run would use, secrets masked
  nats-callout-key    print a key pair for an external nats-server's callout

Use a running deployment, through its API:
  login               check an API URL and key, save them as a profile
  logout              forget a profile
  profiles            list the saved profiles, pick the current one
%s
  help [COMMAND]      this text, or a command's
  version             print the version (also --version)

The API commands take:
%s
Exit status: 0 done, 1 failed, 2 usage error.
`

const connUsage = `  --api-url URL       the API (default: $HERALD_API_URL, the profile's,
                      else http://127.0.0.1:8080)
  --api-key KEY       the tenant's API key (default: $HERALD_API_KEY, the
                      profile's)
  --profile NAME      a profile saved by herald login (default:
                      $HERALD_PROFILE, else the current profile)
  -o, --output FMT    table (default) or json
`

// help prints the usage of the command named by args, or of herald.
func (c *cmd) help(args []string) int {
	switch {
	case len(args) == 0:
		var b strings.Builder
		for _, g := range groups {
			if g.name != "profiles" { // listed with login
				fmt.Fprintf(&b, "  %-18s  %s\n", g.name, g.summary)
			}
		}
		fmt.Fprintf(c.std.Out, topUsage, b.String(), connUsage)
		return exitOK
	case isGroup(args[0]) && len(args) == 1:
		c.groupUsage(c.std.Out, args[0])
		return exitOK
	}
	if k := find(strings.Join(args, " ")); k != nil {
		c.commandUsage(c.std.Out, k)
		return exitOK
	}
	fmt.Fprintf(c.std.Err, "herald help: unknown command %q\n%s", strings.Join(args, " "), seeHelp(""))
	return exitUsage
}

func (c *cmd) groupUsage(w io.Writer, name string) {
	var api bool
	fmt.Fprintf(w, "Usage:\n")
	for _, k := range commands {
		if strings.HasPrefix(k.name, name+" ") {
			fmt.Fprintf(w, "  herald %s %s\n", k.name, k.synopsis)
			api = api || k.api
		}
	}
	fmt.Fprintf(w, "\nRun 'herald %s COMMAND --help' for a command's flags.\n", name)
	if api {
		fmt.Fprintf(w, "\nEvery command takes:\n%s", connUsage)
	}
}

func (c *cmd) commandUsage(w io.Writer, k *command) {
	fmt.Fprintf(w, "Usage: herald %s %s\n\n%s\n", k.name, k.synopsis, k.summary)
	if k.help != "" {
		fmt.Fprintf(w, "\n%s", k.help)
	}
	if k.api {
		fmt.Fprintf(w, "\nConnection and output:\n%s", connUsage)
	}
}
