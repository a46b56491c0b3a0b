package ctl

import (
	"context"
	"fmt"
	"io"
	"os"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/porto-dev/porto/api"
	"github.com/porto-dev/porto/api/client"
	"github.com/spf13/pflag"
)

// Client is the part of api/client that portoctl uses. *client.Client
// implements it; tests use a fake.
type Client interface {
	Create(ctx context.Context, name string) error
	Destroy(ctx context.Context, name string) error
	Start(ctx context.Context, name string) error
	// Stop stops name; timeout < 0 means the daemon's default.
	Stop(ctx context.Context, name string, timeout time.Duration) error
	Kill(ctx context.Context, name string, sig int) error
	Pause(ctx context.Context, name string) error
	Resume(ctx context.Context, name string) error
	// Wait returns the first of names to finish, or "" on timeout;
	// timeout < 0 waits forever.
	Wait(ctx context.Context, names []string, timeout time.Duration) (string, error)
	List(ctx context.Context) ([]string, error)
	Get(ctx context.Context, names, keys []string) ([]api.GetResult, error)
	GetProperty(ctx context.Context, name, key string) (string, error)
	SetProperty(ctx context.Context, name, key, value string) error
	ListProperties(ctx context.Context) ([]api.PropertyInfo, error)
	Version(ctx context.Context) (string, error)
}

// Exit statuses that are not an api.Code's.
const (
	ExitOK    = 0
	ExitUsage = 2 // bad command line
)

// CLI is one portoctl invocation's environment. The zero value is not
// usable: Dial and the writers must be set. Run fills it from the process.
type CLI struct {
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer

	// Dial connects to portod. It is called at most once, and only by
	// commands that need the daemon (never for --help). The returned func
	// closes the connection.
	Dial func() (Client, func(), error)

	// Terminal says stdin and stdout are a terminal: top then refreshes in
	// place and reads keys from Stdin.
	Terminal bool

	// StartAgent, if set, is called before a command that changes
	// something (run, create, set, start, stop, kill, ...) dials portod;
	// the returned func stops the agent. Run sets it to start pkttyagent
	// when stdin is a terminal and the caller is not root.
	StartAgent func() (stop func())

	// RefreshInterval is top's refresh period on a terminal (default 1s).
	RefreshInterval time.Duration

	// Transport is the global --transport option: "varlink", "dbus" or
	// "auto" (the default: porto's Varlink socket when it can be
	// reached, else D-Bus). Run's Dial honours it.
	Transport string

	cmd       *command // the command being run
	client    Client
	closeConn func()
	stopAgent func()
}

// Run runs portoctl with args (the command line without the program name),
// writing to stdout and stderr, and returns the process exit status: 0 on
// success, 2 on a bad command line, otherwise the api.Code's ExitStatus.
func Run(args []string, stdout, stderr io.Writer) int {
	interactive := isTerminal(os.Stdin)
	c := &CLI{
		Stdin:    os.Stdin,
		Stdout:   stdout,
		Stderr:   stderr,
		Terminal: interactive && isTerminalWriter(stdout),
	}
	c.Dial = func() (Client, func(), error) { return Dial(interactive, c.Transport) }
	// As systemctl: a polkit agent only makes sense with a terminal to ask
	// on, and root never needs one.
	if interactive && os.Geteuid() != 0 {
		c.StartAgent = startPolkitAgent
	}
	return c.Run(args)
}

// Transports that --transport accepts.
var transports = []string{"varlink", "dbus", "auto"}

// globalOptions takes the options before the command: --transport=T or
// --transport T. It returns the rest, or ok=false after printing the
// problem.
func (c *CLI) globalOptions(args []string) (rest []string, ok bool) {
	for len(args) > 0 && strings.HasPrefix(args[0], "--transport") {
		var v string
		switch {
		case strings.HasPrefix(args[0], "--transport="):
			v, args = strings.TrimPrefix(args[0], "--transport="), args[1:]
		case args[0] == "--transport" && len(args) > 1:
			v, args = args[1], args[2:]
		case args[0] == "--transport":
			fmt.Fprintf(c.Stderr, "portoctl: --transport needs a value (%s)\n", strings.Join(transports, ", "))
			return nil, false
		default:
			return args, true // not ours: the command will complain
		}
		if !slices.Contains(transports, v) {
			fmt.Fprintf(c.Stderr, "portoctl: unknown transport %q (want %s)\n", v, strings.Join(transports, ", "))
			return nil, false
		}
		c.Transport = v
	}
	return args, true
}

// Run runs one command line and returns the exit status.
func (c *CLI) Run(args []string) int {
	defer c.close()
	args, ok := c.globalOptions(args)
	if !ok {
		return ExitUsage
	}
	if len(args) == 0 {
		c.usage(c.Stderr)
		return ExitUsage
	}
	name := args[0]
	switch name {
	case "-h", "--help":
		c.usage(c.Stdout)
		return ExitOK
	case "help":
		if len(args) == 1 {
			c.usage(c.Stdout)
			return ExitOK
		}
		cmd := lookup(args[1])
		if cmd == nil {
			fmt.Fprintf(c.Stderr, "portoctl: unknown command %q\n", args[1])
			c.usage(c.Stderr)
			return ExitUsage
		}
		fs, _, _ := cmd.flags()
		c.commandHelp(c.Stdout, cmd, fs)
		return ExitOK
	case "-v", "--version":
		name = "version"
	}
	cmd := lookup(name)
	if cmd == nil {
		fmt.Fprintf(c.Stderr, "portoctl: unknown command %q\n", name)
		c.usage(c.Stderr)
		return ExitUsage
	}
	return c.runCommand(cmd, args[1:])
}

func (c *CLI) runCommand(cmd *command, args []string) int {
	c.cmd = cmd
	fs, help, run := cmd.flags()
	if err := fs.Parse(args); err != nil {
		fmt.Fprintf(c.Stderr, "portoctl %s: %v\n", cmd.name, err)
		c.commandHelp(c.Stderr, cmd, fs)
		return ExitUsage
	}
	if *help {
		c.commandHelp(c.Stdout, cmd, fs)
		return ExitOK
	}
	pos := fs.Args()
	if len(pos) < cmd.minArgs || (cmd.maxArgs >= 0 && len(pos) > cmd.maxArgs) {
		if len(pos) < cmd.minArgs {
			fmt.Fprintf(c.Stderr, "portoctl %s: not enough arguments\n", cmd.name)
		} else {
			fmt.Fprintf(c.Stderr, "portoctl %s: too many arguments\n", cmd.name)
		}
		c.commandHelp(c.Stderr, cmd, fs)
		return ExitUsage
	}
	return run(c, pos)
}

// conn returns the client, dialling on first use. On failure it prints
// the error and returns nil and the exit status.
func (c *CLI) conn() (Client, int) {
	if c.client != nil {
		return c.client, ExitOK
	}
	if c.StartAgent != nil && c.stopAgent == nil && c.cmd != nil && c.cmd.mutating {
		c.stopAgent = c.StartAgent()
	}
	cl, closeConn, err := c.Dial()
	if err != nil {
		return nil, c.fail("connect to portod", err)
	}
	c.client, c.closeConn = cl, closeConn
	return cl, ExitOK
}

func (c *CLI) close() {
	if c.closeConn != nil {
		c.closeConn()
		c.closeConn = nil
	}
	c.client = nil
	if c.stopAgent != nil {
		c.stopAgent()
		c.stopAgent = nil
	}
}

// fail prints "Can't <action>: <EError> (<message>)" and returns the exit
// status of err's class.
func (c *CLI) fail(action string, err error) int {
	e := api.AsError(err)
	fmt.Fprintf(c.Stderr, "Can't %s: %s (%s)\n", action, e.Code, e.Message())
	return exitStatus(e.Code)
}

func exitStatus(code api.Code) int {
	s := code.ExitStatus()
	if s == 0 {
		// An error that claims Success is still a failure.
		s = api.Unknown.ExitStatus()
	}
	return s
}

// ctx is the context of every call. portoctl has no deadline of its own:
// the client applies the D-Bus timeouts, and wait may block for ever.
func (c *CLI) ctx() context.Context { return context.Background() }

// printValue writes v and a newline, unless v already ends with one (the
// stdout and stderr data are printed as the file content is).
func printValue(w io.Writer, v string) {
	if !strings.HasSuffix(v, "\n") {
		v += "\n" // one write, not two
	}
	io.WriteString(w, v)
}

type runFunc func(c *CLI, args []string) int

// command is one portoctl subcommand.
type command struct {
	name     string
	synopsis string // after "portoctl NAME "
	summary  string // one line, for the command list
	help     string // paragraphs for NAME --help
	minArgs  int
	maxArgs  int // -1: no limit
	// interspersed lets flags follow positional arguments (wait NAME -t 5).
	// Commands whose arguments are free text (run, set) stop at the first
	// positional argument so that a value such as "-l" is not a flag.
	interspersed bool
	// mutating commands may need polkit authorization: on a terminal a
	// polkit agent is started before they call portod.
	mutating bool
	setup    func(fs *pflag.FlagSet) runFunc
}

// flags makes the command's flag set (with -h, --help) and its run func.
func (cmd *command) flags() (*pflag.FlagSet, *bool, runFunc) {
	fs := pflag.NewFlagSet("portoctl "+cmd.name, pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.SetInterspersed(cmd.interspersed)
	fs.SortFlags = false
	run := cmd.setup(fs)
	help := fs.BoolP("help", "h", false, "show this help")
	return fs, help, run
}

func lookup(name string) *command {
	for _, cmd := range commands {
		if cmd.name == name {
			return cmd
		}
	}
	if a, ok := aliases[name]; ok {
		return lookup(a)
	}
	return nil
}

// aliases are other names of commands (not listed separately).
var aliases = map[string]string{
	"plist": "properties",
	"ls":    "list",
}

func (c *CLI) usage(w io.Writer) {
	fmt.Fprintf(w, "Usage: portoctl [--transport=varlink|dbus|auto] COMMAND [ARG...]\n\n")
	fmt.Fprintf(w, "portoctl controls porto containers through portod's API: its Varlink\n")
	fmt.Fprintf(w, "socket ($PORTO_VARLINK_SOCKET, default %s)\n", client.DefaultVarlinkSocket)
	fmt.Fprintf(w, "when it can reach it, else D-Bus (the system bus, $DBUS_SYSTEM_BUS_ADDRESS).\n")
	fmt.Fprintf(w, "--transport forces one.\n\n")
	fmt.Fprintf(w, "Commands:\n")
	width := 0
	for _, cmd := range commands {
		width = max(width, len(cmd.name))
	}
	for _, cmd := range commands {
		fmt.Fprintf(w, "  %-*s  %s\n", width, cmd.name, cmd.summary)
	}
	var al []string
	for a, n := range aliases {
		al = append(al, a+" = "+n)
	}
	sort.Strings(al)
	fmt.Fprintf(w, "\nAliases: %s\n", strings.Join(al, ", "))
	fmt.Fprintf(w, "\nRun 'portoctl COMMAND --help' for the help of one command.\n")
}

func (c *CLI) commandHelp(w io.Writer, cmd *command, fs *pflag.FlagSet) {
	fmt.Fprintf(w, "Usage: portoctl %s %s\n\n", cmd.name, cmd.synopsis)
	fmt.Fprintf(w, "%s\n", strings.TrimSpace(cmd.help))
	fmt.Fprintf(w, "\nOptions:\n%s", flagUsages(fs))
}

// flagUsages lists the visible flags as "  -t, --timeout SECONDS  usage"
// (pflag's own listing decorates booleans with "[=true|false]").
func flagUsages(fs *pflag.FlagSet) string {
	type row struct{ left, usage string }
	var rows []row
	width := 0
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Hidden {
			return
		}
		left := "      --" + f.Name
		if f.Shorthand != "" {
			left = "  -" + f.Shorthand + ", --" + f.Name
		}
		name, usage := pflag.UnquoteUsage(f)
		if name != "" && f.Value.Type() != "bool" {
			left += " " + name
		}
		width = max(width, len(left))
		rows = append(rows, row{left, usage})
	})
	var b strings.Builder
	for _, r := range rows {
		fmt.Fprintf(&b, "%-*s   %s\n", width, r.left, r.usage)
	}
	return b.String()
}
