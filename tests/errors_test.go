package tests

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Bad input through portoctl: every class of error the issue names, with
// the EError in the message and a non-zero exit; and --help everywhere.

func TestBadInput(t *testing.T) { forEachTransport(t, testBadInput) }

func testBadInput(t *testing.T, e *Env) {
	forEachUser(t, e, "errors", func(t *testing.T, u *User) {
		// Names.
		for _, n := range []string{"bad name", "a$", "/abs", "a//b", "a/../b", "..", "ы", strings.Repeat("n", 129), strings.Repeat("a/", 100) + "a"} {
			e.FailWith(t, u, "InvalidValue", "create", n)
		}
		e.OK(t, u, "create", strings.Repeat("n", 128))
		e.OK(t, u, "destroy", strings.Repeat("n", 128))
		e.OK(t, u, "create", "ok_-@:.name")
		e.OK(t, u, "destroy", "ok_-@:.name")

		// Missing and duplicate containers.
		for _, args := range [][]string{
			{"start", "nosuch"}, {"stop", "nosuch"}, {"kill", "nosuch"}, {"pause", "nosuch"}, {"resume", "nosuch"},
			{"destroy", "nosuch"}, {"get", "nosuch", "state"}, {"set", "nosuch", "command", "true"}, {"create", "nosuch/child"},
		} {
			e.FailWith(t, u, "ContainerDoesNotExist", args...)
		}
		e.OK(t, u, "create", "c")
		e.FailWith(t, u, "ContainerAlreadyExists", "create", "c")

		// Properties and values.
		e.FailWith(t, u, "InvalidProperty", "get", "c", "no_such_property")
		e.FailWith(t, u, "InvalidProperty", "set", "c", "no_such_property", "1")
		e.FailWith(t, u, "InvalidValue", "set", "c", "isolate", "maybe")
		e.FailWith(t, u, "InvalidValue", "set", "c", "ulimit", "nofile: x y")
		e.FailWith(t, u, "InvalidValue", "set", "c", "ulimit", "no_such_limit: 1 2")
		e.FailWith(t, u, "InvalidValue", "set", "c", "stdout_limit", "lots")

		// Data not valid in the current state.
		for _, d := range []string{"exit_status", "oom_killed", "root_pid", "stdout"} {
			e.FailWith(t, u, "InvalidState", "get", "c", d)
		}
		e.FailWith(t, u, "InvalidState", "kill", "c", "9")
		e.FailWith(t, u, "InvalidState", "resume", "c")
		e.OK(t, u, "set", "c", "command", "sleep 1000")
		e.OK(t, u, "start", "c")
		e.FailWith(t, u, "InvalidState", "start", "c")
		e.FailWith(t, u, "InvalidState", "get", "c", "exit_status")
		e.FailWith(t, u, "InvalidState", "set", "c", "command", "true")
		e.FailWith(t, u, "InvalidState", "resume", "c")
		e.OK(t, u, "pause", "c")
		e.Expect(t, u, "paused", "get", "c", "state")
		e.FailWith(t, u, "InvalidState", "pause", "c")
		e.OK(t, u, "resume", "c")
		e.Expect(t, u, "running", "get", "c", "state")
		e.OK(t, u, "kill", "c", "9")
		e.WaitState(t, u, "c", "dead")
		e.FailWith(t, u, "InvalidState", "start", "c")
		e.FailWith(t, u, "InvalidState", "get", "c", "root_pid")
		e.OK(t, u, "stop", "c")
		e.Expect(t, u, "stopped", "get", "c", "state")
		e.OK(t, u, "destroy", "c")

		// Root-only things.
		e.FailWith(t, u, "Permission", "destroy", "/")
		if !u.Root() {
			e.OK(t, u, "create", "c")
			e.Fail(t, u, "Can't set property: Permission (Only root can change this property)", "set", "c", "user", "root")
			e.Fail(t, u, "Can't set property: Permission (Only root can change this property)", "set", "c", "group", "root")
			e.OK(t, u, "destroy", "c")
		}
	})
}

func TestHelp(t *testing.T) {
	e := NewEnv(t)
	for _, cmd := range []string{"run", "create", "set", "get", "dget", "start", "stop", "kill", "pause", "resume", "destroy", "list", "wait"} {
		r := e.Ctl(rootUser, cmd, "--help")
		if r.Code != 0 || !strings.Contains(r.Stdout+r.Stderr, cmd) {
			t.Errorf("portoctl %s --help: %s", cmd, r)
		}
	}
	if r := e.Ctl(rootUser, "no-such-command"); r.Code == 0 {
		t.Errorf("portoctl no-such-command succeeded: %s", r)
	}
	if r := e.Ctl(rootUser, "get"); r.Code == 0 {
		t.Errorf("portoctl get without a name succeeded: %s", r)
	}
}

// A bad porto.conf stops portod at start-up with a message naming the key.
func TestConfigErrors(t *testing.T) {
	requireRoot(t)
	bin := binDir(t)
	dir := t.TempDir()
	for _, c := range []struct{ conf, want string }{
		{"no_such_key = 1\n", "no_such_key"},
		{"max_containers = lots\n", "max_containers"},
		{"cgroup_driver = magic\n", "cgroup_driver"},
		{"stop_timeout = forever\n", "stop_timeout"},
		{"state_dir = relative/path\n", "state_dir"},
		{"this line has no equals sign\n", "this line"},
	} {
		path := filepath.Join(dir, "porto.conf")
		if err := os.WriteFile(path, []byte("# test\n"+c.conf), 0o644); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		cmd := exec.CommandContext(ctx, filepath.Join(bin, "portod"), "--config", path)
		cmd.Env = []string{"PATH=/usr/bin:/bin", "DBUS_SYSTEM_BUS_ADDRESS=unix:path=" + filepath.Join(dir, "no-bus")}
		out, err := cmd.CombinedOutput()
		timedOut := ctx.Err() != nil
		cancel()
		if err == nil || timedOut {
			t.Errorf("portod with %q: want a start-up error, got %v: %s", c.conf, err, out)
			continue
		}
		if !strings.Contains(string(out), c.want) {
			t.Errorf("portod with %q: message %q does not name %q", c.conf, out, c.want)
		}
	}
	if r, err := exec.Command(filepath.Join(bin, "portod"), "--config", filepath.Join(dir, "missing.conf")).CombinedOutput(); err == nil {
		t.Errorf("portod with a missing --config file started: %s", r)
	}
}
