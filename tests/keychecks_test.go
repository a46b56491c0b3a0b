package tests

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/porto-dev/porto/api"
)

// The reference's "30 key checks" (docs/porto-reference.md §4), black-box
// through bin/portoctl (and api/client where portoctl cannot express the
// call: a combined Get, an empty wait list, a wait with a measured zero
// timeout). One subtest per check, named by its number.
//
// Where this project's decisions ("Target semantics" and the seed) differ
// from the table, the seed wins; each such place says so.

// procState is the state letter of /proc/PID/stat ("" when gone).
func procState(pid int) string {
	p, ok := readProc(pid)
	if !ok {
		return ""
	}
	return p.state
}

// waitGoneName polls until name no longer exists (within d).
func (e *Env) waitGoneName(t *testing.T, u *User, name string, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		r := e.Ctl(u, "get", name, "state")
		if r.Code != 0 && strings.Contains(r.Stderr, ": ContainerDoesNotExist (") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s still exists after %v: %s", name, d, r)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// expectEnvLines checks that every want line is among the lines of out.
func expectEnvLines(t *testing.T, out string, want ...string) {
	t.Helper()
	lines := strings.Split(out, "\n")
	for _, w := range want {
		if !slices.Contains(lines, w) {
			t.Errorf("env lacks %q:\n%s", w, out)
		}
	}
}

func TestKeyChecks(t *testing.T) {
	e := NewEnv(t)
	ctx := context.Background()
	root := rootUser

	// 1: create ⇒ listed, state=stopped; second create ⇒ ContainerAlreadyExists.
	t.Run("01-create", func(t *testing.T) {
		e.CleanupContainers(t)
		e.OK(t, root, "create", "a")
		if got := e.Out(t, root, "list"); strings.Join(strings.Fields(got), " ") != "a stopped" {
			t.Errorf("portoctl list = %q, want \"a stopped\"", got)
		}
		e.Expect(t, root, "a", "list", "-1")
		e.Expect(t, root, "stopped", "get", "a", "state")
		e.Fail(t, root, `Can't create container: ContainerAlreadyExists (container "a" already exists)`, "create", "a")
	})

	// 2: start/stop/pause/resume/get/set on a missing container ⇒
	// ContainerDoesNotExist (and kill, destroy, wait, dget too).
	t.Run("02-missing", func(t *testing.T) {
		e.CleanupContainers(t)
		for _, args := range [][]string{
			{"start", "nope"}, {"stop", "nope"}, {"pause", "nope"}, {"resume", "nope"},
			{"get", "nope", "state"}, {"set", "nope", "command", "true"}, {"kill", "nope", "9"},
			{"destroy", "nope"}, {"wait", "nope"}, {"dget", "nope", "state"}, {"create", "nope/child"},
		} {
			e.FailWith(t, root, "ContainerDoesNotExist", args...)
		}
	})

	// 3: names: [A-Za-z0-9_-@:.], component ≤ 128 OK, 129 ⇒ InvalidValue,
	// path ≤ 200 (201 ⇒ InvalidValue), z$ / /x / UTF-8 ⇒ InvalidValue.
	t.Run("03-names", func(t *testing.T) {
		e.CleanupContainers(t)
		good := []string{"abcXYZ019_-@:.", strings.Repeat("x", 128), "a.b", "-", "@:"}
		for _, n := range good {
			e.OK(t, root, "create", n)
			e.Expect(t, root, "stopped", "get", n, "state")
		}
		// A 200-byte path: 100 + "/" + 99.
		p := strings.Repeat("p", 100)
		e.OK(t, root, "create", p)
		e.OK(t, root, "create", p+"/"+strings.Repeat("q", 99))
		e.FailWith(t, root, "InvalidValue", "create", p+"/"+strings.Repeat("q", 100))
		bad := []string{strings.Repeat("y", 129), "z$", "/x", "ж", "a b", "a//b", "x/", ".", "..", "a/../b", "a*", ""}
		for _, n := range bad {
			e.FailWith(t, root, "InvalidValue", "create", n)
		}
		for _, n := range good {
			e.OK(t, root, "destroy", n)
		}
		e.OK(t, root, "destroy", p)
	})

	// 4: create a/b without a ⇒ ContainerDoesNotExist; destroy a removes a/b.
	t.Run("04-parent", func(t *testing.T) {
		e.CleanupContainers(t)
		e.Fail(t, root, `Can't create container: ContainerDoesNotExist (parent container "a" does not exist)`, "create", "a/b")
		e.OK(t, root, "create", "a")
		e.OK(t, root, "create", "a/b")
		e.OK(t, root, "create", "a/b/c")
		e.OK(t, root, "create", "a2")
		e.Expect(t, root, "a\na/b\na/b/c\na2", "list", "-1")
		e.Expect(t, root, "a/b", "get", "a/b/c", "parent")
		e.OK(t, root, "destroy", "a")
		for _, n := range []string{"a", "a/b", "a/b/c"} {
			e.FailWith(t, root, "ContainerDoesNotExist", "get", n, "state")
		}
		e.Expect(t, root, "a2", "list", "-1")
	})

	// 5: destroy "/" ⇒ Permission; destroy of a missing or invalid name ⇒
	// ContainerDoesNotExist.
	t.Run("05-destroy", func(t *testing.T) {
		e.CleanupContainers(t)
		e.FailWith(t, root, "Permission", "destroy", "/")
		e.FailWith(t, root, "ContainerDoesNotExist", "destroy", "missing")
		e.FailWith(t, root, "ContainerDoesNotExist", "destroy", "z$")
	})

	// 6: start a/b/c with empty parents ⇒ a, a/b = meta, a/b/c = running.
	// Stopped ancestors with a command start with it (reference §2).
	t.Run("06-start-parents", func(t *testing.T) {
		e.CleanupContainers(t)
		for _, n := range []string{"a", "a/b", "a/b/c"} {
			e.OK(t, root, "create", n)
		}
		e.OK(t, root, "set", "a/b/c", "command", "sleep 1000")
		e.OK(t, root, "start", "a/b/c")
		e.Expect(t, root, "meta", "get", "a", "state")
		e.Expect(t, root, "meta", "get", "a/b", "state")
		e.Expect(t, root, "running", "get", "a/b/c", "state")

		e.OK(t, root, "create", "x")
		e.OK(t, root, "set", "x", "command", "sleep 1000")
		e.OK(t, root, "create", "x/y")
		e.OK(t, root, "run", "x/y/z", "command=sleep 1000")
		e.Expect(t, root, "running", "get", "x", "state")
		e.Expect(t, root, "meta", "get", "x/y", "state")
		e.Expect(t, root, "running", "get", "x/y/z", "state")
	})

	// 7: stop a/b ⇒ a/b and a/b/c stopped, a stays running.
	t.Run("07-stop-subtree", func(t *testing.T) {
		e.CleanupContainers(t)
		e.OK(t, root, "run", "a", "command=sleep 1000")
		e.OK(t, root, "run", "a/b", "command=sleep 1000")
		e.OK(t, root, "run", "a/b/c", "command=sleep 1000")
		pb, pc := rootPid(t, e, root, "a/b"), rootPid(t, e, root, "a/b/c")
		e.OK(t, root, "stop", "a/b")
		e.Expect(t, root, "stopped", "get", "a/b", "state")
		e.Expect(t, root, "stopped", "get", "a/b/c", "state")
		e.Expect(t, root, "running", "get", "a", "state")
		procGone(t, pb, "sleep 1000")
		procGone(t, pc, "sleep 1000")
		// Restartable, and the same holds under a meta parent.
		e.OK(t, root, "start", "a/b/c")
		e.Expect(t, root, "running", "get", "a/b", "state")
		e.Expect(t, root, "running", "get", "a/b/c", "state")

		e.OK(t, root, "create", "m")
		e.OK(t, root, "create", "m/b")
		e.OK(t, root, "run", "m/b/c", "command=sleep 1000")
		e.OK(t, root, "stop", "m/b")
		e.Expect(t, root, "stopped", "get", "m/b", "state")
		e.Expect(t, root, "stopped", "get", "m/b/c", "state")
		e.Expect(t, root, "meta", "get", "m", "state")
	})

	// 8: parent a/b dies ⇒ a/b and a/b/c dead (a stays running).
	t.Run("08-parent-death", func(t *testing.T) {
		e.CleanupContainers(t)
		e.OK(t, root, "run", "a", "command=sleep 1000")
		e.OK(t, root, "run", "a/b", "command=sleep 1000")
		e.OK(t, root, "run", "a/b/c", "command=sleep 1000")
		pc := rootPid(t, e, root, "a/b/c")
		syscall.Kill(rootPid(t, e, root, "a/b"), syscall.SIGKILL)
		e.WaitState(t, root, "a/b", "dead")
		e.WaitState(t, root, "a/b/c", "dead")
		e.Expect(t, root, "running", "get", "a", "state")
		e.Expect(t, root, "Container killed by signal 9", "get", "a/b", "exit_status")
		procGone(t, pc, "sleep 1000")
	})

	// 9: start of a dead container ⇒ InvalidState (stop first).
	t.Run("09-start-dead", func(t *testing.T) {
		e.CleanupContainers(t)
		e.OK(t, root, "run", "d", "command=true")
		e.WaitState(t, root, "d", "dead")
		e.FailWith(t, root, "InvalidState", "start", "d")
		e.OK(t, root, "stop", "d")
		e.Expect(t, root, "stopped", "get", "d", "state")
		e.OK(t, root, "start", "d")
		e.WaitState(t, root, "d", "dead")
	})

	// 10: a failing child start leaves the parent meta and siblings
	// running. The reference says InvalidCommand; the seed (normative)
	// reports a failed exec as Unknown with the errno text.
	t.Run("10-failed-child", func(t *testing.T) {
		e.CleanupContainers(t)
		e.OK(t, root, "create", "a")
		e.OK(t, root, "run", "a/ok", "command=sleep 1000")
		e.OK(t, root, "create", "a/bad")
		e.OK(t, root, "set", "a/bad", "command", "__invalid_command__")
		e.Fail(t, root, "Can't start container: Unknown (No such file or directory: execvpe(__invalid_command__))", "start", "a/bad")
		e.Expect(t, root, "meta", "get", "a", "state")
		e.Expect(t, root, "running", "get", "a/ok", "state")
		e.Expect(t, root, "stopped", "get", "a/bad", "state")
		e.Expect(t, root, "2", "get", "a/bad", "start_errno")
	})

	// 11: combined Get: an unknown variable gets a per-key InvalidProperty,
	// the others succeed.
	t.Run("11-combined-get", func(t *testing.T) {
		e.CleanupContainers(t)
		c := e.hClient(t)
		e.OK(t, root, "run", "g", "command=true")
		e.WaitState(t, root, "g", "dead")
		cells, err := c.Get(ctx, []string{"g", "missing"}, []string{"state", "no_such_variable", "exit_status"})
		if err != nil {
			t.Fatalf("Get: %v", err)
		}
		got := map[string]string{}
		for _, cell := range cells {
			v := cell.Value
			if cell.Err != nil {
				v = "error " + cell.Err.Code.String()
			}
			got[cell.Container+" "+cell.Key] = v
		}
		want := map[string]string{
			"g state": "dead", "g no_such_variable": "error InvalidProperty", "g exit_status": "0",
			"missing state": "error ContainerDoesNotExist", "missing no_such_variable": "error ContainerDoesNotExist",
			"missing exit_status": "error ContainerDoesNotExist",
		}
		for k, w := range want {
			if got[k] != w {
				t.Errorf("Get cell %q = %q, want %q", k, got[k], w)
			}
		}
		// portoctl get with several keys: the good ones print, the bad one
		// is reported on stderr, the exit status is the failure's.
		r := e.Ctl(root, "get", "g", "state", "no_such_variable", "exit_status")
		if r.Code != api.InvalidProperty.ExitStatus() || r.Stdout != "dead\nContainer exited with 0\n" ||
			!strings.Contains(r.Stderr, ": InvalidProperty (") {
			t.Errorf("portoctl get with a bad key: %s", r)
		}
	})

	// 12: start running ⇒ InvalidState; process exit ⇒ dead; stop dead ⇒
	// stopped (and, target semantics, stop on stopped succeeds).
	t.Run("12-state-machine", func(t *testing.T) {
		e.CleanupContainers(t)
		e.OK(t, root, "create", "s")
		e.OK(t, root, "set", "s", "command", "sleep 0.3")
		e.OK(t, root, "start", "s")
		e.Expect(t, root, "running", "get", "s", "state")
		e.FailWith(t, root, "InvalidState", "start", "s")
		e.WaitState(t, root, "s", "dead")
		e.OK(t, root, "stop", "s")
		e.Expect(t, root, "stopped", "get", "s", "state")
		e.OK(t, root, "stop", "s")
		e.Expect(t, root, "stopped", "get", "s", "state")
	})

	// 13: pause ⇒ tasks frozen ("D"), second pause ⇒ InvalidState; resume
	// twice ⇒ InvalidState. The whole subtree is paused.
	t.Run("13-pause-resume", func(t *testing.T) {
		e.CleanupContainers(t)
		e.OK(t, root, "run", "p", "command=sleep 1000")
		e.OK(t, root, "run", "p/c", "command=sleep 1000")
		pp, pc := rootPid(t, e, root, "p"), rootPid(t, e, root, "p/c")
		e.OK(t, root, "pause", "p")
		e.Expect(t, root, "paused", "get", "p", "state")
		e.Expect(t, root, "paused", "get", "p/c", "state")
		for _, pid := range []int{pp, pc} {
			deadline := time.Now().Add(2 * time.Second)
			for procState(pid) != "D" && time.Now().Before(deadline) {
				time.Sleep(20 * time.Millisecond)
			}
			if s := procState(pid); s != "D" {
				t.Errorf("pid %d of a paused container is in state %q, want D (frozen)", pid, s)
			}
		}
		if s := readTrim(t, filepath.Join(e.cgroupDir("freezer", "p"), "freezer.state")); s != "FROZEN" {
			t.Errorf("freezer.state of p = %q", s)
		}
		e.FailWith(t, root, "InvalidState", "pause", "p")
		e.FailWith(t, root, "InvalidState", "resume", "p/c") // its parent is paused
		e.OK(t, root, "resume", "p")
		e.Expect(t, root, "running", "get", "p", "state")
		e.Expect(t, root, "running", "get", "p/c", "state")
		if s := procState(pp); s == "D" || s == "" {
			t.Errorf("pid %d after resume is in state %q", pp, s)
		}
		e.FailWith(t, root, "InvalidState", "resume", "p")
	})

	// 14: destroy a paused container works; stop an externally frozen
	// container works.
	t.Run("14-frozen", func(t *testing.T) {
		e.CleanupContainers(t)
		e.OK(t, root, "run", "p", "command=sleep 1000")
		e.OK(t, root, "run", "p/c", "command=sleep 1000")
		pp, pc := rootPid(t, e, root, "p"), rootPid(t, e, root, "p/c")
		e.OK(t, root, "pause", "p")
		// p/c is paused with its parent: its tasks cannot die while p is
		// frozen, so stop and destroy of p/c are InvalidState (as Porto's
		// stop under a paused parent); destroying p itself works.
		e.Expect(t, root, "paused", "get", "p/c", "state")
		e.FailWith(t, root, "InvalidState", "destroy", "p/c")
		e.FailWith(t, root, "InvalidState", "stop", "p/c")
		e.Expect(t, root, "paused", "get", "p", "state")
		e.OK(t, root, "run", "p2", "command=sleep 1000")
		e.OK(t, root, "run", "p2/c", "command=sleep 1000")
		pc2 := rootPid(t, e, root, "p2/c")
		e.OK(t, root, "pause", "p2")
		e.OK(t, root, "destroy", "p")
		e.OK(t, root, "destroy", "p2")
		e.FailWith(t, root, "ContainerDoesNotExist", "get", "p", "state")
		procGone(t, pp, "sleep 1000")
		procGone(t, pc, "sleep 1000")
		procGone(t, pc2, "sleep 1000")

		// Stopping (or destroying) a running parent whose child is paused
		// thaws and kills the child at once.
		for _, op := range []string{"stop", "destroy"} {
			e.OK(t, root, "run", "q", "command=sleep 1000")
			e.OK(t, root, "run", "q/c", "command=sleep 1000")
			pq := rootPid(t, e, root, "q/c")
			e.OK(t, root, "pause", "q/c")
			start := time.Now()
			e.OK(t, root, op, "q")
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("%s of q with a paused child took %v", op, d)
			}
			procGone(t, pq, "sleep 1000")
			if op == "stop" {
				e.Expect(t, root, "stopped", "get", "q/c", "state")
				e.OK(t, root, "destroy", "q")
			}
		}

		e.OK(t, root, "run", "f", "command=sleep 1000")
		pf := rootPid(t, e, root, "f")
		st := filepath.Join(e.cgroupDir("freezer", "f"), "freezer.state")
		if err := os.WriteFile(st, []byte("FROZEN"), 0o644); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(2 * time.Second)
		for readTrim(t, st) != "FROZEN" && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		start := time.Now()
		e.OK(t, root, "stop", "f")
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("stop of a frozen container took %v", d)
		}
		e.Expect(t, root, "stopped", "get", "f", "state")
		procGone(t, pf, "sleep 1000")
		e.OK(t, root, "start", "f")
		e.Expect(t, root, "running", "get", "f", "state")
	})

	// 15: kill SIGTERM ⇒ dead, exit_status 15; kill a non-running container
	// ⇒ InvalidState. isolate=false: with isolate=true the seed makes the
	// command itself pid 1 of its namespace, and the kernel drops SIGTERM
	// to a pid 1 (sleep) that has no handler.
	t.Run("15-kill", func(t *testing.T) {
		e.CleanupContainers(t)
		e.OK(t, root, "run", "k", "command=sleep 1000", "isolate=false")
		e.OK(t, root, "kill", "k", "SIGTERM")
		e.WaitState(t, root, "k", "dead")
		e.Expect(t, root, "15", "dget", "k", "exit_status")
		e.Expect(t, root, "Container killed by signal 15", "get", "k", "exit_status")
		e.FailWith(t, root, "InvalidState", "kill", "k")
		e.OK(t, root, "create", "s")
		e.FailWith(t, root, "InvalidState", "kill", "s", "9")
		// Default (isolated) container: SIGKILL works.
		e.OK(t, root, "run", "i", "command=sleep 1000")
		e.OK(t, root, "kill", "i", "9")
		e.WaitState(t, root, "i", "dead")
		e.Expect(t, root, "9", "dget", "i", "exit_status")
	})

	// 16: exit_status raw: true=0, false=256, SIGKILL=9; oom_killed=false.
	// 17: exit_code: 0, 1, -9.
	t.Run("16-17-exit-status-code", func(t *testing.T) {
		e.CleanupContainers(t)
		e.OK(t, root, "run", "true", "command=true")
		e.OK(t, root, "run", "false", "command=false")
		e.OK(t, root, "run", "sleep", "command=sleep 1000")
		syscall.Kill(rootPid(t, e, root, "sleep"), syscall.SIGKILL)
		for _, n := range []string{"true", "false", "sleep"} {
			e.WaitState(t, root, n, "dead")
		}
		e.Expect(t, root, "0", "dget", "true", "exit_status")
		e.Expect(t, root, "256", "dget", "false", "exit_status")
		e.Expect(t, root, "9", "dget", "sleep", "exit_status")
		e.Expect(t, root, "Container exited with 0", "get", "true", "exit_status")
		e.Expect(t, root, "Container exited with 1", "get", "false", "exit_status")
		e.Expect(t, root, "Container killed by signal 9", "get", "sleep", "exit_status")
		for _, n := range []string{"true", "false", "sleep"} {
			e.Expect(t, root, "false", "get", n, "oom_killed")
		}
		e.Expect(t, root, "0", "dget", "true", "exit_code")
		e.Expect(t, root, "1", "dget", "false", "exit_code")
		e.Expect(t, root, "-9", "dget", "sleep", "exit_code")
	})

	// 18: bad command ⇒ state stays stopped; root_pid/exit_status/oom_killed
	// then ⇒ InvalidState. The reference says InvalidCommand; the seed
	// (normative) prints Unknown with the errno text and start_errno 2.
	t.Run("18-bad-command", func(t *testing.T) {
		e.CleanupContainers(t)
		e.OK(t, root, "create", "invalid")
		e.OK(t, root, "set", "invalid", "command", "__invalid_command__")
		e.Fail(t, root, "Can't start container: Unknown (No such file or directory: execvpe(__invalid_command__))", "start", "invalid")
		e.Expect(t, root, "2", "get", "invalid", "start_errno")
		e.Expect(t, root, "stopped", "get", "invalid", "state")
		for _, k := range []string{"root_pid", "exit_status", "exit_code", "oom_killed"} {
			e.FailWith(t, root, "InvalidState", "get", "invalid", k)
		}
		if procs := e.ProcsInCgroups(); len(procs) > 0 {
			t.Errorf("processes left after a failed start: %v", procs)
		}
	})

	// 19: memory_limit exceeded ⇒ exit_status 9, oom_killed=true.
	t.Run("19-oom", func(t *testing.T) {
		e.CleanupContainers(t)
		e.OK(t, root, "run", "oom", "command=tail /dev/zero", "memory_limit=64M")
		deadline := time.Now().Add(30 * time.Second)
		for e.Out(t, root, "get", "oom", "state") != "dead" {
			if time.Now().After(deadline) {
				t.Fatalf("oom: not dead after 30 s")
			}
			time.Sleep(50 * time.Millisecond)
		}
		e.Expect(t, root, "9", "dget", "oom", "exit_status")
		e.Expect(t, root, "true", "get", "oom", "oom_killed")
	})

	// 20: in stopped state root_pid, exit_*, oom_killed, cpu_usage,
	// memory_usage, stdout ⇒ InvalidState; running: exit_* ⇒ InvalidState;
	// dead: root_pid ⇒ InvalidState.
	t.Run("20-state-data", func(t *testing.T) {
		e.CleanupContainers(t)
		e.OK(t, root, "create", "s")
		e.OK(t, root, "set", "s", "command", "sleep 1000")
		for _, k := range []string{"root_pid", "exit_status", "exit_code", "oom_killed", "cpu_usage", "memory_usage", "stdout", "stderr"} {
			e.FailWith(t, root, "InvalidState", "get", "s", k)
		}
		e.OK(t, root, "start", "s")
		for _, k := range []string{"exit_status", "exit_code", "oom_killed"} {
			e.FailWith(t, root, "InvalidState", "get", "s", k)
		}
		for _, k := range []string{"root_pid", "cpu_usage", "memory_usage", "stdout"} {
			e.Out(t, root, "dget", "s", k)
		}
		e.OK(t, root, "kill", "s", "9")
		e.WaitState(t, root, "s", "dead")
		e.FailWith(t, root, "InvalidState", "get", "s", "root_pid")
		for _, k := range []string{"exit_status", "exit_code", "oom_killed", "cpu_usage", "stdout"} {
			e.Out(t, root, "dget", "s", k)
		}
	})

	// 21: stdout/stderr capture ("echo out" ⇒ "out\n"); stdout_limit keeps
	// the tail. stdout[off:len] and stdout_offset are new-Porto data this
	// project does not have (reference 1b, optional): not checked.
	t.Run("21-streams", func(t *testing.T) {
		e.CleanupContainers(t)
		c := e.hClient(t)
		e.OK(t, root, "run", "o", "command=bash -c 'echo out; echo err >&2'")
		e.WaitState(t, root, "o", "dead")
		if v, err := c.GetProperty(ctx, "o", "stdout"); err != nil || v != "out\n" {
			t.Errorf("stdout = %q, %v; want \"out\\n\"", v, err)
		}
		if v, err := c.GetProperty(ctx, "o", "stderr"); err != nil || v != "err\n" {
			t.Errorf("stderr = %q, %v; want \"err\\n\"", v, err)
		}
		e.OK(t, root, "run", "l", "command=bash -c 'for i in $(seq 1000); do echo line$i; done'", "stdout_limit=20")
		e.WaitState(t, root, "l", "dead")
		var full strings.Builder
		for i := 1; i <= 1000; i++ {
			fmt.Fprintf(&full, "line%d\n", i)
		}
		want := full.String()[full.Len()-20:]
		if v, err := c.GetProperty(ctx, "l", "stdout"); err != nil || v != want {
			t.Errorf("stdout with stdout_limit=20 = %q, %v; want the tail %q", v, err, want)
		}
	})

	// 22: default env contains PATH, HOME=cwd, USER, container=lxc,
	// PORTO_NAME, PORTO_HOST, PORTO_USER; "a=e\;b" escaping.
	forEachUser(t, e, "22-env", func(t *testing.T, u *User) {
		e.OK(t, u, "run", "env", "command=env", `env=a=e\;b; c=d`)
		e.WaitState(t, u, "env", "dead")
		host, _ := os.Hostname()
		expectEnvLines(t, e.Out(t, u, "get", "env", "stdout"),
			"a=e;b", "c=d",
			"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
			"HOME="+filepath.Join(e.Place, "env"), "USER="+u.Name, "container=lxc",
			"PORTO_NAME=env", "PORTO_HOST="+host, "PORTO_USER="+u.Name)
		// A child's PORTO_NAME is its full name.
		e.OK(t, u, "run", "par", "command=sleep 1000")
		e.OK(t, u, "run", "par/kid", "command=env")
		e.WaitState(t, u, "par/kid", "dead")
		expectEnvLines(t, e.Out(t, u, "get", "par/kid", "stdout"), "PORTO_NAME=par/kid", "HOME="+filepath.Join(e.Place, "par/kid"))
	})

	// 23: default cwd = <place>/<name> (Porto's /place/porto/<name>; here
	// the configured place), created on start, removed on stop.
	t.Run("23-cwd", func(t *testing.T) {
		e.CleanupContainers(t)
		dir := filepath.Join(e.Place, "cw")
		e.OK(t, root, "create", "cw")
		e.OK(t, root, "set", "cw", "command", "pwd")
		e.Expect(t, root, dir, "get", "cw", "cwd")
		if _, err := os.Stat(dir); err == nil {
			t.Errorf("%s exists before start", dir)
		}
		e.OK(t, root, "start", "cw")
		e.WaitState(t, root, "cw", "dead")
		e.Expect(t, root, dir, "get", "cw", "stdout")
		if _, err := os.Stat(dir); err != nil {
			t.Errorf("cwd of a dead container: %v", err)
		}
		e.OK(t, root, "stop", "cw")
		if _, err := os.Stat(dir); err == nil {
			t.Errorf("%s still exists after stop", dir)
		}
	})

	// 24: isolate=true ⇒ pid 1 inside and ps sees only a few processes;
	// isolate=false ⇒ host pids.
	t.Run("24-isolate", func(t *testing.T) {
		e.CleanupContainers(t)
		e.OK(t, root, "run", "ps", "command=ps aux")
		e.WaitState(t, root, "ps", "dead")
		expectPs(t, e.Out(t, root, "get", "ps", "stdout"), psRow{1, "ps aux"})

		e.OK(t, root, "run", "host", "command=sleep 1000", "isolate=false")
		pid := rootPid(t, e, root, "host")
		if nsOf(t, pid, "pid") != nsOf(t, os.Getpid(), "pid") || nsDepth(t, pid) != nsDepth(t, os.Getpid()) {
			t.Errorf("isolate=false container is not in the host pid namespace")
		}
		e.OK(t, root, "run", "hps", "command=ps aux", "isolate=false")
		e.WaitState(t, root, "hps", "dead")
		rows := psRows(t, e.Out(t, root, "get", "hps", "stdout"))
		found := false
		for _, r := range rows {
			found = found || r.PID == pid && r.Command == "sleep 1000"
		}
		if len(rows) <= 20 || !found {
			t.Errorf("ps aux with isolate=false: %d processes, sleep 1000 as host pid %d listed: %v", len(rows), pid, found)
		}
	})

	// 25: a non-owner may read but not start/stop/set/destroy (Permission);
	// non-root user=other ⇒ Permission (at set time, per the seed); a child
	// of someone else's container ⇒ Permission.
	t.Run("25-permissions", func(t *testing.T) {
		e.CleanupContainers(t)
		a, b := alice(t), bob(t)
		e.OK(t, a, "run", "al", "command=sleep 1000")
		e.Expect(t, b, "running", "get", "al", "state")
		e.Expect(t, b, "porto-alice", "get", "al", "owner_user")
		for _, args := range [][]string{
			{"stop", "al"}, {"kill", "al", "9"}, {"pause", "al"}, {"set", "al", "private", "x"},
			{"destroy", "al"}, {"create", "al/bobs"},
		} {
			e.FailWith(t, b, "Permission", args...)
		}
		e.OK(t, a, "stop", "al")
		e.FailWith(t, b, "Permission", "start", "al")
		e.Fail(t, a, "Can't set property: Permission (Only root can change this property)", "run", "x", "command=id", "user=porto-bob")
		e.Fail(t, a, "Can't set property: Permission (Only root can change this property)", "set", "al", "user", "porto-bob")
		e.OK(t, root, "create", "rt")
		e.FailWith(t, a, "Permission", "create", "rt/x")
		e.OK(t, a, "create", "al/kid")
		e.Expect(t, a, "stopped", "get", "al/kid", "state")
		e.OK(t, a, "destroy", "al")
	})

	// 26: respawn=false ⇒ count 0; respawn=true ⇒ new root_pid, count > 0;
	// max_respawn=3 (Porto's max_respawns; the seed's name) ⇒ count stays 3.
	// TestHierarchyRespawn checks the delay and the reset on start.
	t.Run("26-respawn", func(t *testing.T) {
		e.CleanupContainers(t)
		e.OK(t, root, "run", "no", "command=true")
		e.OK(t, root, "run", "yes", "command=sleep 1000", "respawn=true")
		e.OK(t, root, "run", "max", "command=true", "respawn=true", "max_respawn=3")
		p1 := rootPid(t, e, root, "yes")
		syscall.Kill(p1, syscall.SIGKILL)
		deadline := time.Now().Add(10 * time.Second)
		for {
			r := e.Ctl(root, "get", "yes", "root_pid")
			if p := atoi(strings.TrimSpace(r.Stdout)); r.Code == 0 && p > 0 && p != p1 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("yes: not respawned in 10 s: %s", r)
			}
			time.Sleep(20 * time.Millisecond)
		}
		if n := atoi(e.Out(t, root, "get", "yes", "respawn_count")); n < 1 {
			t.Errorf("respawn_count after a respawn = %d", n)
		}
		e.Expect(t, root, "running", "get", "yes", "state")
		deadline = time.Now().Add(15 * time.Second)
		for e.Out(t, root, "get", "max", "respawn_count") != "3" {
			if time.Now().After(deadline) {
				t.Fatalf("max: respawn_count did not reach 3 in 15 s")
			}
			time.Sleep(50 * time.Millisecond)
		}
		time.Sleep(1500 * time.Millisecond)
		e.Expect(t, root, "3", "get", "max", "respawn_count")
		e.Expect(t, root, "dead", "get", "max", "state")
		e.Expect(t, root, "0", "get", "no", "respawn_count")
		e.Expect(t, root, "dead", "get", "no", "state")
	})

	// 27: wait: "/" returns immediately; [] ⇒ InvalidValue; missing
	// container ⇒ ContainerDoesNotExist; stopped returns at once; meta
	// without children returns; timeout 0 ⇒ "" in < 100 ms; across 100
	// containers returns the killed one.
	t.Run("27-wait", func(t *testing.T) {
		e.CleanupContainers(t)
		c := e.hClient(t)
		if got, err := c.Wait(ctx, []string{"/"}, -1); err != nil || got != "/" {
			t.Errorf("Wait(/) = %q, %v", got, err)
		}
		if _, err := c.Wait(ctx, []string{}, time.Second); api.CodeOf(err) != api.InvalidValue {
			t.Errorf("Wait([]) = %v, want InvalidValue", err)
		}
		if _, err := c.Wait(ctx, []string{"missing"}, time.Second); api.CodeOf(err) != api.ContainerDoesNotExist {
			t.Errorf("Wait(missing) = %v, want ContainerDoesNotExist", err)
		}
		e.FailWith(t, root, "ContainerDoesNotExist", "wait", "missing")
		e.OK(t, root, "create", "st")
		e.Expect(t, root, "st", "wait", "st")
		e.OK(t, root, "create", "m")
		e.OK(t, root, "start", "m")
		e.Expect(t, root, "meta", "get", "m", "state")
		if got, err := c.Wait(ctx, []string{"m"}, 5*time.Second); err != nil || got != "m" {
			t.Errorf("Wait(meta without children) = %q, %v; want m", got, err)
		}
		// A meta with a running child is not done; it is once the child is.
		e.OK(t, root, "create", "m2")
		e.OK(t, root, "run", "m2/c", "command=sleep 1000", "isolate=false")
		if got, err := c.Wait(ctx, []string{"m2"}, 200*time.Millisecond); err != nil || got != "" {
			t.Errorf("Wait(meta with a running child) = %q, %v; want a timeout", got, err)
		}
		e.OK(t, root, "run", "r", "command=sleep 1000")
		start := time.Now()
		got, err := c.Wait(ctx, []string{"r"}, 0)
		if d := time.Since(start); err != nil || got != "" || d > 100*time.Millisecond {
			t.Errorf("Wait(running, 0) = %q, %v in %v; want \"\" in < 100ms", got, err, d)
		}
		r := e.Ctl(root, "wait", "-t", "0", "r")
		if r.Code != api.Busy.ExitStatus() || strings.TrimSpace(r.Stderr) != "timeout" || r.Stdout != "" {
			t.Errorf("portoctl wait -t 0 on a running container: %s", r)
		}

		// 100 running containers; wait on all; kill one.
		var names []string
		for i := range 100 {
			names = append(names, fmt.Sprintf("w%03d", i))
		}
		var wg sync.WaitGroup
		errs := make(chan error, len(names))
		for w := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := w; i < len(names); i += 8 {
					if err := c.Create(ctx, names[i]); err != nil {
						errs <- err
						continue
					}
					if err := c.SetProperty(ctx, names[i], "command", "sleep 1000"); err != nil {
						errs <- err
					}
					if err := c.Start(ctx, names[i]); err != nil {
						errs <- err
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatalf("starting 100 containers: %v", err)
		}
		victim := names[57]
		done := make(chan string, 1)
		go func() {
			got, err := c.Wait(ctx, names, 30*time.Second)
			if err != nil {
				got = "error: " + err.Error()
			}
			done <- got
		}()
		select {
		case got := <-done:
			t.Fatalf("Wait on 100 running containers returned early: %q", got)
		case <-time.After(300 * time.Millisecond):
		}
		if err := c.Kill(ctx, victim, 9); err != nil {
			t.Fatal(err)
		}
		select {
		case got := <-done:
			if got != victim {
				t.Errorf("Wait on 100 containers = %q, want %q", got, victim)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("Wait did not return 10 s after %s was killed", victim)
		}
		// portoctl wait prints the name too.
		e.Expect(t, root, victim, "wait", names[0], victim, names[99])
		for _, n := range names {
			if err := c.Destroy(ctx, n); err != nil {
				t.Errorf("destroy %s: %v", n, err)
			}
		}
	})

	// 28: aging_time=1 ⇒ a dead container is destroyed about a second after
	// its death; a running one is not.
	t.Run("28-aging", func(t *testing.T) {
		e.CleanupContainers(t)
		e.OK(t, root, "run", "keep", "command=sleep 1000", "aging_time=1")
		e.OK(t, root, "run", "stays", "command=true")
		e.OK(t, root, "run", "ag", "command=true", "aging_time=1")
		start := time.Now()
		e.waitGoneName(t, root, "ag", 10*time.Second)
		if d := time.Since(start); d < 800*time.Millisecond {
			t.Errorf("aged after only %v", d)
		}
		time.Sleep(500 * time.Millisecond)
		e.Expect(t, root, "running", "get", "keep", "state")
		e.Expect(t, root, "dead", "get", "stays", "state")
	})

	// 29: a dynamic property (memory_limit) is settable while running or
	// paused; a static one (env) in running/meta ⇒ InvalidState.
	t.Run("29-dynamic", func(t *testing.T) {
		e.CleanupContainers(t)
		limit := filepath.Join(e.cgroupDir("memory", "d"), "memory.limit_in_bytes")
		e.OK(t, root, "run", "d", "command=sleep 1000")
		e.OK(t, root, "set", "d", "memory_limit", "104857600")
		if got := readTrim(t, limit); got != "104857600" {
			t.Errorf("memory.limit_in_bytes while running = %s", got)
		}
		e.OK(t, root, "pause", "d")
		e.OK(t, root, "set", "d", "memory_limit", "209715200")
		if got := readTrim(t, limit); got != "209715200" {
			t.Errorf("memory.limit_in_bytes while paused = %s", got)
		}
		e.Expect(t, root, "209715200", "dget", "d", "memory_limit")
		e.OK(t, root, "resume", "d")
		e.FailWith(t, root, "InvalidState", "set", "d", "env", "A=1")
		e.OK(t, root, "create", "m")
		e.OK(t, root, "start", "m")
		e.Expect(t, root, "meta", "get", "m", "state")
		e.FailWith(t, root, "InvalidState", "set", "m", "env", "A=1")
		e.OK(t, root, "stop", "m")
		e.OK(t, root, "set", "m", "env", "A=1")
	})

	// 30: after portod's worker is SIGKILLed (the master restarts it):
	// running containers keep root_pid and properties, dead keep
	// exit_status/oom_killed, stopped/paused/meta persist, respawn keeps
	// ticking, 100 containers recovered.
	t.Run("30-recovery", func(t *testing.T) {
		e.CleanupContainers(t)
		c := e.hClient(t)
		e.OK(t, root, "run", "run", "command=sleep 1000", "env=A=1", "memory_limit=104857600")
		e.OK(t, root, "run", "run/kid", "command=sleep 1000", "isolate=false")
		e.OK(t, root, "run", "dead", "command=false")
		e.OK(t, root, "create", "stopped")
		e.OK(t, root, "set", "stopped", "command", "true")
		e.OK(t, root, "run", "paused", "command=sleep 1000")
		e.OK(t, root, "pause", "paused")
		e.OK(t, root, "create", "meta")
		e.OK(t, root, "set", "meta", "isolate", "false")
		e.OK(t, root, "start", "meta")
		e.OK(t, root, "run", "resp", "command=sleep 0.3", "respawn=true")
		e.OK(t, root, "create", "many")
		e.OK(t, root, "set", "many", "isolate", "false")
		for i := range 100 {
			n := fmt.Sprintf("many/c%03d", i)
			if err := c.Create(ctx, n); err != nil {
				t.Fatal(err)
			}
			c.SetProperty(ctx, n, "command", "sleep 1000")
			c.SetProperty(ctx, n, "isolate", "false")
			if err := c.Start(ctx, n); err != nil {
				t.Fatal(err)
			}
		}
		e.WaitState(t, root, "dead", "dead")
		keys := []string{"state", "root_pid", "command", "env", "memory_limit", "exit_status", "oom_killed"}
		snapshot := func() map[string]string {
			names, err := c.List(ctx)
			if err != nil {
				t.Fatal(err)
			}
			names = slices.DeleteFunc(names, func(n string) bool { return n == "/" || n == "resp" })
			cells, err := c.Get(ctx, names, keys)
			if err != nil {
				t.Fatal(err)
			}
			out := map[string]string{}
			for _, cell := range cells {
				v := cell.Value
				if cell.Err != nil {
					v = "error " + cell.Err.Code.String()
				}
				out[cell.Container+" "+cell.Key] = v
			}
			return out
		}
		before := snapshot()
		if len(before) < 100*len(keys) {
			t.Fatalf("snapshot has %d values", len(before))
		}
		count0 := atoi(e.Out(t, root, "get", "resp", "respawn_count"))

		e.mu.Lock()
		master := e.portod.Process.Pid
		e.mu.Unlock()
		worker := 0
		for _, p := range allProcs() {
			if p.ppid == master && strings.Contains(p.cmdline, "__worker") {
				worker = p.pid
			}
		}
		if worker == 0 {
			t.Fatalf("no portod worker under master %d", master)
		}
		syscall.Kill(worker, syscall.SIGKILL)
		deadline := time.Now().Add(15 * time.Second)
		for {
			r := e.Busctl(rootUser, "call", "org.porto.Manager", "/org/porto/Manager", "org.porto.Manager", "Version")
			if r.Code == 0 && procState(worker) == "" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("porto did not come back in 15 s after its worker was killed: %s\n%s", r, e.LogTail())
			}
			time.Sleep(50 * time.Millisecond)
		}
		after := snapshot()
		for k, v := range before {
			if after[k] != v {
				t.Errorf("after recovery %s = %q, before %q", k, after[k], v)
			}
		}
		if len(after) != len(before) {
			t.Errorf("recovered %d values, had %d", len(after), len(before))
		}
		// Respawn keeps ticking.
		deadline = time.Now().Add(10 * time.Second)
		for atoi(e.Out(t, root, "get", "resp", "respawn_count")) < count0+2 {
			if time.Now().After(deadline) {
				t.Fatalf("resp: respawn_count stuck at %s after recovery (was %d)", e.Out(t, root, "get", "resp", "respawn_count"), count0)
			}
			time.Sleep(100 * time.Millisecond)
		}
		// The recovered containers still work: resume, stop, kill.
		e.OK(t, root, "resume", "paused")
		e.Expect(t, root, "running", "get", "paused", "state")
		pk := rootPid(t, e, root, "run/kid")
		e.OK(t, root, "stop", "run")
		e.Expect(t, root, "stopped", "get", "run/kid", "state")
		procGone(t, pk, "sleep 1000")
		e.OK(t, root, "destroy", "many")
	})
}
