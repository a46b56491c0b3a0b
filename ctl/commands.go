package ctl

import (
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/porto-dev/porto/api"
	"github.com/spf13/pflag"
)

// commands in the order "portoctl --help" lists them.
var commands []*command

func init() {
	commands = []*command{
		cmdRun,
		simple("create", "create container", "Create each container NAME, stopped. Stops at the first failure.", false,
			func(c Client, x *CLI, n string) error { return c.Create(x.ctx(), n) }),
		simple("destroy", "destroy container", "Destroy each container NAME and all its children, stopping them first.\nEvery NAME is tried; the exit status is the first failure's.", true,
			func(c Client, x *CLI, n string) error { return c.Destroy(x.ctx(), n) }),
		simple("start", "start container", "Start each container NAME. Stops at the first failure.", false,
			func(c Client, x *CLI, n string) error { return c.Start(x.ctx(), n) }),
		cmdStop,
		cmdKill,
		simple("pause", "pause container", "Freeze each container NAME and its children. Stops at the first failure.", false,
			func(c Client, x *CLI, n string) error { return c.Pause(x.ctx(), n) }),
		simple("resume", "resume container", "Thaw each paused container NAME with its subtree. Stops at the first failure.", false,
			func(c Client, x *CLI, n string) error { return c.Resume(x.ctx(), n) }),
		cmdSet,
		cmdGet,
		cmdDget,
		cmdList,
		cmdWait,
		cmdProperties,
		cmdVersion,
		cmdTop,
	}
}

// simple is a command that applies one call to each NAME argument.
func simple(name, action, help string, keepGoing bool, call func(Client, *CLI, string) error) *command {
	return &command{
		name:     name,
		synopsis: "NAME...",
		summary:  action,
		help:     help,
		minArgs:  1,
		maxArgs:  -1,
		mutating: true,
		setup: func(*pflag.FlagSet) runFunc {
			return func(x *CLI, args []string) int {
				c, st := x.conn()
				if c == nil {
					return st
				}
				status := ExitOK
				for _, n := range args {
					if err := call(c, x, n); err != nil {
						s := x.fail(action, err)
						if !keepGoing {
							return s
						}
						if status == ExitOK {
							status = s
						}
					}
				}
				return status
			}
		},
	}
}

var cmdStop = &command{
	mutating:     true,
	name:         "stop",
	synopsis:     "[-t SECONDS] NAME...",
	summary:      "stop container",
	help:         "Stop each container NAME and its children: SIGTERM, then SIGKILL after the timeout.\nStops at the first failure.",
	minArgs:      1,
	maxArgs:      -1,
	interspersed: true,
	setup: func(fs *pflag.FlagSet) runFunc {
		secs := fs.Float64P("timeout", "t", -1, "wait `SECONDS` after SIGTERM before SIGKILL (default: the daemon's)")
		fs.Float64VarP(secs, "timeout-seconds", "T", -1, "same as -t (new Porto's spelling)")
		fs.Lookup("timeout-seconds").Hidden = true
		return func(x *CLI, args []string) int {
			c, st := x.conn()
			if c == nil {
				return st
			}
			timeout := seconds(*secs)
			for _, n := range args {
				if err := c.Stop(x.ctx(), n, timeout); err != nil {
					return x.fail("stop container", err)
				}
			}
			return ExitOK
		}
	},
}

// seconds converts a -t value; a negative one means "default/forever".
func seconds(s float64) time.Duration {
	if s < 0 || math.IsNaN(s) {
		return -1
	}
	if s > float64(math.MaxInt64/int64(time.Second)) {
		return time.Duration(math.MaxInt64)
	}
	return time.Duration(s * float64(time.Second))
}

var cmdKill = &command{
	mutating: true,
	name:     "kill",
	synopsis: "NAME [SIGNAL]",
	summary:  "send a signal to container",
	help: "Send SIGNAL to the processes of running container NAME. SIGNAL is a number (9)\n" +
		"or a name with or without the SIG prefix (KILL, SIGKILL); the default is SIGTERM.",
	minArgs: 1,
	maxArgs: 2,
	setup: func(*pflag.FlagSet) runFunc {
		return func(x *CLI, args []string) int {
			sig := 15
			if len(args) == 2 {
				s, ok := parseSignal(args[1])
				if !ok {
					return x.fail("kill container", api.Errorf(api.InvalidValue, "invalid signal %q", args[1]))
				}
				sig = s
			}
			c, st := x.conn()
			if c == nil {
				return st
			}
			if err := c.Kill(x.ctx(), args[0], sig); err != nil {
				return x.fail("kill container", err)
			}
			return ExitOK
		}
	},
}

// signalNumbers are Linux's signal numbers (x86, arm, most others).
var signalNumbers = map[string]int{
	"HUP": 1, "INT": 2, "QUIT": 3, "ILL": 4, "TRAP": 5, "ABRT": 6, "IOT": 6, "BUS": 7,
	"FPE": 8, "KILL": 9, "USR1": 10, "SEGV": 11, "USR2": 12, "PIPE": 13, "ALRM": 14,
	"TERM": 15, "STKFLT": 16, "CHLD": 17, "CLD": 17, "CONT": 18, "STOP": 19, "TSTP": 20,
	"TTIN": 21, "TTOU": 22, "URG": 23, "XCPU": 24, "XFSZ": 25, "VTALRM": 26, "PROF": 27,
	"WINCH": 28, "IO": 29, "POLL": 29, "PWR": 30, "SYS": 31,
}

// parseSignal accepts 9, KILL, SIGKILL, kill, -9 and -KILL, and RTMIN+N.
func parseSignal(s string) (int, bool) {
	s = strings.TrimPrefix(s, "-")
	if n, err := strconv.Atoi(s); err == nil {
		return n, n > 0 && n <= 64
	}
	u := strings.TrimPrefix(strings.ToUpper(s), "SIG")
	if n, ok := signalNumbers[u]; ok {
		return n, true
	}
	for base, pfx := range map[int]string{34: "RTMIN", 64: "RTMAX"} {
		if !strings.HasPrefix(u, pfx) {
			continue
		}
		rest := u[len(pfx):]
		if rest == "" {
			return base, true
		}
		off, err := strconv.Atoi(rest)
		if err != nil {
			return 0, false
		}
		n := base + off
		return n, n >= 34 && n <= 64
	}
	return 0, false
}

var cmdSet = &command{
	mutating: true,
	name:     "set",
	synopsis: "NAME KEY VALUE...",
	summary:  "set container property",
	help: "Set property KEY of container NAME to VALUE. Several VALUE words are joined\n" +
		"with single spaces, so 'portoctl set c command sleep 100' sets \"sleep 100\".",
	minArgs: 3,
	maxArgs: -1,
	setup: func(*pflag.FlagSet) runFunc {
		return func(x *CLI, args []string) int {
			c, st := x.conn()
			if c == nil {
				return st
			}
			if err := c.SetProperty(x.ctx(), args[0], args[1], strings.Join(args[2:], " ")); err != nil {
				return x.fail("set property", err)
			}
			return ExitOK
		}
	},
}

var cmdGet = &command{
	name:     "get",
	synopsis: "[-k] NAME [KEY...]",
	summary:  "get container properties and data, human readable",
	help: "With KEYs, print the value of each property or datum KEY of container NAME,\n" +
		"one per line, human readable: exit_status as \"Container exited with N\" or\n" +
		"\"Container killed by signal N\", sizes with K/M/G suffixes, cpu_usage in\n" +
		"ns/us/ms/s, time as [HH:]MM:SS; stdout and stderr as they are. With -k each\n" +
		"line is \"KEY = VALUE\". A KEY that fails is reported on stderr and the others\n" +
		"are still printed; the exit status is the first failure's.\n\n" +
		"Without KEY, print every property and datum as \"KEY = VALUE\", skipping those\n" +
		"that cannot be read in the container's state. Use dget for raw values.",
	minArgs:      1,
	maxArgs:      -1,
	interspersed: true,
	setup: func(fs *pflag.FlagSet) runFunc {
		keys := fs.BoolP("keys", "k", false, "print \"KEY = VALUE\" lines")
		return func(x *CLI, args []string) int {
			if len(args) == 1 {
				return x.getAll(args[0])
			}
			return x.getKeys("get property", args[0], args[1:], *keys, true)
		}
	},
}

var cmdDget = &command{
	name:     "dget",
	synopsis: "[-k] NAME KEY...",
	summary:  "get container data, raw",
	help: "Print the raw value of each property or datum KEY of container NAME, one per\n" +
		"line, without any post-processing (exit_status is the wait(2) status: 0, 256, 9).\n" +
		"With -k each line is \"KEY = VALUE\".",
	minArgs:      2,
	maxArgs:      -1,
	interspersed: true,
	setup: func(fs *pflag.FlagSet) runFunc {
		keys := fs.BoolP("keys", "k", false, "print \"KEY = VALUE\" lines")
		return func(x *CLI, args []string) int {
			return x.getKeys("get data", args[0], args[1:], *keys, false)
		}
	},
}

func (x *CLI) getKeys(action, name string, keys []string, printKeys, human bool) int {
	c, st := x.conn()
	if c == nil {
		return st
	}
	status := ExitOK
	for _, k := range keys {
		v, err := c.GetProperty(x.ctx(), name, k)
		if err != nil {
			if s := x.fail(action, err); status == ExitOK {
				status = s
			}
			continue
		}
		if human {
			v = HumanValue(k, v)
		}
		if printKeys {
			v = k + " = " + v
		}
		printValue(x.Stdout, v)
	}
	return status
}

// getAll prints every property and datum of name as "key = value",
// humanized, skipping those that fail (InvalidState in this state, ...).
// A failure to read "state" means the container itself is unreadable
// (ContainerDoesNotExist, Permission): that is reported and fails.
func (x *CLI) getAll(name string) int {
	c, st := x.conn()
	if c == nil {
		return st
	}
	props, err := c.ListProperties(x.ctx())
	if err != nil {
		return x.fail("get property", err)
	}
	keys := make([]string, 0, len(props))
	for _, p := range props {
		keys = append(keys, p.Name)
	}
	res, err := c.Get(x.ctx(), []string{name}, keys)
	if err != nil {
		return x.fail("get property", err)
	}
	byKey := make(map[string]api.GetResult, len(res))
	for _, r := range res {
		if r.Container == name || r.Container == "" {
			byKey[r.Key] = r
		}
	}
	if r, ok := byKey["state"]; ok && r.Err != nil {
		return x.fail("get property", r.Err)
	}
	var out strings.Builder // one write for the whole listing
	for _, k := range keys {
		r, ok := byKey[k]
		if !ok || r.Err != nil {
			continue
		}
		printValue(&out, k+" = "+listingValue(k, r.Value))
	}
	io.WriteString(x.Stdout, out.String())
	return ExitOK
}

var cmdList = &command{
	name:     "list",
	synopsis: "[-1]",
	summary:  "list containers",
	help: "List containers (not the root \"/\"): name, state and, for running, meta and\n" +
		"dead ones, the time since start as [HH:]MM:SS. With -1, names only.",
	minArgs:      0,
	maxArgs:      0,
	interspersed: true,
	setup: func(fs *pflag.FlagSet) runFunc {
		namesOnly := fs.BoolP("one", "1", false, "print names only")
		return func(x *CLI, args []string) int {
			c, st := x.conn()
			if c == nil {
				return st
			}
			all, err := c.List(x.ctx())
			if err != nil {
				return x.fail("list containers", err)
			}
			names := make([]string, 0, len(all))
			for _, n := range all {
				if n != api.RootName && n != "" {
					names = append(names, n)
				}
			}
			// The listing is built in memory and written at once: one
			// write, not one per container.
			var out []byte
			if *namesOnly {
				for _, n := range names {
					out = append(append(out, n...), '\n')
				}
				x.Stdout.Write(out)
				return ExitOK
			}
			if len(names) == 0 {
				return ExitOK
			}
			keys := []string{"state", "time"}
			res, err := c.Get(x.ctx(), names, keys)
			if err != nil {
				return x.fail("list containers", err)
			}
			cells := cellIndex{res: res, keys: keys}
			nameLen := fieldWidth(names, 0)
			const stateLen, timeLen = 9, 12
			out = make([]byte, 0, len(names)*(nameLen+stateLen+timeLen+1))
			for i, n := range names {
				state := cells.get(i, n, 0)
				if state.Err != nil && state.Err.Code == api.ContainerDoesNotExist {
					continue // destroyed meanwhile
				}
				out = padRight(out, n, nameLen)
				switch {
				case state.Err != nil && state.Err.Code == api.Busy:
					out = padLeft(out, "busy", stateLen)
				case state.Err != nil:
					out = padLeft(out, state.Err.Message(), stateLen)
				default:
					out = padLeft(out, state.Value, stateLen)
				}
				switch api.State(state.Value) {
				case api.StateRunning, api.StateMeta, api.StateDead:
					if t := cells.get(i, n, 1); t.Err == nil && t.Value != "" {
						out = padLeft(out, HumanValue("time", t.Value), timeLen)
					}
				}
				out = append(out, '\n')
			}
			x.Stdout.Write(out)
			return ExitOK
		}
	},
}

// cellIndex finds the cell of a container and key in the result of a Get
// of names x keys. portod answers in that order, so the cell is first
// looked for where it should be; a map is built only if it is not there.
type cellIndex struct {
	res  []api.GetResult
	keys []string
	m    map[cell]api.GetResult
}

// get returns the cell of key keys[k] of name, the i-th name asked for
// (a zero GetResult if there is none).
func (ci *cellIndex) get(i int, name string, k int) api.GetResult {
	key := ci.keys[k]
	if j := i*len(ci.keys) + k; j < len(ci.res) && ci.res[j].Container == name && ci.res[j].Key == key {
		return ci.res[j]
	}
	if ci.m == nil {
		ci.m = index(ci.res)
	}
	return ci.m[cell{name, key}]
}

// padRight appends s left-aligned in a field of width runes, as
// fmt's "%-*s" does.
func padRight(b []byte, s string, width int) []byte {
	b = append(b, s...)
	for n := utf8.RuneCountInString(s); n < width; n++ {
		b = append(b, ' ')
	}
	return b
}

// padLeft appends s right-aligned in a field of width runes, as fmt's
// "%*s" does.
func padLeft(b []byte, s string, width int) []byte {
	for n := utf8.RuneCountInString(s); n < width; n++ {
		b = append(b, ' ')
	}
	return append(b, s...)
}

type cell struct{ container, key string }

func index(res []api.GetResult) map[cell]api.GetResult {
	m := make(map[cell]api.GetResult, len(res))
	for _, r := range res {
		m[cell{r.Container, r.Key}] = r
	}
	return m
}

// fieldWidth is the width of a column holding vals: the longest (at least
// min) plus one space, as old Porto's MaxFieldLength computed it.
func fieldWidth(vals []string, min int) int {
	w := min
	for _, v := range vals {
		w = max(w, len(v))
	}
	return w + 1
}

// exitTimeout is wait's exit status on timeout: old Porto's launcher
// reported a wait timeout as EError Busy.
var exitTimeout = api.Busy.ExitStatus()

var cmdWait = &command{
	name:     "wait",
	synopsis: "[-t SECONDS] NAME...",
	summary:  "wait for containers to finish",
	help: "Wait until one of the containers NAME is dead or stopped and print its name.\n" +
		"With -t, give up after SECONDS: print \"timeout\" on stderr and exit with\n" +
		"status " + strconv.Itoa(api.Busy.ExitStatus()) + " (Busy).",
	minArgs:      1,
	maxArgs:      -1,
	interspersed: true,
	setup: func(fs *pflag.FlagSet) runFunc {
		secs := fs.Float64P("timeout", "t", -1, "wait at most `SECONDS` (default: for ever)")
		fs.Float64VarP(secs, "timeout-seconds", "T", -1, "same as -t (new Porto's spelling)")
		fs.Lookup("timeout-seconds").Hidden = true
		return func(x *CLI, args []string) int {
			c, st := x.conn()
			if c == nil {
				return st
			}
			name, err := c.Wait(x.ctx(), args, seconds(*secs))
			if err != nil {
				return x.fail("wait container", err)
			}
			if name == "" {
				fmt.Fprintln(x.Stderr, "timeout")
				return exitTimeout
			}
			fmt.Fprintln(x.Stdout, name)
			return ExitOK
		}
	},
}

var cmdProperties = &command{
	name:     "properties",
	synopsis: "",
	summary:  "list properties and data with their descriptions",
	help: "List the properties (settable; \"dynamic\" ones also while running) and the\n" +
		"data (read-only) that get, set and dget accept, with their descriptions.",
	minArgs: 0,
	maxArgs: 0,
	setup: func(*pflag.FlagSet) runFunc {
		return func(x *CLI, args []string) int {
			c, st := x.conn()
			if c == nil {
				return st
			}
			props, err := c.ListProperties(x.ctx())
			if err != nil {
				return x.fail("list properties", err)
			}
			var names []string
			for _, p := range props {
				names = append(names, p.Name)
			}
			w := fieldWidth(names, 0) + 1
			var out strings.Builder // one write for the whole listing
			for _, section := range []struct {
				title string
				data  bool
			}{{"Properties:", false}, {"Data:", true}} {
				fmt.Fprintln(&out, section.title)
				for _, p := range props {
					if p.ReadOnly != section.data {
						continue
					}
					d := p.Description
					if p.Dynamic && !p.ReadOnly {
						d += " (dynamic)"
					}
					fmt.Fprintf(&out, "  %-*s%s\n", w, p.Name, d)
				}
				if !section.data {
					fmt.Fprintln(&out)
				}
			}
			io.WriteString(x.Stdout, out.String())
			return ExitOK
		}
	},
}

var cmdVersion = &command{
	name:     "version",
	synopsis: "",
	summary:  "print client and daemon versions",
	help:     "Print the version of portoctl and of the running portod.",
	minArgs:  0,
	maxArgs:  0,
	setup: func(*pflag.FlagSet) runFunc {
		return func(x *CLI, args []string) int {
			fmt.Fprintf(x.Stdout, "client: %s\n", api.Version)
			c, st := x.conn()
			if c == nil {
				return st
			}
			v, err := c.Version(x.ctx())
			if err != nil {
				return x.fail("get version", err)
			}
			fmt.Fprintf(x.Stdout, "server: %s\n", v)
			return ExitOK
		}
	},
}
