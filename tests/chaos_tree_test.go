package tests

import (
	"context"
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

	"github.com/porto-dev/porto/api"
	"github.com/porto-dev/porto/api/client"
	"github.com/porto-dev/porto/isolation/supervise"
)

// TestChaosKillTree is the chaos test over trees: clients create, start,
// stop, pause, resume, kill and destroy containers up to three levels deep,
// with meta parents, commands that end and commands that do not, while
// the worker (and one round in ten the master) is killed at random
// moments. The cascades of a tree (an implicit parent start, a stop or a
// death that takes the subtree, a destroy of a whole subtree) make an exact
// model impractical, so after every restart it checks invariants instead:
//
//   - no container is lost: every one a client created and never tried
//     to destroy (itself or through an ancestor) is listed;
//   - no container is listed twice, and none without its parent;
//   - one readable state file per listed container, and nothing else;
//   - a child is stopped when its parent is stopped, and it runs only
//     under a running, meta or paused parent;
//   - a paused container is frozen, and a running or meta one is not;
//   - cgroups exist only for started containers, and processes live only
//     in running, meta or paused ones. One known gap is logged, not
//     failed: a stopped container under a paused ancestor may keep its
//     cgroups with a frozen, already SIGKILLed stage process until the
//     ancestor is resumed.
//
// PORTO_CHAOS_TREE_ROUNDS sets the number of rounds (default 50).
// PORTO_CHAOS_SEED replays a run.
func TestChaosKillTree(t *testing.T) {
	// With traffic control: classes survive the crashes with their
	// containers, and none is left at the end.
	e := NewEnvNet(t, nil)
	conn := e.rcBus(t)
	if err := e.StopPortod(); err != nil {
		t.Fatal(err)
	}
	resetEnv := supervise.RestartResetEnv + "=0s"
	e.rcStartPortodEnv(t, conn, resetEnv)

	rounds := envInt("PORTO_CHAOS_TREE_ROUNDS", 50)
	const nclients = 3
	seed := uint64(time.Now().UnixNano())
	if s, err := strconv.ParseUint(os.Getenv("PORTO_CHAOS_SEED"), 10, 64); err == nil {
		seed = s
	}
	t.Logf("PORTO_CHAOS_SEED=%d PORTO_CHAOS_TREE_ROUNDS=%d", seed, rounds)
	rng := rand.New(rand.NewPCG(seed, 7))

	gate := newChGate()
	gate.park = true
	clients := make([]*ctClient, nclients)
	var wg sync.WaitGroup
	for i := range clients {
		c := &ctClient{
			id:    i,
			cl:    e.rcClient(t),
			rng:   rand.New(rand.NewPCG(seed, uint64(i)+100)),
			known: map[string]bool{},
			must:  map[string]bool{},
		}
		clients[i] = c
		wg.Add(1)
		go func() { defer wg.Done(); c.run(gate) }()
	}
	gate.parkAll(nclients)
	obsCl := e.rcClient(t)

	t0 := time.Now()
	for round := 1; round <= rounds && !t.Failed(); round++ {
		worker := rcOwnerPid(conn)
		master := e.rcMasterPid()
		gate.release(false)
		time.Sleep(time.Duration(rng.IntN(400)) * time.Millisecond)
		if rng.IntN(10) == 0 {
			t.Logf("round %d: SIGKILL of the master and the worker", round)
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
			syscall.Kill(worker, syscall.SIGKILL)
			rcWaitGone(t, worker, 5*time.Second)
			rcWaitNewWorker(t, conn, obsCl, worker, 20*time.Second)
		}
		gate.parkAll(nclients)
		ctVerify(t, e, round, clients, obsCl)
	}
	gate.parkAll(nclients)
	gate.release(true)
	wg.Wait()
	ops, downs, refused := 0, 0, 0
	for _, c := range clients {
		ops += c.ops
		downs += c.downs
		refused += c.refused
	}
	t.Logf("%d rounds in %v: %d operations, %d cut short by a kill, %d refused by portod (expected: the clients do not track states)",
		rounds, time.Since(t0).Round(time.Millisecond), ops, downs, refused)
	for _, c := range clients {
		for _, u := range c.unknown {
			t.Logf("client %d: an Unknown error: %s", c.id, u)
		}
	}
	// The env's teardown destroys everything and checks for leaks.
}

// ctClient drives one client's trees: names "tN-k", children "tN-k/a", …
type ctClient struct {
	id    int
	cl    *client.Client
	rng   *rand.Rand
	seq   int
	known map[string]bool // created (or maybe created) and not surely gone
	must  map[string]bool // surely created, never the target of a destroy

	ops, downs, refused int
	unknown             []string
}

func (c *ctClient) run(g *chGate) {
	for g.wait(false) {
		if !c.step() {
			if !g.wait(true) {
				return
			}
		}
	}
}

// forget drops name and its subtree (a destroy was tried on it).
func (c *ctClient) forget(name string) {
	for n := range c.known {
		if n == name || strings.HasPrefix(n, name+"/") {
			delete(c.must, n)
		}
	}
}

func (c *ctClient) step() bool {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	names := make([]string, 0, len(c.known))
	for n := range c.known {
		names = append(names, n)
	}
	slices.Sort(names)
	if len(names) < 10 && (len(names) == 0 || c.rng.IntN(4) == 0) {
		c.seq++
		name := fmt.Sprintf("t%d-%d", c.id, c.seq)
		if len(names) > 0 && c.rng.IntN(2) == 0 {
			if p := names[c.rng.IntN(len(names))]; strings.Count(p, "/") < 2 {
				name = p + "/" + strconv.Itoa(c.seq)
			}
		}
		err := c.cl.Create(ctx, name)
		return c.result("create", name, err, func() {
			c.known[name] = true
			c.must[name] = true
		}, func() { c.known[name] = true })
	}
	name := names[c.rng.IntN(len(names))]
	var op string
	var err error
	switch r := c.rng.IntN(20); {
	case r < 4:
		op = "set"
		cmd := []string{"", "sleep 1000", "sleep 1000", "true"}[c.rng.IntN(4)]
		err = c.cl.SetProperty(ctx, name, "command", cmd)
	case r < 9:
		op = "start"
		err = c.cl.Start(ctx, name)
	case r < 12:
		op = "stop"
		err = c.cl.Stop(ctx, name, time.Second)
	case r < 14:
		op = "pause"
		err = c.cl.Pause(ctx, name)
	case r < 16:
		op = "resume"
		err = c.cl.Resume(ctx, name)
	case r < 17:
		op = "kill"
		err = c.cl.Kill(ctx, name, int(syscall.SIGKILL))
	default:
		op = "destroy"
		c.forget(name)
		err = c.cl.Destroy(ctx, name)
		if err == nil {
			for n := range c.known {
				if n == name || strings.HasPrefix(n, name+"/") {
					delete(c.known, n)
				}
			}
		}
	}
	return c.result(op, name, err, func() {}, func() {})
}

// result counts one operation; it returns false when the daemon died under
// it (the client must park).
func (c *ctClient) result(op, name string, err error, ok, maybe func()) bool {
	c.ops++
	switch {
	case err == nil:
		ok()
		return true
	case chDown(err):
		c.downs++
		maybe()
		return false
	}
	c.refused++
	if ae, isAPI := err.(*api.Error); isAPI && ae.Code == api.Unknown && len(c.unknown) < 5 {
		c.unknown = append(c.unknown, fmt.Sprintf("%s %s: %v", op, name, err))
	}
	if ae, isAPI := err.(*api.Error); isAPI && ae.Code == api.ContainerDoesNotExist && c.must[name] {
		c.unknown = append(c.unknown, fmt.Sprintf("LOST? %s %s: %v", op, name, err))
	}
	return true
}

func ctVerify(t *testing.T, e *Env, round int, clients []*ctClient, cl *client.Client) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	names, err := cl.List(ctx)
	if err != nil {
		t.Fatalf("round %d: List: %v", round, err)
	}
	names = slices.DeleteFunc(names, func(n string) bool { return n == "/" })
	state := map[string]string{}
	for _, n := range names {
		if _, dup := state[n]; dup {
			t.Errorf("round %d: %s listed twice", round, n)
		}
		state[n] = ""
	}
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
			state[r.Container] = r.Value
		}
	}
	for _, c := range clients {
		for n := range c.must {
			if _, ok := state[n]; !ok {
				t.Errorf("round %d: %s lost: created by client %d and never destroyed", round, n, c.id)
				delete(c.must, n)
			}
		}
		// Forget what is gone (a create cut short that did not happen).
		for n := range c.known {
			if _, ok := state[n]; !ok {
				delete(c.known, n)
			}
		}
		for _, u := range c.unknown {
			if strings.HasPrefix(u, "LOST?") {
				t.Errorf("round %d: client %d: %s", round, c.id, u)
			}
		}
		c.unknown = slices.DeleteFunc(c.unknown, func(u string) bool { return strings.HasPrefix(u, "LOST?") })
	}
	live := func(s string) bool { return s == "running" || s == "meta" || s == "paused" }
	for n, s := range state {
		p := api.ParentName(n)
		if p == api.RootName {
			continue
		}
		ps, ok := state[p]
		switch {
		case !ok:
			t.Errorf("round %d: %s listed without its parent %s", round, n, p)
		case ps == "stopped" && s != "stopped":
			t.Errorf("round %d: %s is %s under a stopped parent", round, n, s)
		case live(s) && !live(ps):
			t.Errorf("round %d: %s is %s under a %s parent", round, n, s, ps)
		}
	}

	// Freezer, cgroups, processes; cleanups of starts cut short run in the
	// background, so allow them a moment.
	deadline := time.Now().Add(8 * time.Second)
	knownGaps := map[string]bool{}
	for {
		var problems []string
		for n, s := range state {
			dir := filepath.Join("/sys/fs/cgroup/freezer", e.CgroupRoot, n)
			b, err := os.ReadFile(dir + "/freezer.state")
			fs := strings.TrimSpace(string(b))
			switch {
			case s == "paused" && fs != "FROZEN":
				problems = append(problems, fmt.Sprintf("%s is paused but its freezer is %q (%v)", n, fs, err))
			case (s == "running" || s == "meta") && err == nil && fs != "THAWED":
				problems = append(problems, fmt.Sprintf("%s is %s but its freezer is %q", n, s, fs))
			case s == "running" && err != nil:
				problems = append(problems, fmt.Sprintf("%s is running without a freezer cgroup: %v", n, err))
			}
		}
		for _, cg := range e.Cgroups() {
			i := strings.Index(cg, "/"+e.CgroupRoot+"/")
			n := cg[i+len(e.CgroupRoot)+2:]
			if s, ok := state[n]; !ok || s == "stopped" {
				if ok && ctPausedAncestor(state, n) {
					// Known gap: a stage the master launched for a worker
					// that had just died joins its cgroups and is frozen
					// there by the paused ancestor; SIGKILL waits for a
					// resume, so the cleanup cannot remove the cgroups yet.
					knownGaps[cg] = true
					continue
				}
				problems = append(problems, fmt.Sprintf("cgroup %s of a container that is %q (ancestors: %s)", cg, s, ctAncestors(state, n)))
			}
		}
		for _, p := range e.ProcsInCgroups() {
			for _, cg := range p.cgroups {
				_, path, _ := strings.Cut(cg, ":")
				i := strings.Index(path, "/"+e.CgroupRoot+"/")
				if i < 0 {
					continue
				}
				n := path[i+len(e.CgroupRoot)+2:]
				if s := state[n]; !live(s) && !(s == "stopped" && ctPausedAncestor(state, n)) {
					problems = append(problems, fmt.Sprintf("process %d %q in %s of a container that is %q [%s]", p.pid, p.cmdline, path, s, rcProcInfo(p.pid)))
				}
				break
			}
		}
		if len(problems) == 0 {
			for cg := range knownGaps {
				t.Logf("round %d: known gap: cgroup %s of a stopped container under a paused ancestor", round, cg)
			}
			break
		}
		if time.Now().After(deadline) {
			for _, p := range problems {
				t.Errorf("round %d: %s", round, p)
			}
			break
		}
		clear(knownGaps)
		time.Sleep(50 * time.Millisecond)
		// Re-read the states: a death may have been processed meanwhile.
		if res, err := cl.Get(ctx, names, []string{"state"}); err == nil {
			for _, r := range res {
				if r.Err == nil {
					state[r.Container] = r.Value
				}
			}
		}
	}

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
		t.Fatalf("round %d: portod logged an unreadable container state", round)
	}
}

// ctAncestors describes the states of name's ancestors, for messages.
func ctAncestors(state map[string]string, name string) string {
	var out []string
	for p := api.ParentName(name); p != api.RootName; p = api.ParentName(p) {
		out = append(out, p+"="+state[p])
	}
	return strings.Join(out, " ")
}

// ctPausedAncestor reports whether an ancestor of name is paused.
func ctPausedAncestor(state map[string]string, name string) bool {
	for p := api.ParentName(name); p != api.RootName; p = api.ParentName(p) {
		if state[p] == "paused" {
			return true
		}
	}
	return false
}
