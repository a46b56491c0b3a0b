package tests

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/porto-dev/porto/api"
	"github.com/porto-dev/porto/api/client"
	"github.com/porto-dev/porto/isolation/supervise"
)

// Issue 8, acceptance 2: kill -9 of the worker (and, one round in ten,
// of the master too) at random moments while several clients create,
// start, pause, resume, stop and destroy containers. After every restart:
//
//   - no container is lost or duplicated: every client's model of its own
//     containers matches what portod lists, except for the one operation
//     per client that was in flight when the kill hit, which may or may not
//     have happened (its possible outcomes are checked, then adopted);
//   - every state file under state_dir/containers parses and names its
//     container, the files and the listed containers are the same set, and
//     portod never logged "unreadable container state";
//   - cgroups exist only for started containers, and processes live only
//     in the cgroups of running or paused ones; a paused container is
//     frozen and a running one is not.
//
// At the end everything is destroyed and the env's teardown checks that no
// cgroup, process, mount or state file is left; the master must have no
// child left but its worker (no unreaped zombie).
//
// PORTO_CHAOS_ROUNDS sets the number of rounds (default 100),
// PORTO_CHAOS_SEED replays a run, PORTO_CHAOS_CLIENTS sets the number of
// clients (default 4).

// chState is what a client believes of one of its containers.
type chState int

const (
	chAbsent  chState = iota
	chStopped         // created, not started (or stopped)
	chStarted         // running, or dead for a command that ends
	chPaused
)

func (s chState) String() string {
	return [...]string{"absent", "stopped", "started", "paused"}[s]
}

type chNode struct {
	name     string
	state    chState
	cmd      string // the command set, when cmdKnown
	cmdKnown bool
	running  bool // chStarted and known to be running (may be paused)
	// dying: a stop or destroy was cut short after it may have signalled
	// the process, which may die (dead, with its real status) any time.
	dying bool
}

// chOp is an operation whose outcome is unknown (the daemon died under it).
type chOp struct {
	op   string // create, set, start, stop, destroy
	node *chNode
	err  error
}

type chClient struct {
	id    int
	cl    *client.Client
	rng   *rand.Rand
	nodes map[string]*chNode
	seq   int
	ops   int
	downs int

	stateDir string   // for failure messages
	history  []string // the last operations, for failure messages

	inflight *chOp // set when the last op hit a dead daemon
	failure  error // an unexpected error: the test fails
}

// chGate parks the clients between rounds.
type chGate struct {
	mu     sync.Mutex
	cond   *sync.Cond
	park   bool
	parked int
	gen    int
	stop   bool
}

func newChGate() *chGate {
	g := &chGate{}
	g.cond = sync.NewCond(&g.mu)
	return g
}

// wait parks the caller if a park was requested (or if force), until the
// next round; it reports false when the test is over.
func (g *chGate) wait(force bool) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.park && !force {
		return !g.stop
	}
	gen := g.gen
	g.parked++
	g.cond.Broadcast()
	for g.gen == gen && !g.stop {
		g.cond.Wait()
	}
	return !g.stop
}

// parkAll asks every client to park and waits until they all did.
func (g *chGate) parkAll(n int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.park = true
	for g.parked < n {
		g.cond.Wait()
	}
}

// release starts the next round (or ends the test).
func (g *chGate) release(stop bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.park = false
	g.parked = 0
	g.gen++
	g.stop = stop
	g.cond.Broadcast()
}

// chDown reports whether err means "the daemon was not there or died
// during the call" rather than an answer from portod.
func chDown(err error) bool {
	var de dbus.Error
	if errors.As(err, &de) {
		switch de.Name {
		case "org.freedesktop.DBus.Error.ServiceUnknown",
			"org.freedesktop.DBus.Error.NameHasNoOwner",
			"org.freedesktop.DBus.Error.NoReply":
			return true
		}
	}
	var pde *dbus.Error
	if errors.As(err, &pde) && pde != nil {
		switch pde.Name {
		case "org.freedesktop.DBus.Error.ServiceUnknown",
			"org.freedesktop.DBus.Error.NameHasNoOwner",
			"org.freedesktop.DBus.Error.NoReply":
			return true
		}
	}
	return false
}

var chCommands = []string{"sleep 1000", "sleep 1000", "true"}

// step runs one random operation; it returns false when the client must
// park (the daemon is down, or something unexpected happened).
func (c *chClient) step() bool {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var n *chNode
	if len(c.nodes) < 8 && (len(c.nodes) == 0 || c.rng.IntN(4) == 0) {
		c.seq++
		n = &chNode{name: fmt.Sprintf("c%d-%d", c.id, c.seq)}
		return c.do("create", n, c.cl.Create(ctx, n.name), func() {
			n.state = chStopped
			c.nodes[n.name] = n
		})
	}
	names := make([]string, 0, len(c.nodes))
	for k := range c.nodes {
		names = append(names, k)
	}
	slices.Sort(names)
	n = c.nodes[names[c.rng.IntN(len(names))]]
	r := c.rng.IntN(10)
	switch n.state {
	case chStopped:
		switch {
		case !n.cmdKnown || r == 0:
			cmd := chCommands[c.rng.IntN(len(chCommands))]
			iso := "true"
			if c.rng.IntN(3) == 0 {
				iso = "false"
			}
			err := c.cl.SetProperty(ctx, n.name, "command", cmd)
			if err == nil {
				err = c.cl.SetProperty(ctx, n.name, "isolate", iso)
			}
			return c.do("set", n, err, func() { n.cmd, n.cmdKnown = cmd, true })
		case r < 8:
			return c.do("start", n, c.cl.Start(ctx, n.name), func() {
				n.state, n.running, n.dying = chStarted, n.cmd == "sleep 1000", false
			})
		default:
			return c.do("destroy", n, c.cl.Destroy(ctx, n.name), func() { delete(c.nodes, n.name) })
		}
	case chPaused:
		switch {
		case r < 6 && !n.dying:
			return c.do("resume", n, c.cl.Resume(ctx, n.name), func() { n.state, n.running = chStarted, true })
		case r < 8:
			return c.do("stop", n, c.cl.Stop(ctx, n.name, time.Second), func() { n.state, n.running = chStopped, false })
		default:
			return c.do("destroy", n, c.cl.Destroy(ctx, n.name), func() { delete(c.nodes, n.name) })
		}
	default:
		switch {
		case r < 2 && n.running && !n.dying:
			return c.do("pause", n, c.cl.Pause(ctx, n.name), func() { n.state = chPaused })
		case r < 6:
			return c.do("stop", n, c.cl.Stop(ctx, n.name, time.Second), func() { n.state, n.running = chStopped, false })
		}
		return c.do("destroy", n, c.cl.Destroy(ctx, n.name), func() { delete(c.nodes, n.name) })
	}
}

func (c *chClient) do(op string, n *chNode, err error, ok func()) bool {
	c.ops++
	c.history = append(c.history, fmt.Sprintf("%s %s: %v", op, n.name, err))
	if len(c.history) > 400 {
		c.history = c.history[200:]
	}
	switch {
	case err == nil:
		ok()
		return true
	case chDown(err):
		c.downs++
		c.inflight = &chOp{op: op, node: n, err: err}
		return false
	default:
		c.failure = fmt.Errorf("client %d: %s %s (believed %s): %v", c.id, op, n.name, n.state, err)
		return false
	}
}

func (c *chClient) run(g *chGate) {
	for g.wait(false) {
		if !c.step() {
			if !g.wait(true) {
				return
			}
		}
	}
}

// chObserved is one container as portod lists it.
type chObserved struct {
	state string
}

// check compares c's model with what portod reports, resolves the
// operation in flight, and adopts the outcome.
func (c *chClient) check(t *testing.T, round int, obs map[string]chObserved) {
	t.Helper()
	if c.failure != nil {
		t.Errorf("round %d: %v", round, c.failure)
		c.failure = nil
	}
	unsure := map[string]*chOp{}
	if op := c.inflight; op != nil {
		unsure[op.node.name] = op
		c.inflight = nil
	}
	mine := map[string]bool{}
	for name, n := range c.nodes {
		mine[name] = true
		if unsure[name] != nil {
			continue
		}
		o, ok := obs[name]
		if !ok {
			t.Errorf("round %d: container %s lost (believed %s)", round, name, n.state)
			delete(c.nodes, name)
			continue
		}
		if !chMatches(n, o.state) {
			rec, _ := os.ReadFile(filepath.Join(c.stateDir, "containers", api.EscapePath(name)+".json"))
			t.Errorf("round %d: container %s is %s, believed %s (command %q); its record: %s; client %d's last operations on it: %s",
				round, name, o.state, n.state, n.cmd, rec, c.id, c.opsOn(name))
		}
		c.adopt(n, o.state)
	}
	for name, op := range unsure {
		mine[name] = true
		o, exists := obs[name]
		allowed := chOutcomes(op)
		got := "absent"
		if exists {
			got = o.state
		}
		if !slices.Contains(allowed, got) {
			t.Errorf("round %d: %s of %s in flight at the kill: container is %s, want one of %v", round, op.op, name, got, allowed)
		}
		n := op.node
		if !exists {
			delete(c.nodes, name)
			continue
		}
		c.nodes[name] = n
		if op.op == "create" || op.op == "set" {
			n.cmdKnown = false // set it again before a start
		}
		if (op.op == "stop" || op.op == "destroy") && (got == "running" || got == "paused") {
			n.dying = true
		}
		c.adopt(n, got)
	}
	for name := range obs {
		if strings.HasPrefix(name, fmt.Sprintf("c%d-", c.id)) && !mine[name] {
			t.Errorf("round %d: container %s exists (%s) but client %d never created it, or destroyed it", round, name, obs[name].state, c.id)
		}
	}
}

// adopt makes n's model what portod says.
func (c *chClient) adopt(n *chNode, state string) {
	switch state {
	case "stopped":
		n.state, n.running, n.dying = chStopped, false, false
	case "paused":
		n.state, n.running = chPaused, true
	case "dead":
		n.state, n.running, n.dying = chStarted, false, false
	default:
		n.state, n.running = chStarted, state == "running" && n.cmdKnown && n.cmd == "sleep 1000"
	}
}

func chMatches(n *chNode, state string) bool {
	if n.dying && state == "dead" && n.state != chStopped {
		return true
	}
	switch n.state {
	case chStopped:
		return state == "stopped"
	case chStarted:
		if state == "running" {
			return true
		}
		// A command that ends is dead. (A "sleep 1000" could die only by a
		// bug: nothing kills it, and a master kill leaves it running.)
		return state == "dead" && !n.running
	case chPaused:
		return state == "paused"
	}
	return false
}

// chOutcomes lists the states a container may be in after op was cut
// short by a kill of the daemon ("absent": it does not exist).
func chOutcomes(op *chOp) []string {
	switch op.op {
	case "create":
		return []string{"absent", "stopped"}
	case "set":
		return []string{"stopped"}
	case "start":
		return []string{"stopped", "running", "dead"}
	case "stop":
		if op.node.state == chPaused {
			return []string{"paused", "running", "dead", "stopped"}
		}
		return []string{"running", "dead", "stopped"}
	case "pause", "resume":
		return []string{"running", "paused"}
	case "destroy":
		switch op.node.state {
		case chStopped:
			return []string{"absent", "stopped"}
		case chPaused:
			return []string{"absent", "paused", "running", "dead", "stopped"}
		}
		return []string{"absent", "running", "dead", "stopped"}
	}
	return nil
}

// rcStartPortodEnv is StartPortod with extra environment for the master.
func (e *Env) rcStartPortodEnv(t *testing.T, conn *dbus.Conn, extra ...string) {
	t.Helper()
	logf, err := os.OpenFile(e.Log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd := e.portodCmd()
	cmd.Env = append([]string{
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"DBUS_SYSTEM_BUS_ADDRESS=" + e.BusAddr,
		"LANG=C",
		"PORTO_ITEST=" + e.CgroupRoot,
	}, extra...)
	cmd.Dir = e.Dir
	cmd.Stdout = logf
	cmd.Stderr = logf
	if err := cmd.Start(); err != nil {
		t.Fatalf("portod: %v", err)
	}
	done := make(chan error, 1)
	e.mu.Lock()
	e.portod = cmd
	e.portodErr = done
	e.mu.Unlock()
	go func() { done <- cmd.Wait() }()
	cl := client.NewWithConn(conn)
	deadline := time.Now().Add(20 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := cl.Version(ctx)
		cancel()
		if err == nil {
			return
		}
		select {
		case err := <-done:
			done <- err
			t.Fatalf("portod exited before owning %s: %v\n%s", api.BusName, err, e.LogTail())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not answer in 20s: %v\n%s", api.BusName, err, e.LogTail())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// rcChildren lists the children of pid (zombies included).
func rcChildren(pid int) []int {
	var out []int
	tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	for _, tk := range tasks {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/children", pid, tk.Name()))
		for _, f := range strings.Fields(string(b)) {
			if n, err := strconv.Atoi(f); err == nil {
				out = append(out, n)
			}
		}
	}
	return out
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

func TestChaosKill(t *testing.T) {
	e := NewEnv(t)
	conn := e.rcBus(t)
	// Restart the master with the crash-loop backoff off: this test kills
	// the worker about twice a second, on purpose.
	if err := e.StopPortod(); err != nil {
		t.Fatal(err)
	}
	resetEnv := supervise.RestartResetEnv + "=0s"
	e.rcStartPortodEnv(t, conn, resetEnv)

	rounds := envInt("PORTO_CHAOS_ROUNDS", 100)
	nclients := envInt("PORTO_CHAOS_CLIENTS", 4)
	seed := uint64(time.Now().UnixNano())
	if s, err := strconv.ParseUint(os.Getenv("PORTO_CHAOS_SEED"), 10, 64); err == nil {
		seed = s
	}
	t.Logf("PORTO_CHAOS_SEED=%d PORTO_CHAOS_ROUNDS=%d PORTO_CHAOS_CLIENTS=%d", seed, rounds, nclients)
	rng := rand.New(rand.NewPCG(seed, 1))

	gate := newChGate()
	gate.park = true // clients start parked
	clients := make([]*chClient, nclients)
	var wg sync.WaitGroup
	for i := range clients {
		c := &chClient{
			id:       i,
			cl:       e.rcClient(t),
			rng:      rand.New(rand.NewPCG(seed, uint64(i)+2)),
			nodes:    map[string]*chNode{},
			stateDir: e.StateDir,
		}
		clients[i] = c
		wg.Add(1)
		go func() { defer wg.Done(); c.run(gate) }()
	}
	gate.parkAll(nclients)
	obsCl := e.rcClient(t)

	t0 := time.Now()
	masterKills, workerKills := 0, 0
	var recoveries []time.Duration
	for round := 1; round <= rounds && !t.Failed(); round++ {
		worker := rcOwnerPid(conn)
		master := e.rcMasterPid()
		gate.release(false)
		time.Sleep(time.Duration(rng.IntN(400)) * time.Millisecond)
		killMaster := rng.IntN(10) == 0
		tk := time.Now()
		if killMaster {
			t.Logf("round %d: SIGKILL of the master and the worker", round)
			masterKills++
			syscall.Kill(master, syscall.SIGKILL)
			syscall.Kill(worker, syscall.SIGKILL)
			rcWaitGone(t, master, 5*time.Second)
			rcWaitGone(t, worker, 5*time.Second)
			e.mu.Lock()
			done := e.portodErr
			e.mu.Unlock()
			<-done
			e.rcStartPortodEnv(t, conn, resetEnv)
		} else {
			workerKills++
			syscall.Kill(worker, syscall.SIGKILL)
			rcWaitGone(t, worker, 5*time.Second)
			rcWaitNewWorker(t, conn, obsCl, worker, 20*time.Second)
		}
		recoveries = append(recoveries, time.Since(tk))
		gate.parkAll(nclients)
		chVerify(t, e, round, clients, obsCl)
	}
	gate.parkAll(nclients)
	gate.release(true)
	wg.Wait()
	ops, downs := 0, 0
	for _, c := range clients {
		ops += c.ops
		downs += c.downs
	}
	if len(chSlowCleanups) > 0 {
		t.Logf("cleanups that took over 1s: %q", chSlowCleanups)
	}
	slices.Sort(recoveries)
	med := time.Duration(0)
	if len(recoveries) > 0 {
		med = recoveries[len(recoveries)/2]
	}
	t.Logf("%d rounds in %v: %d worker kills, %d master+worker kills, %d operations, %d cut short by a kill; median kill-to-answer %v",
		len(recoveries), time.Since(t0).Round(time.Millisecond), workerKills, masterKills, ops, downs, med)

	// Destroy everything; the env's teardown checks for leaks.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	names, err := obsCl.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		if n == "/" || strings.Contains(n, "/") {
			continue
		}
		if err := obsCl.Destroy(ctx, n); err != nil {
			t.Errorf("destroy %s: %v", n, err)
		}
	}
	master, worker := e.rcMasterPid(), rcOwnerPid(conn)
	deadline := time.Now().Add(3 * time.Second)
	for {
		kids := slices.DeleteFunc(rcChildren(master), func(p int) bool { return p == worker })
		if len(kids) == 0 {
			break
		}
		if time.Now().After(deadline) {
			for _, k := range kids {
				p, _ := readProc(k)
				t.Errorf("the master still has child %d (%s %q) after every container was destroyed", k, p.state, p.cmdline)
			}
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if names, bad := e.rcStateFiles(); len(names) > 0 || len(bad) > 0 {
		t.Errorf("state files after destroying everything: %q, bad: %q", names, bad)
	}
}

// chSlowCleanups lists the rounds whose leftovers took over a second to go.
var chSlowCleanups []string

// chVerify checks portod against every client's model after a restart.
func chVerify(t *testing.T, e *Env, round int, clients []*chClient, cl *client.Client) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	names, err := cl.List(ctx)
	if err != nil {
		t.Fatalf("round %d: List: %v", round, err)
	}
	names = slices.DeleteFunc(names, func(n string) bool { return n == "/" })
	seen := map[string]bool{}
	for _, n := range names {
		if seen[n] {
			t.Errorf("round %d: container %s listed twice", round, n)
		}
		seen[n] = true
	}
	obs := map[string]chObserved{}
	if len(names) > 0 {
		res, err := cl.Get(ctx, names, []string{"state"})
		if err != nil {
			t.Fatalf("round %d: Get: %v", round, err)
		}
		for _, r := range res {
			if r.Err != nil {
				t.Errorf("round %d: state of %s: %v", round, r.Container, r.Err)
				continue
			}
			obs[r.Container] = chObserved{state: r.Value}
		}
	}
	for _, c := range clients {
		c.check(t, round, obs)
	}
	for _, n := range names {
		if !strings.HasPrefix(n, "c") || !strings.Contains(n, "-") {
			t.Errorf("round %d: unexpected container %s", round, n)
		}
	}

	// A paused container is frozen, a running one is not.
	for name, o := range obs {
		b, err := os.ReadFile(filepath.Join("/sys/fs/cgroup/freezer", e.CgroupRoot, name, "freezer.state"))
		fs := strings.TrimSpace(string(b))
		switch {
		case o.state == "paused" && (err != nil || fs != "FROZEN"):
			t.Errorf("round %d: %s is paused but its freezer is %q (%v)", round, name, fs, err)
		case o.state == "running" && (err != nil || fs != "THAWED"):
			t.Errorf("round %d: %s is running but its freezer is %q (%v)", round, name, fs, err)
		}
	}

	// State files: every one readable, one per container, nothing else.
	files, bad := e.rcStateFiles()
	for _, b := range bad {
		t.Errorf("round %d: state file: %s", round, b)
	}
	listed := slices.Clone(names)
	slices.Sort(listed)
	if !slices.Equal(files, listed) {
		t.Errorf("round %d: state files %q, containers %q", round, files, listed)
	}
	if e.rcLogHas("unreadable container state") {
		t.Fatalf("round %d: portod logged an unreadable container state\n%s", round, e.LogTail())
	}

	// Cgroups only for started containers, processes only in running ones.
	// The cleanup of a start cut short runs in the background (waiting for
	// zombies to be reaped); slow ones are listed in chSlowCleanups.
	t0 := time.Now()
	deadline := t0.Add(8 * time.Second)
	for {
		problems := chLeaks(e, obs)
		if len(problems) == 0 {
			if d := time.Since(t0); d > time.Second {
				chSlowCleanups = append(chSlowCleanups, fmt.Sprintf("round %d: %v", round, d.Round(time.Millisecond)))
			}
			return
		}
		if time.Now().After(deadline) {
			for _, p := range problems {
				t.Errorf("round %d: %s", round, p)
			}
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// chLeaks finds cgroups of containers that are not started and processes
// in cgroups of containers that are neither running nor paused.
func chLeaks(e *Env, obs map[string]chObserved) []string {
	var out []string
	for _, cg := range e.Cgroups() {
		// /sys/fs/cgroup/<hierarchy>/<root>/<name>
		rel := cg[strings.Index(cg, "/"+e.CgroupRoot+"/")+len(e.CgroupRoot)+2:]
		name := strings.SplitN(rel, "/", 2)[0]
		if o, ok := obs[name]; !ok || o.state == "stopped" {
			out = append(out, fmt.Sprintf("cgroup %s of a container that is %s", cg, chStateOf(obs, name)))
		}
	}
	for _, p := range e.ProcsInCgroups() {
		for _, cg := range p.cgroups {
			_, path, _ := strings.Cut(cg, ":")
			i := strings.Index(path, "/"+e.CgroupRoot+"/")
			if i < 0 {
				continue
			}
			name := strings.SplitN(path[i+len(e.CgroupRoot)+2:], "/", 2)[0]
			if o, ok := obs[name]; !ok || (o.state != "running" && o.state != "paused") {
				out = append(out, fmt.Sprintf("process %d %q in %s of a container that is %s [%s]", p.pid, p.cmdline, path, chStateOf(obs, name), rcProcInfo(p.pid)))
			}
			break
		}
	}
	return out
}

func chStateOf(obs map[string]chObserved, name string) string {
	if o, ok := obs[name]; ok {
		return o.state
	}
	return "absent"
}

// rcProcInfo describes what pid is doing, for failure messages.
func rcProcInfo(pid int) string {
	var parts []string
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid)); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "State:") || strings.HasPrefix(l, "PPid:") || strings.HasPrefix(l, "SigBlk:") {
				parts = append(parts, strings.Join(strings.Fields(l), " "))
			}
		}
	}
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/wchan", pid)); err == nil {
		parts = append(parts, "wchan "+string(b))
	}
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stack", pid)); err == nil {
		parts = append(parts, "stack "+strings.Join(strings.Fields(string(b)), " "))
	}
	return strings.Join(parts, "; ")
}

// opsOn lists the client's recent operations on name.
func (c *chClient) opsOn(name string) string {
	var out []string
	for _, h := range c.history {
		if strings.Contains(h, " "+name+":") {
			out = append(out, h)
		}
	}
	return strings.Join(out, "; ")
}
