package ctl

import (
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/porto-dev/porto/api"
)

type scenario struct {
	title string
	setup func(f *fake)
	cmds  []string // command lines, split as sh would
	mod   func(*CLI)
}

// running makes a running container "a" owned by the caller.
func running(f *fake, name, cmd string) {
	f.cts[name] = &fakeCt{name: name, state: api.StateRunning, owner: f.caller,
		props: map[string]string{"command": cmd},
		data: map[string]string{"root_pid": "4242", "cpu_usage": "123456789", "memory_usage": "1073741824",
			"major_faults": "3", "minor_faults": "1200", "net_packets": "eth0: 10", "time": "3725",
			"stdout": "line 1\nline 2\n", "stderr": ""}}
}

func dead(f *fake, name string, status string) {
	f.cts[name] = &fakeCt{name: name, state: api.StateDead, owner: f.caller,
		props: map[string]string{"command": "false"},
		data: map[string]string{"exit_status": status, "oom_killed": "false", "cpu_usage": "999",
			"memory_usage": "1024", "major_faults": "0", "minor_faults": "5", "net_packets": "", "time": "59",
			"stdout": "", "stderr": "oops"}}
}

func stopped(f *fake, name string) {
	f.cts[name] = &fakeCt{name: name, state: api.StateStopped, owner: f.caller,
		props: map[string]string{}, data: map[string]string{}}
}

var scenarios = []scenario{
	// run: property syntax.
	{title: "run key=value in one word, values with = and spaces", cmds: []string{
		`run a command="bash -c 'A=1 env'" env="A=1; B=2" isolate=false`,
	}},
	{title: "run key = value over three words (the seed's ulimit form)", cmds: []string{
		`run a command = "sleep 1000" ulimit = "nproc: 20480 30720; nofile: 4096 8192"`,
	}},
	{title: "run key= value and key =value", cmds: []string{
		`run a command= "sleep 1000" cwd =/tmp env= "A=1; B=2"`,
	}},
	{title: "run key= followed by another property or nothing sets an empty value", cmds: []string{
		`run a command=true env= isolate=false cwd=`,
	}},
	{title: "run with an empty value in three words at the end", cmds: []string{
		`run a command=true env =`,
	}},
	{title: "run with a word that is not a property creates nothing", cmds: []string{
		`run a command=true sleep`,
		`run a = true`,
		`list`,
	}},
	{title: "run without properties", cmds: []string{`run a`}},

	// run: failures destroy what run created, and only that.
	{title: "run: a set failure destroys the container", cmds: []string{
		`run a command=true nosuch=1`,
		`list -1`,
	}},
	{title: "run: a start failure destroys the container (and says 'start property', as the seed)", cmds: []string{
		`run a command=__invalid_command__`,
		`list -1`,
	}},
	{title: "run: an existing container is not destroyed", setup: func(f *fake) { running(f, "a", "sleep 1") }, cmds: []string{
		`run a command=true`,
		`list -1`,
	}},
	{title: "run: a failed destroy after a failure is reported too; the status stays the first error's",
		setup: func(f *fake) { f.errs["Destroy a"] = api.Errorf(api.Busy, "container is busy") },
		cmds:  []string{`run a command=true nosuch=1`}},
	{title: "run: non-root user= is Permission and leaves nothing", cmds: []string{
		`run id command="id" user="daemon"`,
		`list -1`,
	}},

	// simple commands.
	{title: "create, start, pause, resume, stop, destroy", cmds: []string{
		`create a b`,
		`set a command sleep 1000`,
		`start a`,
		`pause a`,
		`get a state`,
		`resume a`,
		`stop a`,
		`stop -t 2.5 a`,
		`stop a -t 0`,
		`stop -T 3 a`,
		`destroy a b`,
	}},
	{title: "create stops at the first failure; destroy tries every name", setup: func(f *fake) { stopped(f, "b") }, cmds: []string{
		`create a b c`,
		`destroy x a y`,
		`list -1`,
	}},
	{title: "error lines and exit statuses of each command", setup: func(f *fake) { stopped(f, "s") }, cmds: []string{
		`create bad/../name`,
		`create s`,
		`start nosuch`,
		`stop nosuch`,
		`kill s`,
		`pause s`,
		`resume s`,
		`set s nosuch 1`,
		`set nosuch command true`,
		`get s nosuch`,
		`get s exit_status`,
		`dget s root_pid`,
		`wait nosuch`,
		`destroy nosuch`,
	}},
	{title: "set joins value words with spaces", setup: func(f *fake) { stopped(f, "a") }, cmds: []string{
		`set a command sleep 100`,
		`set a env "A=1; B=2"`,
		`set a env ""`,
		`set a command ls -l /`,
		`get a command`,
	}},

	// kill.
	{title: "kill: default SIGTERM, numbers and names", cmds: []string{
		`kill a`, `kill a 9`, `kill a KILL`, `kill a SIGKILL`, `kill a sigusr1`, `kill a -9`, `kill a RTMIN+2`,
	}, setup: func(f *fake) { running(f, "a", "sleep 1") }},
	{title: "kill: a bad signal is refused before calling portod", cmds: []string{
		`kill a FOO`, `kill a 0`, `kill a 65`,
	}},

	// get / dget.
	{title: "get humanizes; dget is raw", setup: func(f *fake) {
		running(f, "r", "sleep 1")
		f.cts["r"].props["memory_limit"] = "1073741824"
		dead(f, "d", "256")
		dead(f, "k", "9")
		dead(f, "core", "139")
	}, cmds: []string{
		`get d exit_status`, `dget d exit_status`,
		`get k exit_status`, `dget k exit_status`,
		`get core exit_status`,
		`get r memory_limit`, `dget r memory_limit`,
		`get r memory_usage`, `get r cpu_usage`, `dget r cpu_usage`,
		`get r time`, `get d time`,
		`get r stdout`, `get d stderr`, `get d stdout`,
	}},
	{title: "get with several keys: one value per line, -k for key = value; errors do not stop the others", setup: func(f *fake) {
		running(f, "r", "sleep 1")
	}, cmds: []string{
		`get r state root_pid memory_usage`,
		`get -k r state root_pid memory_usage`,
		`get r state exit_status root_pid`,
		`dget -k r state cpu_usage`,
	}},
	{title: "get NAME lists every readable property and datum", setup: func(f *fake) {
		running(f, "r", "sleep 1000")
		f.cts["r"].props["env"] = "A=1; B=2"
		dead(f, "d", "256")
		stopped(f, "s")
	}, cmds: []string{`get r`, `get d`, `get s`, `get nosuch`}},
	{title: "get NAME cuts a long stdout in the listing", setup: func(f *fake) {
		dead(f, "d", "0")
		f.cts["d"].data["stdout"] = strings.Repeat("a", 2047) + "\n" + strings.Repeat("b", 3000) + "\n" + strings.Repeat("c", 2047) + "\n"
	}, cmds: []string{`get d`}},

	// list.
	{title: "list: name, state and time; -1 names only; / is not listed", setup: func(f *fake) {
		running(f, "web", "sleep 1")
		running(f, "web/worker-1", "sleep 1")
		dead(f, "batch", "0")
		stopped(f, "idle")
		f.cts["meta"] = &fakeCt{name: "meta", state: api.StateMeta, owner: f.caller, props: map[string]string{},
			data: map[string]string{"time": "86399"}}
		f.cts["p"] = &fakeCt{name: "p", state: api.StatePaused, owner: f.caller, props: map[string]string{}, data: map[string]string{"time": "1"}}
	}, cmds: []string{`list`, `list -1`, `ls -1`}},
	{title: "list with no containers", cmds: []string{`list`, `list -1`}},

	// wait.
	{title: "wait prints the container that finished", setup: func(f *fake) {
		dead(f, "a", "0")
		running(f, "b", "sleep 1")
		f.waitResult = "a"
	}, cmds: []string{`wait a b`, `wait -t 1.5 a b`, `wait a b -t 0`}},
	{title: "wait timeout prints timeout on stderr", setup: func(f *fake) { running(f, "b", "sleep 1") },
		cmds: []string{`wait -t 1 b`}},

	// top.
	{title: "top snapshot (stdout not a terminal): running, paused and dead ones, by cpu_usage", setup: func(f *fake) {
		running(f, "a", "sleep 1")
		running(f, "a-long-container-name/child", "sleep 1")
		f.cts["a-long-container-name/child"].data["cpu_usage"] = "5000000000"
		f.cts["a-long-container-name"] = &fakeCt{name: "a-long-container-name", state: api.StateMeta, owner: f.caller, props: map[string]string{}, data: map[string]string{}}
		dead(f, "d", "0")
		stopped(f, "s")
	}, cmds: []string{`top`}},
	{title: "top with no containers", cmds: []string{`top`}},
	{title: "top on a terminal redraws, sorts by the key pressed and quits with q", setup: func(f *fake) {
		running(f, "a", "sleep 1")
		dead(f, "b", "0")
		f.cts["b"].data["minor_faults"] = "99999"
	}, cmds: []string{`top`}, mod: func(c *CLI) {
		c.Terminal = true
		c.Stdin = strings.NewReader("4x0q")
	}},
	{title: "top -b on a terminal prints once", setup: func(f *fake) { running(f, "a", "sleep 1") },
		cmds: []string{`top -b`}, mod: func(c *CLI) { c.Terminal = true }},

	// properties, version.
	{title: "properties and plist", cmds: []string{`properties`, `plist`}},
	{title: "version", cmds: []string{`version`, `--version`}},
	{title: "version with a failing daemon", setup: func(f *fake) { f.errs["Version"] = errors.New("org.freedesktop.DBus.Error.NoReply: no reply") },
		cmds: []string{`version`}},

	// command line errors: usage on stderr, status 2, no call to portod.
	{title: "command line errors", cmds: []string{
		``, `nosuch`, `create`, `set a command`, `kill a 9 extra`, `list extra`, `get`, `dget a`,
		`stop --bogus a`, `wait -t x a`,
	}},
}

func TestScenarios(t *testing.T) {
	var out strings.Builder
	for _, sc := range scenarios {
		f := newFake()
		if sc.setup != nil {
			sc.setup(f)
		}
		out.WriteString("## " + sc.title + "\n")
		for _, line := range sc.cmds {
			args := shellWords(line)
			f.log = nil
			var r result
			if sc.mod != nil {
				r = runCLI(f, args, sc.mod)
			} else {
				r = runCLI(f, args)
			}
			out.WriteString("$ portoctl " + line + "\n" + r.all)
			if r.status != 0 {
				out.WriteString("[exit status " + strconv.Itoa(r.status) + "]\n")
			}
			out.WriteString("calls: " + strings.Join(f.log, "; ") + "\n")
			checkStreams(t, line, r)
		}
		out.WriteString("\n")
	}
	golden(t, "scenarios.golden", out.String())
}

// checkStreams: errors and usage on a failure go to stderr, the rest to
// stdout, and the exit status is non-zero exactly when stderr is used.
func checkStreams(t *testing.T, line string, r result) {
	t.Helper()
	for _, l := range strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n") {
		if strings.HasPrefix(l, "Can't ") || l == "timeout" {
			t.Errorf("$ portoctl %s: error line %q on stdout", line, l)
		}
	}
	if (r.stderr != "") != (r.status != 0) {
		t.Errorf("$ portoctl %s: stderr %q with exit status %d", line, r.stderr, r.status)
	}
}

func TestExitStatusIsTheCodes(t *testing.T) {
	for _, code := range api.Codes() {
		if code == api.Success {
			continue
		}
		f := newFake()
		f.errs["Create"] = api.Errorf(code, "boom")
		r := runCLI(f, []string{"create", "a"})
		want := "Can't create container: " + code.String() + " (boom)\n"
		if r.stderr != want || r.status != code.ExitStatus() || r.status == 0 {
			t.Errorf("%v: got %q status %d, want %q status %d", code, r.stderr, r.status, want, code.ExitStatus())
		}
	}
	// A plain error (not an *api.Error) is Unknown.
	f := newFake()
	f.errs["Create"] = errors.New("connection reset")
	if r := runCLI(f, []string{"create", "a"}); r.stderr != "Can't create container: Unknown (connection reset)\n" || r.status != 1 {
		t.Errorf("plain error: %q %d", r.stderr, r.status)
	}
}

func TestDialFailure(t *testing.T) {
	var out, errb strings.Builder
	c := &CLI{Stdout: &out, Stderr: &errb, Dial: func() (Client, func(), error) {
		return nil, nil, errors.New("dial unix /run/dbus/system_bus_socket: connect: no such file or directory")
	}}
	st := c.Run([]string{"list"})
	if st != 1 || out.String() != "" ||
		errb.String() != "Can't connect to portod: Unknown (dial unix /run/dbus/system_bus_socket: connect: no such file or directory)\n" {
		t.Errorf("got %q %q %d", out.String(), errb.String(), st)
	}
}

func TestAgentStartedOnceAndStopped(t *testing.T) {
	f := newFake()
	var events []string
	r := runCLI(f, []string{"run", "a", "command=true"}, func(c *CLI) {
		c.StartAgent = func() func() {
			events = append(events, "agent start")
			return func() { events = append(events, "agent stop") }
		}
	})
	if r.status != 0 || strings.Join(events, ",") != "agent start,agent stop" {
		t.Errorf("status %d, events %v", r.status, events)
	}
	events = nil
	runCLI(nil, []string{"run", "--help"}, func(c *CLI) {
		c.StartAgent = func() func() { events = append(events, "agent start"); return func() {} }
	})
	if len(events) != 0 {
		t.Errorf("--help started the agent")
	}
	for _, args := range [][]string{{"list"}, {"get", "a", "state"}, {"top"}, {"version"}} {
		runCLI(f, args, func(c *CLI) {
			c.StartAgent = func() func() { events = append(events, "agent start"); return func() {} }
		})
		if len(events) != 0 {
			t.Errorf("%v (read-only) started the agent", args)
			events = nil
		}
	}
}
