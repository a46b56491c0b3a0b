package tests

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/porto-dev/porto/api"
	"github.com/porto-dev/porto/api/client"
)

// Issue 8, acceptance 1: crash safety of the process model.
//
//   - TestRecoveryWorkerKill: containers in every state survive a SIGKILL
//     of the worker (the process owning org.porto.Manager) with the same
//     state, root_pid and properties; a container killed while the worker
//     was down reports its real exit status afterwards.
//   - TestRecoveryAllKilled: with every porto process killed, running
//     containers keep running and a fresh portod re-attaches them; one
//     that died meanwhile reports LostError, never an invented status.
//   - TestRecoveryUpgrade: SIGHUP of the master re-executes it in place
//     (same pid) without touching containers or the worker.

// --- helpers shared with chaos_test.go ----------------------------------------

// rcBus is a plain connection to the env's bus, for the bus daemon's own
// methods (who owns org.porto.Manager).
func (e *Env) rcBus(t *testing.T) *dbus.Conn {
	t.Helper()
	conn, err := dbus.Connect(e.BusAddr)
	if err != nil {
		t.Fatalf("connect to %s: %v", e.BusAddr, err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// rcOwnerPid returns the pid of the process owning org.porto.Manager on
// the bus (the worker), or 0 when nobody owns it.
func rcOwnerPid(conn *dbus.Conn) int {
	var pid uint32
	err := conn.BusObject().Call("org.freedesktop.DBus.GetConnectionUnixProcessID", 0, api.BusName).Store(&pid)
	if err != nil {
		return 0
	}
	return int(pid)
}

// rcMasterPid is the pid of the portod master the env started.
func (e *Env) rcMasterPid() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.portod == nil || e.portod.Process == nil {
		return 0
	}
	return e.portod.Process.Pid
}

// rcWaitGone waits until pid is gone or a zombie (it cannot run any more).
func rcWaitGone(t *testing.T, pid int, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		if s := procState(pid); s == "" || s == "Z" || s == "X" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("pid %d still running after %v (state %s)", pid, d, procState(pid))
		}
		time.Sleep(time.Millisecond)
	}
}

// rcWaitNewWorker waits until org.porto.Manager is owned by a process
// other than old and answers Version; it returns the new owner's pid.
func rcWaitNewWorker(t *testing.T, conn *dbus.Conn, cl *client.Client, old int, d time.Duration) int {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		if pid := rcOwnerPid(conn); pid != 0 && pid != old {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_, err := cl.Version(ctx)
			cancel()
			if err == nil {
				return pid
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no new worker owns %s within %v (old pid %d)", api.BusName, d, old)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// rcProcStart is the start time (clock ticks since boot) of pid, 0 if gone.
func rcProcStart(pid int) uint64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 20 {
		return 0
	}
	v, _ := strconv.ParseUint(f[19], 10, 64)
	return v
}

// rcSnapshot is every property and datum of every container: key ->
// value, or "ERR <code>" when the read failed.
type rcSnapshot map[string]map[string]string

// rcVolatile keys change by themselves between two reads.
var rcVolatile = map[string]bool{
	"time": true, "cpu_usage": true, "memory_usage": true, "max_rss": true,
	"minor_faults": true, "major_faults": true, "io_read": true, "io_write": true,
}

func rcTake(t *testing.T, cl *client.Client) rcSnapshot {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	names, err := cl.List(ctx)
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	names = slices.DeleteFunc(names, func(n string) bool { return n == "/" })
	props, err := cl.ListProperties(ctx)
	if err != nil {
		t.Fatalf("ListProperties: %v", err)
	}
	var keys []string
	for _, p := range props {
		keys = append(keys, p.Name)
	}
	res, err := cl.Get(ctx, names, keys)
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	snap := rcSnapshot{}
	for _, n := range names {
		snap[n] = map[string]string{}
	}
	for _, r := range res {
		v := r.Value
		if r.Err != nil {
			v = "ERR " + r.Err.Code.String()
		}
		if snap[r.Container] != nil {
			snap[r.Container][r.Key] = v
		}
	}
	return snap
}

// rcCompare reports every difference between two snapshots, except for
// the containers in skip and the volatile keys of live containers.
func rcCompare(t *testing.T, before, after rcSnapshot, skip ...string) {
	t.Helper()
	for n, bp := range before {
		if slices.Contains(skip, n) {
			continue
		}
		ap, ok := after[n]
		if !ok {
			t.Errorf("container %s lost", n)
			continue
		}
		for k, bv := range bp {
			if rcVolatile[k] && (k != "time" || bp["state"] != string(api.StateDead)) {
				continue
			}
			if av := ap[k]; av != bv {
				t.Errorf("%s %s: %q before, %q after", n, k, bv, av)
			}
		}
	}
	for n := range after {
		if _, ok := before[n]; !ok {
			t.Errorf("container %s appeared", n)
		}
	}
}

// rcClient is an api/client on the env's bus.
func (e *Env) rcClient(t *testing.T) *client.Client {
	t.Helper()
	return client.NewWithConn(e.rcBus(t))
}

// rcStateFiles parses every container state file; it returns the
// container names and the problems found.
func (e *Env) rcStateFiles() (names []string, bad []string) {
	dir := filepath.Join(e.StateDir, "containers")
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, []string{err.Error()}
	}
	for _, d := range ents {
		n := d.Name()
		if strings.HasPrefix(n, ".tmp-") {
			continue // a write in progress (or cut short by a kill): never read
		}
		if !strings.HasSuffix(n, ".json") {
			bad = append(bad, "unexpected file "+n)
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, n))
		if err != nil {
			if os.IsNotExist(err) {
				continue // destroyed meanwhile
			}
			bad = append(bad, fmt.Sprintf("%s: %v", n, err))
			continue
		}
		var rec struct {
			Name string `json:"name"`
		}
		if err := json.Unmarshal(b, &rec); err != nil {
			bad = append(bad, fmt.Sprintf("%s: %v: %q", n, err, b))
			continue
		}
		want, _ := api.UnescapePath(strings.TrimSuffix(n, ".json"))
		if rec.Name != want {
			bad = append(bad, fmt.Sprintf("%s: names %q: %q", n, rec.Name, b))
			continue
		}
		names = append(names, want)
	}
	slices.Sort(names)
	return names, bad
}

// rcLogHas reports whether portod's log contains s.
func (e *Env) rcLogHas(s string) bool {
	b, _ := os.ReadFile(e.Log)
	return strings.Contains(string(b), s)
}

// rcSetupAllStates creates containers in every state and returns the
// running ones whose root processes the tests play with.
func rcSetupAllStates(t *testing.T, e *Env) {
	t.Helper()
	r := rootUser
	// running, with a few properties set
	e.OK(t, r, "run", "run1", "command=sleep 1000", "env=A=1;B=two words", "cwd=/tmp", "aging_time=3600")
	e.OK(t, r, "run", "run2", "command=sleep 1000", "isolate=false")
	e.OK(t, r, "run", "victim", "command=sleep 1000")
	// dead: 0, 1 (256), signal 9, OOM
	e.OK(t, r, "run", "dead0", "command=true")
	e.OK(t, r, "run", "dead1", "command=false")
	e.OK(t, r, "run", "dead9", "command=sleep 1000")
	pid9, _ := strconv.Atoi(e.Out(t, r, "get", "dead9", "root_pid"))
	syscall.Kill(pid9, syscall.SIGKILL)
	e.OK(t, r, "run", "oom", "command=tail /dev/zero", "memory_limit=64M")
	// stopped
	e.OK(t, r, "create", "stopped")
	e.OK(t, r, "set", "stopped", "command", "sleep 5")
	// meta with running children (one of them a meta with a child)
	e.OK(t, r, "create", "meta")
	e.OK(t, r, "run", "meta/a", "command=sleep 1000")
	e.OK(t, r, "create", "meta/sub")
	e.OK(t, r, "run", "meta/sub/b", "command=sleep 1000")
	// paused
	e.OK(t, r, "run", "paused", "command=sleep 1000")
	e.OK(t, r, "pause", "paused")
	// respawn=true, running
	e.OK(t, r, "run", "respawn", "command=sleep 1000", "respawn=true")
	e.OK(t, r, "run", "respawnvictim", "command=sleep 1000", "respawn=true", "max_respawn=3")

	for _, n := range []string{"dead0", "dead1", "dead9", "oom"} {
		e.WaitState(t, r, n, "dead")
	}
	e.Expect(t, r, "Container exited with 0", "get", "dead0", "exit_status")
	e.Expect(t, r, "Container exited with 1", "get", "dead1", "exit_status")
	e.Expect(t, r, "Container killed by signal 9", "get", "dead9", "exit_status")
	e.Expect(t, r, "true", "get", "oom", "oom_killed")
	for n, want := range map[string]string{
		"run1": "running", "run2": "running", "victim": "running", "stopped": "stopped",
		"meta": "meta", "meta/a": "running", "meta/sub": "meta", "meta/sub/b": "running",
		"paused": "paused", "respawn": "running", "respawnvictim": "running",
	} {
		e.Expect(t, r, want, "get", n, "state")
	}
}

func rcRootPid(t *testing.T, e *Env, name string) int {
	t.Helper()
	pid, err := strconv.Atoi(e.Out(t, rootUser, "get", name, "root_pid"))
	if err != nil || pid <= 0 {
		t.Fatalf("root_pid of %s: %v", name, err)
	}
	return pid
}

func TestRecoveryWorkerKill(t *testing.T) {
	e := NewEnv(t)
	conn := e.rcBus(t)
	cl := client.NewWithConn(conn)
	rcSetupAllStates(t, e)

	before := rcTake(t, cl)
	victim := rcRootPid(t, e, "victim")
	rvictim := rcRootPid(t, e, "respawnvictim")
	starts := map[int]uint64{}
	for _, p := range before {
		if pid, err := strconv.Atoi(p["root_pid"]); err == nil && pid > 0 {
			starts[pid] = rcProcStart(pid)
		}
	}

	master := e.rcMasterPid()
	worker := rcOwnerPid(conn)
	if worker == 0 || worker == master {
		t.Fatalf("owner of %s is %d (master %d): not a separate worker", api.BusName, worker, master)
	}
	if p, _ := readProc(worker); p.ppid != master {
		t.Fatalf("worker %d is not the master's (%d) child: ppid %d", worker, master, p.ppid)
	}

	// SIGKILL the worker; once it can no longer run, kill two containers.
	if err := syscall.Kill(worker, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	rcWaitGone(t, worker, 5*time.Second)
	syscall.Kill(victim, syscall.SIGKILL)
	syscall.Kill(rvictim, syscall.SIGKILL)
	downFor := time.Now()
	if pid := rcOwnerPid(conn); pid != 0 && pid != worker {
		t.Fatalf("a new worker (%d) was already up when the containers were killed: the test proves nothing", pid)
	}

	nw := rcWaitNewWorker(t, conn, cl, worker, 20*time.Second)
	t.Logf("new worker %d answered %v after the containers were killed", nw, time.Since(downFor))
	if p, _ := readProc(nw); p.ppid != master {
		t.Errorf("new worker %d is not the master's child (ppid %d)", nw, p.ppid)
	}
	if e.rcMasterPid() != master || !e.PortodAlive() {
		t.Fatalf("master changed or died")
	}

	// The one killed while the worker was down: its real status.
	e.WaitState(t, rootUser, "victim", "dead")
	e.Expect(t, rootUser, "Container killed by signal 9", "get", "victim", "exit_status")
	e.Expect(t, rootUser, "9", "dget", "victim", "exit_status")
	e.Expect(t, rootUser, "-9", "dget", "victim", "exit_code")
	e.Expect(t, rootUser, "false", "get", "victim", "oom_killed")

	// The respawning one killed while down: respawned once, running again.
	deadline := time.Now().Add(10 * time.Second)
	for {
		st := e.Out(t, rootUser, "get", "respawnvictim", "state")
		cnt := e.Out(t, rootUser, "get", "respawnvictim", "respawn_count")
		if st == "running" && cnt == "1" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("respawnvictim: state %s respawn_count %s, want running 1", st, cnt)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if p := rcRootPid(t, e, "respawnvictim"); p == rvictim {
		t.Errorf("respawnvictim still has the killed root_pid %d", p)
	}

	// Everything else: same state, root_pid and properties.
	after := rcTake(t, cl)
	rcCompare(t, before, after, "victim", "respawnvictim")
	for pid, st := range starts {
		if pid == victim || pid == rvictim {
			continue
		}
		if got := rcProcStart(pid); got != st {
			t.Errorf("container process %d: start time %d, was %d (restarted or gone)", pid, got, st)
		}
	}

	// Still managed: the paused one resumes and stops, new ones start.
	e.OK(t, rootUser, "resume", "paused")
	e.Expect(t, rootUser, "running", "get", "paused", "state")
	pp := rcRootPid(t, e, "paused")
	syscall.Kill(pp, syscall.SIGKILL)
	e.WaitState(t, rootUser, "paused", "dead")
	e.Expect(t, rootUser, "Container killed by signal 9", "get", "paused", "exit_status")
	e.OK(t, rootUser, "stop", "run1")
	e.Expect(t, rootUser, "stopped", "get", "run1", "state")
	rcWaitGone(t, rcPidOf(before, "run1"), 5*time.Second)
	e.OK(t, rootUser, "start", "stopped")
	e.Expect(t, rootUser, "running", "get", "stopped", "state")
	e.OK(t, rootUser, "run", "fresh", "command=true")
	e.WaitState(t, rootUser, "fresh", "dead")
	e.Expect(t, rootUser, "Container exited with 0", "get", "fresh", "exit_status")
	if e.rcLogHas("unreadable container state") {
		t.Errorf("portod logged an unreadable container state")
	}
}

func rcPidOf(s rcSnapshot, name string) int {
	pid, _ := strconv.Atoi(s[name]["root_pid"])
	return pid
}

func TestRecoveryAllKilled(t *testing.T) {
	e := NewEnv(t)
	conn := e.rcBus(t)
	r := rootUser
	e.OK(t, r, "run", "keep", "command=sleep 1000")
	e.OK(t, r, "run", "keep2", "command=sleep 1000", "isolate=false")
	e.OK(t, r, "create", "meta")
	e.OK(t, r, "run", "meta/child", "command=sleep 1000")
	e.OK(t, r, "run", "lost", "command=sleep 1000")
	e.OK(t, r, "run", "dead1", "command=false")
	e.WaitState(t, r, "dead1", "dead")
	cl0 := client.NewWithConn(conn)
	before := rcTake(t, cl0)
	pids := map[string]int{}
	for _, n := range []string{"keep", "keep2", "meta/child", "lost"} {
		pids[n] = rcRootPid(t, e, n)
	}

	// Kill every porto process: the master first (so that it cannot
	// restart the worker), then the worker.
	master, worker := e.rcMasterPid(), rcOwnerPid(conn)
	if worker == 0 || master == 0 {
		t.Fatalf("master %d worker %d", master, worker)
	}
	syscall.Kill(master, syscall.SIGKILL)
	syscall.Kill(worker, syscall.SIGKILL)
	rcWaitGone(t, master, 5*time.Second)
	rcWaitGone(t, worker, 5*time.Second)
	e.mu.Lock()
	done := e.portodErr
	e.mu.Unlock()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatalf("master %d not reaped", master)
	}
	// No porto process is left; the containers run on.
	for n, pid := range pids {
		if s := procState(pid); s == "" || s == "Z" {
			t.Fatalf("%s (pid %d) died with portod", n, pid)
		}
	}
	for _, p := range allProcs() {
		if p.pid == master || p.pid == worker {
			continue
		}
		if env, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", p.pid)); err == nil &&
			strings.Contains(string(env), "PORTO_ITEST="+e.CgroupRoot+"\x00") && strings.Contains(p.cmdline, "portod") && p.state != "Z" {
			t.Errorf("a porto process survived: %d %q", p.pid, p.cmdline)
		}
	}
	// One dies while no porto process runs: its status goes to init.
	syscall.Kill(pids["lost"], syscall.SIGKILL)
	rcWaitGone(t, pids["lost"], 5*time.Second)
	time.Sleep(100 * time.Millisecond) // init reaps it

	e.StartPortod()
	cl := e.rcClient(t)
	after := rcTake(t, cl)
	rcCompare(t, before, after, "lost")
	for n, pid := range pids {
		if n == "lost" {
			continue
		}
		if got := rcRootPid(t, e, n); got != pid {
			t.Errorf("%s: root_pid %d, was %d", n, got, pid)
		}
	}
	e.WaitState(t, r, "lost", "dead")
	res := e.Ctl(r, "get", "lost", "exit_status")
	if res.Code == 0 || !strings.Contains(res.Stderr, "LostError") {
		t.Errorf("exit_status of a container that died unwatched: want a LostError, got %s", res)
	}
	res = e.Ctl(r, "dget", "lost", "exit_code")
	if res.Code == 0 || !strings.Contains(res.Stderr, "LostError") {
		t.Errorf("exit_code of a container that died unwatched: want a LostError, got %s", res)
	}
	e.Expect(t, r, "Container exited with 1", "get", "dead1", "exit_status")

	// Re-attached: a stop works (the process is not our child: the death is
	// seen through its pidfd), and so does a kill noticed on its own.
	e.OK(t, r, "stop", "keep")
	e.Expect(t, r, "stopped", "get", "keep", "state")
	rcWaitGone(t, pids["keep"], 5*time.Second)
	syscall.Kill(pids["keep2"], syscall.SIGKILL)
	e.WaitState(t, r, "keep2", "dead")
	res = e.Ctl(r, "get", "keep2", "exit_status")
	if res.Code == 0 || !strings.Contains(res.Stderr, "LostError") {
		t.Errorf("exit_status of a re-attached foreign process: want a LostError (not our child), got %s", res)
	}
	e.OK(t, r, "stop", "meta")
	e.Expect(t, r, "stopped", "get", "meta/child", "state")
	rcWaitGone(t, pids["meta/child"], 5*time.Second)
	// New containers are ours again, with real statuses.
	e.OK(t, r, "run", "new", "command=sleep 1000")
	np := rcRootPid(t, e, "new")
	syscall.Kill(np, syscall.SIGKILL)
	e.WaitState(t, r, "new", "dead")
	e.Expect(t, r, "Container killed by signal 9", "get", "new", "exit_status")
}

func TestRecoveryUpgrade(t *testing.T) {
	e := NewEnv(t)
	conn := e.rcBus(t)
	r := rootUser
	e.OK(t, r, "run", "a", "command=sleep 1000")
	e.OK(t, r, "run", "b", "command=sleep 1000", "isolate=false")
	e.OK(t, r, "run", "d", "command=false")
	e.WaitState(t, r, "d", "dead")
	cl := client.NewWithConn(conn)
	before := rcTake(t, cl)
	pa, pb := rcRootPid(t, e, "a"), rcRootPid(t, e, "b")
	sa, sb := rcProcStart(pa), rcProcStart(pb)
	master, worker := e.rcMasterPid(), rcOwnerPid(conn)
	exeBefore, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", master))

	if err := syscall.Kill(master, syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	// The successor logs that it took the worker over.
	deadline := time.Now().Add(15 * time.Second)
	for !e.rcLogHas("took over worker") {
		if time.Now().After(deadline) {
			t.Fatalf("the master did not take over after SIGHUP\n%s", e.LogTail())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !e.PortodAlive() || e.rcMasterPid() != master {
		t.Fatalf("the master's pid changed or it died")
	}
	if exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", master)); exe != exeBefore {
		t.Errorf("master exe %q, was %q", exe, exeBefore)
	}
	if cmd, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", master)); !strings.Contains(string(cmd), "--takeover=") {
		t.Errorf("master was not re-executed: cmdline %q", cmd)
	}
	if w := rcOwnerPid(conn); w != worker {
		t.Errorf("worker changed across the upgrade: %d, was %d", w, worker)
	}
	if rcProcStart(pa) != sa || rcProcStart(pb) != sb {
		t.Errorf("container processes were touched by the upgrade")
	}
	rcCompare(t, before, rcTake(t, cl))

	// Still managed: exits go through the new master, spawns too.
	syscall.Kill(pa, syscall.SIGKILL)
	e.WaitState(t, r, "a", "dead")
	e.Expect(t, r, "Container killed by signal 9", "get", "a", "exit_status")
	e.OK(t, r, "stop", "b")
	rcWaitGone(t, pb, 5*time.Second)
	e.OK(t, r, "run", "c", "command=sleep 1000")
	pc := rcRootPid(t, e, "c")
	if p, _ := readProc(pc); p.ppid != master {
		t.Errorf("new container %d is not the upgraded master's child (ppid %d)", pc, p.ppid)
	}
	e.OK(t, r, "run", "c2", "command=false")
	e.WaitState(t, r, "c2", "dead")
	e.Expect(t, r, "Container exited with 1", "get", "c2", "exit_status")

	// And the worker moves to the new binary with SIGTERM: the master
	// restarts it; the containers stay.
	syscall.Kill(worker, syscall.SIGTERM)
	nw := rcWaitNewWorker(t, conn, cl, worker, 20*time.Second)
	if p, _ := readProc(nw); p.ppid != master {
		t.Errorf("new worker %d: ppid %d, want the master %d", nw, p.ppid, master)
	}
	if got := rcRootPid(t, e, "c"); got != pc {
		t.Errorf("c: root_pid %d, was %d", got, pc)
	}
	e.Expect(t, r, "running", "get", "c", "state")
	e.OK(t, r, "kill", "c", "9")
	e.WaitState(t, r, "c", "dead")
	e.Expect(t, r, "Container killed by signal 9", "get", "c", "exit_status")
}
