package service

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/porto-dev/porto/api"
)

var root = Root
var alice = Caller{UID: 4242, GID: 4242}
var bob = Caller{UID: 4343, GID: 4343}

func (e *env) must(err error) {
	e.t.Helper()
	if err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) code(err error, want api.Code) {
	e.t.Helper()
	if got := api.CodeOf(err); got != want {
		e.t.Fatalf("error %v: code %v, want %v", err, got, want)
	}
}

func (e *env) get(name, key string) string {
	e.t.Helper()
	v, err := e.m.Get(context.Background(), root, name, key)
	if err != nil {
		e.t.Fatalf("get %s %s: %v", name, key, err)
	}
	return v
}

func (e *env) waitState(name string, want api.State) {
	e.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if v, _ := e.m.Get(context.Background(), root, name, "state"); v == string(want) {
			return
		}
		time.Sleep(2 * time.Millisecond)
	}
	e.t.Fatalf("%s: state %s, want %s", name, e.get(name, "state"), want)
}

func (e *env) run(c Caller, name, command string) int {
	e.t.Helper()
	ctx := context.Background()
	e.must(e.m.Create(ctx, c, name))
	if command != "" {
		e.must(e.m.Set(ctx, c, name, "command", command))
	}
	e.must(e.m.Start(ctx, c, name))
	pid, _ := strconv.Atoi(e.get(name, "root_pid"))
	return pid
}

func (e *env) waitAcked(pid int) {
	e.t.Helper()
	for i := 0; ; i++ {
		e.sp.mu.Lock()
		ok := e.sp.acked[pid]
		e.sp.mu.Unlock()
		if ok {
			return
		}
		if i > 2000 {
			e.t.Fatal("exit not acknowledged")
		}
		time.Sleep(time.Millisecond)
	}
}

func TestCreateListDuplicateMissing(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.must(e.m.Create(ctx, root, "a"))
	e.code(e.m.Create(ctx, root, "a"), api.ContainerAlreadyExists)
	e.code(e.m.Create(ctx, root, "x/y"), api.ContainerDoesNotExist)
	e.must(e.m.Create(ctx, root, "a/b"))
	l, _ := e.m.List(ctx, root)
	if strings.Join(l, ",") != "a,a/b" {
		t.Fatalf("list %v", l)
	}
	if e.get("a", "state") != "stopped" {
		t.Fatal("new container is not stopped")
	}
	for _, op := range []func(context.Context, Caller, string) error{e.m.Start, e.m.Pause, e.m.Resume, e.m.Destroy} {
		e.code(op(ctx, root, "nope"), api.ContainerDoesNotExist)
	}
	_, err := e.m.Get(ctx, root, "nope", "state")
	e.code(err, api.ContainerDoesNotExist)
	e.code(e.m.Set(ctx, root, "nope", "command", "x"), api.ContainerDoesNotExist)
	e.code(e.m.Destroy(ctx, root, "/"), api.Permission)
	e.code(e.m.Destroy(ctx, root, "z$"), api.ContainerDoesNotExist)
	for _, bad := range []string{"z$", "/x", "a//b", "a/../b", "é", strings.Repeat("x", 129), strings.Repeat("x/", 100) + "x"} {
		e.code(e.m.Create(ctx, root, bad), api.InvalidValue)
	}
	e.must(e.m.Create(ctx, root, strings.Repeat("x", 128)))
	e.must(e.m.Destroy(ctx, root, "a"))
	l, _ = e.m.List(ctx, root)
	if len(l) != 1 {
		t.Fatalf("destroy a did not remove a/b: %v", l)
	}
}

func TestLifecycleAndExitStatus(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	pid := e.run(root, "c", "sleep 1000")
	if e.get("c", "state") != "running" {
		t.Fatal("not running")
	}
	e.code(e.m.Start(ctx, root, "c"), api.InvalidState)
	_, err := e.m.Get(ctx, root, "c", "exit_status")
	e.code(err, api.InvalidState)
	e.sp.exit(pid, 9)
	e.waitState("c", api.StateDead)
	if e.get("c", "exit_status") != "9" || e.get("c", "exit_code") != "-9" || e.get("c", "oom_killed") != "false" {
		t.Fatalf("exit data %s %s", e.get("c", "exit_status"), e.get("c", "exit_code"))
	}
	_, err = e.m.Get(ctx, root, "c", "root_pid")
	e.code(err, api.InvalidState)
	e.waitAcked(pid)
	e.code(e.m.Start(ctx, root, "c"), api.InvalidState) // dead: stop first
	e.must(e.m.Stop(ctx, root, "c", -1))
	if e.get("c", "state") != "stopped" {
		t.Fatal("stop of dead is not stopped")
	}
	e.must(e.m.Stop(ctx, root, "c", -1)) // idempotent
	for _, k := range []string{"root_pid", "exit_status", "oom_killed", "stdout"} {
		_, err = e.m.Get(ctx, root, "c", k)
		e.code(err, api.InvalidState)
	}
}

func TestFailedStartLeavesStopped(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.must(e.m.Create(ctx, root, "bad"))
	e.must(e.m.Set(ctx, root, "bad", "command", "__missing__"))
	err := e.m.Start(ctx, root, "bad")
	e.code(err, api.Unknown)
	if api.AsError(err).Message() != "No such file or directory: execvpe(__missing__)" {
		t.Fatalf("message %q", api.AsError(err).Message())
	}
	if e.get("bad", "state") != "stopped" || e.get("bad", "start_errno") != "2" {
		t.Fatal("failed start")
	}
	if e.cg.Exists("bad") {
		t.Fatal("cgroup left behind")
	}
	if ents, _ := os.ReadDir(e.cfg.Place); len(ents) != 0 {
		t.Fatalf("files left behind: %v", ents)
	}
}

func TestHierarchyMetaAndDeath(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.must(e.m.Create(ctx, root, "a"))
	e.must(e.m.Set(ctx, root, "a", "isolate", "false"))
	e.must(e.m.Create(ctx, root, "a/b"))
	e.must(e.m.Set(ctx, root, "a/b", "command", "sleep 1"))
	e.must(e.m.Create(ctx, root, "a/b/c"))
	e.must(e.m.Set(ctx, root, "a/b/c", "command", "sleep 1"))
	e.must(e.m.Start(ctx, root, "a/b/c"))
	if e.get("a", "state") != "meta" || e.get("a/b", "state") != "running" || e.get("a/b/c", "state") != "running" {
		t.Fatalf("states %s %s %s", e.get("a", "state"), e.get("a/b", "state"), e.get("a/b/c", "state"))
	}
	// Stopping a/b stops its subtree; a stays.
	e.must(e.m.Stop(ctx, root, "a/b", -1))
	if e.get("a/b/c", "state") != "stopped" || e.get("a", "state") != "meta" {
		t.Fatal("stop subtree")
	}
	// A parent's death kills its subtree.
	e.must(e.m.Start(ctx, root, "a/b/c"))
	pid, _ := strconv.Atoi(e.get("a/b", "root_pid"))
	cpid, _ := strconv.Atoi(e.get("a/b/c", "root_pid"))
	go func() { time.Sleep(5 * time.Millisecond); e.sp.exit(cpid, 9) }()
	e.sp.exit(pid, 0)
	e.waitState("a/b", api.StateDead)
	e.waitState("a/b/c", api.StateDead)
	// A failing child start leaves the parent meta.
	e.must(e.m.Create(ctx, root, "a/x"))
	e.must(e.m.Set(ctx, root, "a/x", "command", "__missing__"))
	e.code(e.m.Start(ctx, root, "a/x"), api.Unknown)
	if e.get("a", "state") != "meta" {
		t.Fatal("parent not meta")
	}
}

func TestPermissions(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.must(e.m.Create(ctx, alice, "al"))
	e.code(e.m.Set(ctx, alice, "al", "user", "root"), api.Permission)
	e.code(e.m.Set(ctx, alice, "al", "capabilities", "CHOWN"), api.Permission)
	err := e.m.Destroy(ctx, bob, "al")
	e.code(err, api.Permission)
	if api.AsError(err).Message() != "Permission error" {
		t.Fatal(err)
	}
	e.code(e.m.Set(ctx, bob, "al", "command", "true"), api.Permission)
	e.code(e.m.Start(ctx, bob, "al"), api.Permission)
	e.code(e.m.Create(ctx, bob, "al/child"), api.Permission)
	if _, err := e.m.Get(ctx, bob, "al", "state"); err != nil {
		t.Fatal("others may read")
	}
	// polkit-authorized callers may act on anyone's container.
	admin := bob
	admin.Authorize = func(context.Context, string) (bool, error) { return true, nil }
	e.must(e.m.Set(ctx, admin, "al", "user", "root"))
	e.must(e.m.Destroy(ctx, admin, "al"))
}

func TestSetRulesAndProperties(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.run(root, "c", "sleep 1000")
	e.code(e.m.Set(ctx, root, "c", "env", "A=1"), api.InvalidState)
	e.must(e.m.Set(ctx, root, "c", "private", "hello"))
	e.code(e.m.Set(ctx, root, "c", "nope", "1"), api.InvalidProperty)
	e.code(e.m.Set(ctx, root, "c", "state", "1"), api.InvalidProperty)
	e.must(e.m.Create(ctx, root, "d"))
	for k, v := range map[string]string{"isolate": "maybe", "ulimit": "nofile: x", "env": "noequals", "cwd": "rel", "stdout_limit": "2G", "max_respawn": "-5"} {
		e.code(e.m.Set(ctx, root, "d", k, v), api.InvalidValue)
	}
	r := e.m.GetMulti(ctx, root, []string{"c", "missing"}, []string{"state", "bogus"})
	if len(r) != 4 || r[0].Err != nil || r[0].Value != "running" || r[1].Err.Code != api.InvalidProperty || r[2].Err.Code != api.ContainerDoesNotExist {
		t.Fatalf("GetMulti %+v", r)
	}
	if len(e.m.Properties()) < 30 {
		t.Fatal("property list too short")
	}
}

func TestEnvAndConfigOfStage(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.must(e.m.Create(ctx, root, "env"))
	e.must(e.m.Set(ctx, root, "env", "command", "bash -c 'env | grep TEST_PORTO'"))
	e.must(e.m.Set(ctx, root, "env", "env", `TEST_PORTO1=1; TEST_PORTO2=a\;b`))
	e.must(e.m.Set(ctx, root, "env", "cwd", "/tmp"))
	e.must(e.m.Start(ctx, root, "env"))
	pid, _ := strconv.Atoi(e.get("env", "root_pid"))
	var cfg = e.sp.config(pid)
	for i := 0; cfg == nil && i < 500; i++ {
		time.Sleep(time.Millisecond)
		cfg = e.sp.config(pid)
	}
	if cfg == nil || strings.Join(cfg.Argv, "|") != "bash|-c|env | grep TEST_PORTO" || cfg.Cwd != "/tmp" || !cfg.Isolate {
		t.Fatalf("config %+v", cfg)
	}
	want := []string{"TEST_PORTO1=1", "TEST_PORTO2=a;b", "PATH=", "HOME=/tmp", "USER=root", "container=lxc", "PORTO_NAME=env"}
	for i, w := range want {
		if !strings.HasPrefix(cfg.Env[i], w) {
			t.Fatalf("env %v", cfg.Env)
		}
	}
}

func TestWait(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	_, err := e.m.Wait(ctx, root, nil, 0)
	e.code(err, api.InvalidValue)
	_, err = e.m.Wait(ctx, root, []string{"missing"}, 0)
	e.code(err, api.ContainerDoesNotExist)
	if n, _ := e.m.Wait(ctx, root, []string{"/"}, -1); n != "/" {
		t.Fatal("wait /")
	}
	e.must(e.m.Create(ctx, root, "s"))
	if n, _ := e.m.Wait(ctx, root, []string{"s"}, -1); n != "s" {
		t.Fatal("stopped returns at once")
	}
	pid := e.run(root, "r", "sleep 1000")
	if n, _ := e.m.Wait(ctx, root, []string{"r"}, 0); n != "" {
		t.Fatal("timeout 0")
	}
	go func() { time.Sleep(20 * time.Millisecond); e.sp.exit(pid, 0) }()
	if n, err := e.m.Wait(ctx, root, []string{"r"}, 5*time.Second); n != "r" || err != nil {
		t.Fatalf("wait %q %v", n, err)
	}
}

func TestPauseResume(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.run(root, "p", "sleep 1000")
	e.must(e.m.Pause(ctx, root, "p"))
	e.code(e.m.Pause(ctx, root, "p"), api.InvalidState)
	if e.get("p", "state") != "paused" {
		t.Fatal("not paused")
	}
	e.must(e.m.Resume(ctx, root, "p"))
	e.code(e.m.Resume(ctx, root, "p"), api.InvalidState)
	e.must(e.m.Pause(ctx, root, "p"))
	e.must(e.m.Destroy(ctx, root, "p"))
}

func TestRespawnAndAging(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.must(e.m.Create(ctx, root, "r"))
	e.must(e.m.Set(ctx, root, "r", "command", "true"))
	e.must(e.m.Set(ctx, root, "r", "respawn", "true"))
	e.must(e.m.Set(ctx, root, "r", "max_respawn", "2"))
	e.must(e.m.Start(ctx, root, "r"))
	for i := 0; i < 3; i++ {
		pid, _ := strconv.Atoi(e.get("r", "root_pid"))
		e.sp.exit(pid, 0)
		if i < 2 {
			deadline := time.Now().Add(2 * time.Second)
			for e.get("r", "respawn_count") != strconv.Itoa(i+1) || e.get("r", "state") != "running" {
				if time.Now().After(deadline) {
					t.Fatalf("respawn %d: %s %s", i, e.get("r", "respawn_count"), e.get("r", "state"))
				}
				time.Sleep(2 * time.Millisecond)
			}
		}
	}
	e.waitState("r", api.StateDead)
	e.must(e.m.Create(ctx, root, "old"))
	e.must(e.m.Set(ctx, root, "old", "command", "true"))
	e.must(e.m.Set(ctx, root, "old", "aging_time", "0"))
	pid := e.run(root, "old2", "")
	_ = pid
	e.must(e.m.Start(ctx, root, "old"))
	opid, _ := strconv.Atoi(e.get("old", "root_pid"))
	e.sp.exit(opid, 0)
	deadline := time.Now().Add(2 * time.Second)
	for {
		if _, err := e.m.Get(ctx, root, "old", "state"); errors.Is(err, api.ErrContainerDoesNotExist) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("aging did not destroy")
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func TestRestore(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.must(e.m.Create(ctx, alice, "keep"))
	e.must(e.m.Set(ctx, alice, "keep", "env", "A=1"))
	pid := e.run(root, "dead", "false")
	e.sp.exit(pid, 256)
	e.waitAcked(pid) // acknowledged only once persisted
	e.m.Close()
	m2 := e.open()
	e.m = m2
	if e.get("keep", "env") != "A=1" || e.get("keep", "owner_user") != userName(alice.UID) || e.get("keep", "state") != "stopped" {
		t.Fatal("restored props")
	}
	if e.get("dead", "exit_status") != "256" {
		t.Fatal("restored exit status")
	}
}

func TestQuota(t *testing.T) {
	e := newEnv(t)
	e.cfg.MaxContainers = 3
	e.cfg.MaxPerUser = 1
	e.m = e.open()
	ctx := context.Background()
	e.must(e.m.Create(ctx, alice, "a1"))
	e.code(e.m.Create(ctx, alice, "a2"), api.ResourceNotAvailable)
	e.must(e.m.Create(ctx, root, "r1"))
	e.must(e.m.Create(ctx, root, "r2"))
	e.code(e.m.Create(ctx, bob, "b1"), api.ResourceNotAvailable)
}

// A destroy that races with the create of the same container (or with
// any save of its record) never leaves its state file behind.
func TestCreateDestroyRaceLeavesNoRecord(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	for i := 0; i < 300; i++ {
		var wg sync.WaitGroup
		wg.Add(2)
		go func() { defer wg.Done(); e.m.Create(ctx, root, "r") }()
		go func() {
			defer wg.Done()
			for e.m.Destroy(ctx, root, "r") != nil {
				runtime.Gosched()
			}
		}()
		wg.Wait()
		if _, err := os.Stat(filepath.Join(e.cfg.StateDir, "containers", "r.json")); err == nil {
			t.Fatalf("round %d: the record of a destroyed container is on disk", i)
		}
	}
}

// A child paused on its own, then its parent paused and resumed: the
// resume thaws the child's own freezer too, so that the child, which
// reads running again, really runs (a start below it used to hang in a
// frozen cgroup until start_timeout).
func TestResumeThawsSelfPausedDescendants(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.run(root, "g", "sleep 1000")
	e.run(root, "g/p", "sleep 1000")
	e.must(e.m.Pause(ctx, root, "g/p"))
	e.must(e.m.Pause(ctx, root, "g"))
	e.must(e.m.Resume(ctx, root, "g"))
	if st := e.get("g/p", "state"); st != "running" {
		t.Fatalf("g/p is %s after g's resume", st)
	}
	if fr, _ := e.cg.Frozen("g/p"); fr {
		t.Errorf("g/p reads running but its cgroup is still frozen")
	}
	e.must(e.m.Destroy(ctx, root, "g"))
}

// A start below a paused ancestor is refused, whatever state the parent
// reads: its cgroups would be born frozen.
func TestStartBelowPausedAncestor(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.run(root, "g", "sleep 1000")
	e.run(root, "g/p", "sleep 1000")
	e.must(e.m.Create(ctx, root, "g/p/c"))
	e.must(e.m.Set(ctx, root, "g/p/c", "command", "sleep 1000"))
	e.must(e.m.Pause(ctx, root, "g"))
	if err := e.m.Start(ctx, root, "g/p/c"); api.CodeOf(err) != api.InvalidState {
		t.Fatalf("start below a paused ancestor: %v, want InvalidState", err)
	}
	e.must(e.m.Resume(ctx, root, "g"))
	e.must(e.m.Start(ctx, root, "g/p/c"))
	e.must(e.m.Destroy(ctx, root, "g"))
}
