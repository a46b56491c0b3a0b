package tests

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/porto-dev/porto/api/client"
)

// The seed's "Hierarchy" and "Respawn" sections (issue 4), every transcript
// replayed through bin/portoctl. Comments quote the seed.

// psRow is the part of a "ps aux" line the tests compare: PID and COMMAND
// (USER, times and sizes vary).
type psRow struct {
	PID     int
	Command string
}

func (r psRow) String() string { return fmt.Sprintf("%d %q", r.PID, r.Command) }

// psRows parses "ps aux" output: a header, then one line per process.
func psRows(t *testing.T, out string) []psRow {
	t.Helper()
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if len(lines) == 0 || strings.Join(strings.Fields(lines[0]), " ") != "USER PID %CPU %MEM VSZ RSS TTY STAT START TIME COMMAND" {
		t.Fatalf("not ps aux output:\n%s", out)
	}
	var rows []psRow
	for _, l := range lines[1:] {
		f := strings.Fields(l)
		if len(f) < 11 {
			t.Fatalf("short ps line %q in\n%s", l, out)
		}
		pid, err := strconv.Atoi(f[1])
		if err != nil {
			t.Fatalf("bad PID in ps line %q", l)
		}
		rows = append(rows, psRow{PID: pid, Command: strings.Join(f[10:], " ")})
	}
	return rows
}

// expectPs checks that "ps aux" output lists exactly want (PID and COMMAND).
func expectPs(t *testing.T, out string, want ...psRow) {
	t.Helper()
	got := psRows(t, out)
	ok := len(got) == len(want)
	for i := 0; ok && i < len(got); i++ {
		ok = got[i] == want[i]
	}
	if !ok {
		t.Errorf("ps aux: got processes %v, want %v\n%s", got, want, out)
	}
}

// rootPid reads a container's root_pid.
func rootPid(t *testing.T, e *Env, u *User, name string) int {
	t.Helper()
	s := e.Out(t, u, "get", name, "root_pid")
	pid, err := strconv.Atoi(s)
	if err != nil || pid <= 0 {
		t.Fatalf("root_pid of %s = %q", name, s)
	}
	return pid
}

// nsOf is the namespace identity ("pid:[4026531836]") of a process.
func nsOf(t *testing.T, pid int, ns string) string {
	t.Helper()
	s, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/%s", pid, ns))
	if err != nil {
		t.Fatalf("namespace %s of pid %d: %v", ns, pid, err)
	}
	return s
}

// procGone waits until pid is gone (or a zombie, or another program).
func procGone(t *testing.T, pid int, cmdline string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		p, ok := readProc(pid)
		if !ok || p.state == "Z" || p.cmdline != cmdline {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("pid %d (%q) still alive", pid, cmdline)
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// hClient is a Go client (api/client) on the env's bus, as root.
func (e *Env) hClient(t *testing.T) *client.Client {
	t.Helper()
	conn, err := dbus.Connect(e.BusAddr)
	if err != nil {
		t.Fatalf("connect to %s: %v", e.BusAddr, err)
	}
	t.Cleanup(func() { conn.Close() })
	return client.NewWithConn(conn)
}

// cgroupDir is the directory of container name in hierarchy h (cgroupfs v1).
func (e *Env) cgroupDir(h, name string) string {
	return filepath.Join("/sys/fs/cgroup", h, e.CgroupRoot, name)
}

func readTrim(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Errorf("%v", err)
		return ""
	}
	return strings.TrimSpace(string(b))
}

func TestHierarchy(t *testing.T) {
	e := NewEnv(t)

	// 1. Parent container is started first and runs for a long time; child
	// containers are periodically created and destroyed. When parent
	// container dies, all child containers are stopped:
	//   $ portoctl run parent command="sleep 1000"
	//   $ portoctl run parent/child command="sleep 100" isolate=false
	//   $ portoctl run parent/ps command="ps aux" isolate=false
	//   $ portoctl get parent state
	//   running
	//   $ portoctl get parent/child state
	//   running
	//   $ portoctl get parent/ps state
	//   dead
	//   $ portoctl get parent/ps stdout
	//   USER       PID %CPU %MEM    VSZ   RSS TTY      STAT START   TIME COMMAND
	//   stfomic+     1  0.0  0.0   4308   684 ?        Ss   16:27   0:00 sleep 1000
	//   stfomic+     2  0.0  0.0   4308   608 ?        Ss   16:27   0:00 sleep 100
	//   stfomic+     3  0.0  0.0  19744  1968 ?        Rs   16:27   0:00 ps aux
	//   $ portoctl stop parent
	//   $ portoctl get parent/child state
	//   stopped
	forEachUser(t, e, "mode1-running-parent", func(t *testing.T, u *User) {
		e.OK(t, u, "run", "parent", "command=sleep 1000")
		e.OK(t, u, "run", "parent/child", "command=sleep 100", "isolate=false")
		e.OK(t, u, "run", "parent/ps", "command=ps aux", "isolate=false")
		e.Expect(t, u, "running", "get", "parent", "state")
		e.Expect(t, u, "running", "get", "parent/child", "state")
		e.GetStateAfterRun(t, u, "parent/ps")
		expectPs(t, e.Out(t, u, "get", "parent/ps", "stdout"),
			psRow{1, "sleep 1000"}, psRow{2, "sleep 100"}, psRow{3, "ps aux"})

		// "In this mode if child's container isolate property is set to
		// false, it starts in the parent container namespaces (PID,
		// filesystem, network)."
		ppid, cpid := rootPid(t, e, u, "parent"), rootPid(t, e, u, "parent/child")
		for _, ns := range []string{"pid", "mnt", "net", "ipc"} {
			if p, c := nsOf(t, ppid, ns), nsOf(t, cpid, ns); p != c {
				t.Errorf("parent/child (isolate=false) is not in its parent's %s namespace: %s vs %s", ns, c, p)
			}
		}
		if p, h := nsOf(t, ppid, "pid"), nsOf(t, os.Getpid(), "pid"); p == h {
			t.Errorf("parent (isolate=true) runs in the host pid namespace")
		}

		e.OK(t, u, "stop", "parent")
		e.Expect(t, u, "stopped", "get", "parent/child", "state")
		e.Expect(t, u, "stopped", "get", "parent/ps", "state")
		e.Expect(t, u, "stopped", "get", "parent", "state")
		procGone(t, ppid, "sleep 1000")
		procGone(t, cpid, "sleep 100")
		e.OK(t, u, "destroy", "parent")
	})

	// Issue 4: "a child with isolate=true gets its own pid namespace nested
	// in the parent's".
	t.Run("mode1-isolated-child", func(t *testing.T) {
		e.CleanupContainers(t)
		u := rootUser
		e.OK(t, u, "run", "parent", "command=sleep 1000")
		e.OK(t, u, "run", "parent/iso", "command=sleep 1000")
		e.OK(t, u, "run", "parent/ps", "command=ps aux")
		e.WaitState(t, u, "parent/ps", "dead")
		expectPs(t, e.Out(t, u, "get", "parent/ps", "stdout"), psRow{1, "ps aux"})
		ppid, cpid := rootPid(t, e, u, "parent"), rootPid(t, e, u, "parent/iso")
		if nsOf(t, ppid, "pid") == nsOf(t, cpid, "pid") {
			t.Errorf("parent/iso (isolate=true) shares its parent's pid namespace")
		}
		// Nested: the child is visible from the parent's namespace, so its
		// NSpid line has one more level than the parent's.
		if p, c := nsDepth(t, ppid), nsDepth(t, cpid); c != p+1 {
			t.Errorf("pid namespace depth: parent %d, isolated child %d (want parent+1)", p, c)
		}
		e.OK(t, u, "destroy", "parent")
	})

	// Issue 4: "a parent's death makes its subtree dead" (reference: both
	// old and new Porto assert dead, not stopped).
	t.Run("mode1-parent-dies", func(t *testing.T) {
		e.CleanupContainers(t)
		u := rootUser
		e.OK(t, u, "run", "parent", "command=sleep 1000")
		e.OK(t, u, "run", "parent/child", "command=sleep 100", "isolate=false")
		e.OK(t, u, "run", "parent/child/grand", "command=sleep 100", "isolate=false")
		cpid := rootPid(t, e, u, "parent/child")
		syscall.Kill(rootPid(t, e, u, "parent"), syscall.SIGKILL)
		e.WaitState(t, u, "parent", "dead")
		e.WaitState(t, u, "parent/child", "dead")
		e.WaitState(t, u, "parent/child/grand", "dead")
		procGone(t, cpid, "sleep 100")
		e.OK(t, u, "destroy", "parent")
	})

	// 2. Parent container is used to set total resource limit for a set of
	// child containers. In this case, parent container is not started
	// explicitly and it's mode is meta:
	//   $ portoctl create meta
	//   $ portoctl set meta memory_limit 1073741824
	//   $ portoctl run meta/child1 command="sleep 1000"
	//   $ portoctl run meta/child2 command="sleep 1000"
	//   $ portoctl get meta state
	//   meta
	//   $ portoctl get meta/child1 state
	//   running
	//   $ portoctl get meta/child2 state
	//   running
	//   $ portoctl stop meta
	//   $ portoctl get meta/child1 state
	//   stopped
	//   $ portoctl get meta/child2 state
	//   stopped
	forEachUser(t, e, "mode2-meta", func(t *testing.T, u *User) {
		e.OK(t, u, "create", "meta")
		e.OK(t, u, "set", "meta", "memory_limit", "1073741824")
		e.OK(t, u, "run", "meta/child1", "command=sleep 1000")
		e.OK(t, u, "run", "meta/child2", "command=sleep 1000")
		e.Expect(t, u, "meta", "get", "meta", "state")
		e.Expect(t, u, "running", "get", "meta/child1", "state")
		e.Expect(t, u, "running", "get", "meta/child2", "state")

		// The limit is on the meta container's memory cgroup, and the
		// children's cgroups are inside it.
		if got := readTrim(t, filepath.Join(e.cgroupDir("memory", "meta"), "memory.limit_in_bytes")); got != "1073741824" {
			t.Errorf("memory.limit_in_bytes of meta = %q, want 1073741824", got)
		}
		for _, c := range []string{"meta/child1", "meta/child2"} {
			cg := ContainerCgroups(rootPid(t, e, u, c))
			if want := "/" + e.CgroupRoot + "/" + c; cg["memory"] != want {
				t.Errorf("memory cgroup of %s = %q, want %q", c, cg["memory"], want)
			}
		}
		p1, p2 := rootPid(t, e, u, "meta/child1"), rootPid(t, e, u, "meta/child2")

		e.OK(t, u, "stop", "meta")
		e.Expect(t, u, "stopped", "get", "meta/child1", "state")
		e.Expect(t, u, "stopped", "get", "meta/child2", "state")
		e.Expect(t, u, "stopped", "get", "meta", "state")
		procGone(t, p1, "sleep 1000")
		procGone(t, p2, "sleep 1000")
		e.OK(t, u, "destroy", "meta")
	})

	// isolate=false - meta container doesn't have running process and used
	// only to set total resource limits; child containers with
	// isolate=false will not share parent namespace, they will use
	// namespace of some container up in the hierarchy which has running
	// process (or host namespace if no parent container has running
	// process).
	//   $ portoctl create meta
	//   $ portoctl set meta isolate false
	//   $ portoctl run meta/child1 isolate=false command="sleep 1000"
	//   $ portoctl run meta/child2 isolate=false command="ps aux"
	//   # child1 and child2 work in the host namespace and can see all processes
	//   $ portoctl get meta/child2 stdout | wc -l
	//   95
	//   $ portoctl destroy meta
	t.Run("meta-isolate-false", func(t *testing.T) {
		e.CleanupContainers(t)
		u := rootUser
		e.OK(t, u, "create", "meta")
		e.OK(t, u, "set", "meta", "isolate", "false")
		e.OK(t, u, "run", "meta/child1", "isolate=false", "command=sleep 1000")
		e.OK(t, u, "run", "meta/child2", "isolate=false", "command=ps aux")
		e.WaitState(t, u, "meta/child2", "dead")
		e.Expect(t, u, "meta", "get", "meta", "state")
		// The seed counts 95 lines on its host; here: "large".
		r := e.Sh(u, shellJoin([]string{filepath.Join(e.Bin, "portoctl"), "get", "meta/child2", "stdout"})+" | wc -l")
		n, err := strconv.Atoi(strings.TrimSpace(r.Stdout))
		if r.Code != 0 || err != nil || n <= 20 {
			t.Errorf("portoctl get meta/child2 stdout | wc -l: want > 20 (host processes), got %s", r)
		}
		// Host namespaces, and the child's own ps sees child1's sleep by
		// its host pid.
		p1 := rootPid(t, e, u, "meta/child1")
		for _, ns := range []string{"pid", "mnt", "net", "ipc"} {
			if c, h := nsOf(t, p1, ns), nsOf(t, os.Getpid(), ns); c != h {
				t.Errorf("meta/child1 is not in the host %s namespace: %s vs %s", ns, c, h)
			}
		}
		found := false
		for _, row := range psRows(t, e.Out(t, u, "get", "meta/child2", "stdout")) {
			found = found || (row.PID == p1 && row.Command == "sleep 1000")
		}
		if !found {
			t.Errorf("ps aux in meta/child2 does not list meta/child1's sleep 1000 as host pid %d", p1)
		}
		// No process holds meta's namespaces: root_pid is 0 (our choice) or
		// unavailable.
		if r := e.Ctl(u, "get", "meta", "root_pid"); !(r.Code == 0 && strings.TrimSpace(r.Stdout) == "0" || strings.Contains(r.Stderr, ": InvalidState (")) {
			t.Errorf("root_pid of a meta container without a process: want 0 or InvalidState, got %s", r)
		}
		e.OK(t, u, "destroy", "meta")
		procGone(t, p1, "sleep 1000")
	})

	// isolate=true (default) - meta container starts dummy process that
	// holds namespaces; child containers share this namespace if they have
	// isolate=false.
	//   $ portoctl create meta
	//   $ portoctl run meta/child1 isolate=false command="sleep 1000"
	//   $ portoctl run meta/child2 isolate=false command="ps aux"
	//   # child1 and child2 work in the parent namespace
	//   $ portoctl get meta/child2 stdout
	//   USER       PID %CPU %MEM    VSZ   RSS TTY      STAT START   TIME COMMAND
	//   root         1  0.0  0.0   1696   260 ?        Ss   15:18   0:00 /place/porto/meta/portoinit
	//   root         2  0.0  0.0   4312   352 ?        Ss   15:18   0:00 sleep 1000
	//   root         3  0.0  0.0  15280  1132 ?        Rs   15:18   0:00 ps aux
	//   $ portoctl destroy meta
	forEachUser(t, e, "meta-isolate-true", func(t *testing.T, u *User) {
		e.OK(t, u, "create", "meta")
		e.OK(t, u, "run", "meta/child1", "isolate=false", "command=sleep 1000")
		e.OK(t, u, "run", "meta/child2", "isolate=false", "command=ps aux")
		e.WaitState(t, u, "meta/child2", "dead")
		e.Expect(t, u, "meta", "get", "meta", "state")
		out := e.Out(t, u, "get", "meta/child2", "stdout")
		rows := psRows(t, out)
		// PID 1 is our porto-init; the seed's is "/place/porto/meta/portoinit"
		// (old Porto copied its init there). Compare its program name only.
		if len(rows) > 0 && filepath.Base(strings.Fields(rows[0].Command)[0]) == "porto-init" {
			rows[0].Command = "porto-init"
		}
		expectPs(t, psText(rows), psRow{1, "porto-init"}, psRow{2, "sleep 1000"}, psRow{3, "ps aux"})
		if t.Failed() {
			t.Logf("ps aux in meta/child2:\n%s", out)
		}
		mpid := rootPid(t, e, u, "meta")
		p1 := rootPid(t, e, u, "meta/child1")
		for _, ns := range []string{"pid", "mnt", "net", "ipc"} {
			if m, c := nsOf(t, mpid, ns), nsOf(t, p1, ns); m != c {
				t.Errorf("meta/child1 is not in meta's %s namespace: %s vs %s", ns, c, m)
			}
		}
		e.OK(t, u, "destroy", "meta")
		procGone(t, p1, "sleep 1000")
	})
}

// psText renders rows back as ps aux output (for expectPs).
func psText(rows []psRow) string {
	var b strings.Builder
	b.WriteString("USER PID %CPU %MEM VSZ RSS TTY STAT START TIME COMMAND\n")
	for _, r := range rows {
		fmt.Fprintf(&b, "u %d 0 0 0 0 ? S 0 0 %s\n", r.PID, r.Command)
	}
	return b.String()
}

// nsDepth is the number of pid namespaces pid is visible in, minus one.
func nsDepth(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(l, "NSpid:"); ok {
			return len(strings.Fields(rest)) - 1
		}
	}
	t.Fatalf("no NSpid in /proc/%d/status", pid)
	return 0
}

// The seed's "Respawn" section:
//
//	By default, Porto doesn't restart dead containers. Using respawn
//	property its possible to make Porto restart dead containers (delay is
//	1s). Maximum number of respawns is limited by max_respawn property
//	(unlimited by default, -1). respawn_count data may be used to get
//	number of container respawns.
func TestHierarchyRespawn(t *testing.T) {
	e := NewEnv(t)
	e.CleanupContainers(t)
	u := rootUser

	// Defaults.
	e.OK(t, u, "create", "r")
	e.Expect(t, u, "false", "get", "r", "respawn")
	e.Expect(t, u, "-1", "get", "r", "max_respawn")
	e.Expect(t, u, "0", "get", "r", "respawn_count")
	e.OK(t, u, "destroy", "r")

	// By default a dead container stays dead.
	e.OK(t, u, "run", "norespawn", "command=true")
	e.WaitState(t, u, "norespawn", "dead")

	// respawn=true: restarted about 1 s after its death, with a new
	// root_pid and respawn_count > 0.
	e.OK(t, u, "run", "r", "command=sleep 1000", "respawn=true")
	pid1 := rootPid(t, e, u, "r")
	syscall.Kill(pid1, syscall.SIGKILL)
	died := time.Now()
	e.WaitState(t, u, "r", "dead")
	var pid2 int
	deadline := time.Now().Add(10 * time.Second)
	for {
		r := e.Ctl(u, "get", "r", "root_pid")
		if r.Code == 0 {
			if p := atoi(strings.TrimSpace(r.Stdout)); p > 0 && p != pid1 {
				pid2 = p
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("r was not respawned within 10 s: %s", r)
		}
		time.Sleep(20 * time.Millisecond)
	}
	delay := time.Since(died)
	if delay < 700*time.Millisecond || delay > 3*time.Second {
		t.Errorf("respawn delay %v, want about 1 s", delay)
	}
	e.Expect(t, u, "running", "get", "r", "state")
	e.Expect(t, u, "1", "get", "r", "respawn_count")
	if p, ok := readProc(pid2); !ok || p.cmdline != "sleep 1000" {
		t.Errorf("new root_pid %d is not sleep 1000 (%+v)", pid2, p)
	}
	// Unlimited by default: a second death respawns again.
	syscall.Kill(pid2, syscall.SIGKILL)
	deadline = time.Now().Add(10 * time.Second)
	for e.Out(t, u, "get", "r", "respawn_count") != "2" {
		if time.Now().After(deadline) {
			t.Fatalf("r was not respawned a second time")
		}
		time.Sleep(50 * time.Millisecond)
	}
	e.WaitState(t, u, "r", "running")
	// Target semantics: respawn_count counts respawns since the last
	// explicit start.
	e.OK(t, u, "stop", "r")
	e.OK(t, u, "start", "r")
	e.Expect(t, u, "0", "get", "r", "respawn_count")

	// max_respawn=3: the count stops at 3 and the container stays dead.
	e.OK(t, u, "run", "max", "command=true", "respawn=true", "max_respawn=3")
	deadline = time.Now().Add(15 * time.Second)
	for e.Out(t, u, "get", "max", "respawn_count") != "3" {
		if time.Now().After(deadline) {
			t.Fatalf("max: respawn_count did not reach 3 in 15 s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	e.WaitState(t, u, "max", "dead")
	time.Sleep(1500 * time.Millisecond)
	e.Expect(t, u, "3", "get", "max", "respawn_count")
	e.Expect(t, u, "dead", "get", "max", "state")

	e.Expect(t, u, "0", "get", "norespawn", "respawn_count")
	e.Expect(t, u, "dead", "get", "norespawn", "state")
}
