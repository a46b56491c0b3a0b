package tests

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/porto-dev/porto/api"
	"github.com/porto-dev/porto/api/client"
)

// Issue 4, acceptance 3: 8 clients creating, starting, stopping and
// destroying 500 containers in random trees at once leave every container
// in a correct state and leak no process, cgroup or mount.
//
// Each client (its own D-Bus connection, api/client) owns its own trees and
// keeps a model of them, so every reply can be checked; the 8 clients run
// at once against one portod. Set PORTO_CONC_SEED to replay a run.

// ccNode is one container of a client's model.
type ccNode struct {
	name     string
	parent   *ccNode
	children []*ccNode
	depth    int    // 1 for a first-level container
	cmd      string // "" (meta), "true", "sleep 0.2" or "sleep 1000"
	isolate  bool
	started  bool // not stopped: running, meta or dead
}

// finite: the container's own command ends by itself.
func (n *ccNode) finite() bool { return n.cmd == "true" || n.cmd == "sleep 0.2" }

// mayDie: the container ends up dead once started (its command, or an
// ancestor's, ends).
func (n *ccNode) mayDie() bool {
	for a := n; a != nil; a = a.parent {
		if a.finite() {
			return true
		}
	}
	return false
}

// want is the state n must be in once every finite command has ended.
func (n *ccNode) want() api.State {
	switch {
	case !n.started:
		return api.StateStopped
	case n.mayDie():
		return api.StateDead
	case n.cmd == "":
		return api.StateMeta
	}
	return api.StateRunning
}

func (n *ccNode) subtree(f func(*ccNode)) {
	f(n)
	for _, c := range n.children {
		c.subtree(f)
	}
}

// ccWorker is one client and its model.
type ccWorker struct {
	id    int
	c     *client.Client
	rng   *rand.Rand
	nodes []*ccNode
	seq   int
	errs  []string
	ops   map[string]int
}

func (w *ccWorker) fail(format string, args ...any) {
	w.errs = append(w.errs, fmt.Sprintf("client %d: ", w.id)+fmt.Sprintf(format, args...))
}

func (w *ccWorker) pick(ok func(*ccNode) bool) *ccNode {
	var cands []*ccNode
	for _, n := range w.nodes {
		if ok == nil || ok(n) {
			cands = append(cands, n)
		}
	}
	if len(cands) == 0 {
		return nil
	}
	return cands[w.rng.IntN(len(cands))]
}

var ccCommands = []string{"", "true", "sleep 0.2", "sleep 1000"}

func (w *ccWorker) create(ctx context.Context) {
	var parent *ccNode
	if w.rng.IntN(10) >= 3 {
		parent = w.pick(func(n *ccNode) bool { return n.depth < 3 })
	}
	w.seq++
	n := &ccNode{parent: parent, depth: 1, cmd: ccCommands[w.rng.IntN(len(ccCommands))], isolate: w.rng.IntN(2) == 0}
	n.name = fmt.Sprintf("cc%d-%d", w.id, w.seq)
	if parent != nil {
		n.name = parent.name + "/" + n.name
		n.depth = parent.depth + 1
	}
	if err := w.c.Create(ctx, n.name); err != nil {
		w.fail("create %s: %v", n.name, err)
		return
	}
	if n.cmd != "" {
		if err := w.c.SetProperty(ctx, n.name, "command", n.cmd); err != nil {
			w.fail("set %s command: %v", n.name, err)
		}
	}
	if err := w.c.SetProperty(ctx, n.name, "isolate", strconv.FormatBool(n.isolate)); err != nil {
		w.fail("set %s isolate: %v", n.name, err)
	}
	w.nodes = append(w.nodes, n)
	if parent != nil {
		parent.children = append(parent.children, n)
	}
	w.ops["create"]++
}

func (w *ccWorker) start(ctx context.Context) {
	n := w.pick(nil)
	if n == nil {
		return
	}
	err := w.c.Start(ctx, n.name)
	w.ops["start"]++
	switch {
	case n.started:
		// running, meta or dead: start is InvalidState.
		if api.CodeOf(err) != api.InvalidState {
			w.fail("start of started %s: want InvalidState, got %v", n.name, err)
		}
		return
	case err == nil:
		for a := n; a != nil; a = a.parent {
			a.started = true
		}
		return
	}
	// A start may fail only because an ancestor died: one already started
	// whose command (or an ancestor's) ended, or a stopped one this start
	// started first whose command ended before n's turn. Either way the
	// answer is InvalidState (the parent is dead).
	dying := n.parent != nil && n.parent.mayDie()
	if !dying || api.CodeOf(err) != api.InvalidState {
		w.fail("start %s: %v [%s]", n.name, err, w.describe(ctx, n))
	}
	w.ops["start failed (dead ancestor)"]++
	// Re-read what the failed start left (ancestors started before the
	// failure stay started).
	for a := n; a != nil; a = a.parent {
		st, err := w.c.GetProperty(ctx, a.name, "state")
		if err != nil {
			w.fail("get %s state: %v", a.name, err)
			continue
		}
		a.started = st != string(api.StateStopped)
	}
}

func (w *ccWorker) stop(ctx context.Context) {
	n := w.pick(nil)
	if n == nil {
		return
	}
	if err := w.c.Stop(ctx, n.name, -1); err != nil {
		w.fail("stop %s: %v", n.name, err)
	}
	n.subtree(func(d *ccNode) { d.started = false })
	w.ops["stop"]++
}

func (w *ccWorker) destroy(ctx context.Context) {
	n := w.pick(nil)
	if n == nil {
		return
	}
	if err := w.c.Destroy(ctx, n.name); err != nil {
		w.fail("destroy %s: %v", n.name, err)
	}
	w.forget(n)
	w.ops["destroy"]++
}

// describe lists n and its ancestors as the model and the daemon see them.
func (w *ccWorker) describe(ctx context.Context, n *ccNode) string {
	var parts []string
	for a := n; a != nil; a = a.parent {
		st, err := w.c.GetProperty(ctx, a.name, "state")
		if err != nil {
			st = err.Error()
		}
		parts = append(parts, fmt.Sprintf("%s: command %q isolate %v model-started %v state %s", a.name, a.cmd, a.isolate, a.started, st))
	}
	return strings.Join(parts, "; ")
}

// forget removes n and its subtree from the model.
func (w *ccWorker) forget(n *ccNode) {
	gone := map[*ccNode]bool{}
	n.subtree(func(d *ccNode) { gone[d] = true })
	w.nodes = slices.DeleteFunc(w.nodes, func(d *ccNode) bool { return gone[d] })
	if n.parent != nil {
		n.parent.children = slices.DeleteFunc(n.parent.children, func(d *ccNode) bool { return d == n })
	}
}

// check reads one container's state right away: stopped must be stopped,
// started must be running, meta or dead.
func (w *ccWorker) check(ctx context.Context) {
	n := w.pick(nil)
	if n == nil {
		return
	}
	st, err := w.c.GetProperty(ctx, n.name, "state")
	w.ops["get state"]++
	switch {
	case err != nil:
		w.fail("get %s state: %v", n.name, err)
	case !n.started && st != string(api.StateStopped):
		w.fail("%s is %s, want stopped", n.name, st)
	case n.started && st != string(api.StateRunning) && st != string(api.StateMeta) && st != string(api.StateDead):
		w.fail("%s is %s, want running, meta or dead", n.name, st)
	case n.started && st == string(api.StateMeta) && n.cmd != "":
		w.fail("%s (command %q) is meta", n.name, n.cmd)
	}
}

// run creates quota containers, mixing in the other operations.
func (w *ccWorker) run(ctx context.Context, quota int) {
	created := 0
	for created < quota && len(w.errs) < 50 {
		switch r := w.rng.IntN(100); {
		case r < 45:
			w.create(ctx)
			created++
		case r < 70:
			w.start(ctx)
		case r < 82:
			w.stop(ctx)
		case r < 90:
			w.destroy(ctx)
		default:
			w.check(ctx)
		}
	}
}

// mountTable is /proc/self/mountinfo without the ids: mount point, fs type
// and source of every mount.
func mountTable() map[string]bool {
	out := map[string]bool{}
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return out
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		i := slices.Index(fs, "-")
		if len(fs) > 4 && i > 0 && i+2 < len(fs) {
			out[fs[4]+" "+fs[i+1]+" "+fs[i+2]] = true
		}
	}
	return out
}

func TestConcurrencyRandomTrees(t *testing.T) {
	// With traffic control (in a network namespace of the test's own): a
	// class per container, made and deleted under the same churn.
	e := NewEnvNet(t, nil)
	e.CleanupContainers(t)
	mountsBefore := mountTable()
	ctx := context.Background()

	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("PORTO_CONC_SEED"); s != "" {
		seed, _ = strconv.ParseUint(s, 10, 64)
	}
	t.Logf("seed %d (PORTO_CONC_SEED=%d replays it)", seed, seed)

	const clients, total = 8, 500
	workers := make([]*ccWorker, clients)
	for i := range workers {
		workers[i] = &ccWorker{id: i, c: e.hClient(t), rng: rand.New(rand.NewPCG(seed, uint64(i))), ops: map[string]int{}}
	}
	start := time.Now()
	var wg sync.WaitGroup
	for i, w := range workers {
		quota := total / clients
		if i < total%clients {
			quota++
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.run(ctx, quota)
		}()
	}
	wg.Wait()
	ops := map[string]int{}
	for _, w := range workers {
		for k, v := range w.ops {
			ops[k] += v
		}
	}
	t.Logf("%d clients, %d containers created in %v: %v", clients, ops["create"], time.Since(start), ops)
	nerr := 0
	for _, w := range workers {
		for _, msg := range w.errs {
			if nerr++; nerr <= 30 {
				t.Error(msg)
			}
		}
	}
	if nerr > 30 {
		t.Errorf("... and %d more errors", nerr-30)
	}
	if !e.PortodAlive() {
		t.Fatalf("portod died\n%s", e.LogTail())
	}

	// Every finite command has ended by now (sleep 0.2).
	time.Sleep(time.Second)

	// The daemon's tree is exactly the models' union.
	byName := map[string]*ccNode{}
	var names []string
	for _, w := range workers {
		for _, n := range w.nodes {
			byName[n.name] = n
			names = append(names, n.name)
		}
	}
	slices.Sort(names)
	listed, err := workers[0].c.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	listed = slices.DeleteFunc(listed, func(s string) bool { return s == api.RootName })
	slices.Sort(listed)
	if !slices.Equal(listed, names) {
		for _, n := range listed {
			if byName[n] == nil {
				t.Errorf("listed but not in the model: %s", n)
			}
		}
		for _, n := range names {
			if !slices.Contains(listed, n) {
				t.Errorf("in the model but not listed: %s", n)
			}
		}
	}
	t.Logf("%d containers left before the final destroy", len(names))

	// Every container is in the state the operations imply.
	cells, err := workers[0].c.Get(ctx, names, []string{"state", "root_pid", "parent"})
	if err != nil {
		t.Fatal(err)
	}
	bad := 0
	got := map[string]map[string]string{}
	for _, cell := range cells {
		if got[cell.Container] == nil {
			got[cell.Container] = map[string]string{}
		}
		if cell.Err != nil {
			got[cell.Container][cell.Key] = "error " + cell.Err.Code.String()
		} else {
			got[cell.Container][cell.Key] = cell.Value
		}
	}
	for _, name := range names {
		n := byName[name]
		g := got[name]
		if st := g["state"]; st != string(n.want()) {
			if bad++; bad <= 30 {
				t.Errorf("%s (command %q, isolate %v) is %s, want %s", name, n.cmd, n.isolate, st, n.want())
			}
		}
		wantParent := "/"
		if n.parent != nil {
			wantParent = n.parent.name
		}
		if g["parent"] != wantParent && !(n.parent == nil && g["parent"] == "") {
			t.Errorf("parent of %s = %q, want %q", name, g["parent"], wantParent)
		}
		// Processes: a running container's root_pid is its sleep, in its
		// own freezer cgroup; stopped and dead ones have none.
		switch n.want() {
		case api.StateRunning:
			pid, _ := strconv.Atoi(g["root_pid"])
			p, ok := readProc(pid)
			if !ok || p.cmdline != n.cmd || p.state == "Z" {
				t.Errorf("%s: root_pid %q is not a live %q (%+v)", name, g["root_pid"], n.cmd, p)
			} else if cg := ContainerCgroups(pid)["freezer"]; cg != "/"+e.CgroupRoot+"/"+name {
				t.Errorf("%s: root_pid %d is in freezer cgroup %s", name, pid, cg)
			}
		case api.StateStopped, api.StateDead:
			if b, err := os.ReadFile(filepath.Join(e.cgroupDir("freezer", name), "cgroup.procs")); err == nil && strings.TrimSpace(string(b)) != "" {
				t.Errorf("%s is %s but its cgroup holds processes %q", name, n.want(), strings.Fields(string(b)))
			}
		}
	}
	if bad > 30 {
		t.Errorf("... %d containers in a wrong state in all", bad)
	}

	// Then the 8 clients race on the same small trees for a while.
	sharedRace(t, e, workers, seed)

	// Destroy everything, 8 clients at once, then nothing may be left.
	start = time.Now()
	for _, w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, n := range slices.Clone(w.nodes) {
				if n.parent == nil {
					if err := w.c.Destroy(ctx, n.name); err != nil {
						t.Errorf("destroy %s: %v", n.name, err)
					}
				}
			}
			if w.id == 0 {
				for _, n := range sharedTops {
					if err := w.c.Destroy(ctx, n); err != nil && api.CodeOf(err) != api.ContainerDoesNotExist {
						t.Errorf("destroy %s: %v", n, err)
					}
				}
			}
		}()
	}
	wg.Wait()
	t.Logf("destroyed in %v", time.Since(start))
	if left, err := workers[0].c.List(ctx); err != nil || len(slices.DeleteFunc(left, func(s string) bool { return s == api.RootName })) != 0 {
		t.Errorf("containers left after destroy: %q %v", left, err)
	}
	deadline := time.Now().Add(3 * time.Second)
	for {
		procs, cgs := e.ProcsInCgroups(), e.Cgroups()
		if len(procs) == 0 && len(cgs) == 0 {
			break
		}
		if time.Now().After(deadline) {
			for i, p := range procs {
				if i < 20 {
					t.Errorf("process left in porto's cgroups: pid %d %q %v", p.pid, p.cmdline, p.cgroups)
				}
			}
			for i, cg := range cgs {
				if i < 20 {
					t.Errorf("cgroup left: %s", cg)
				}
			}
			if len(procs)+len(cgs) > 40 {
				t.Errorf("%d processes and %d cgroups left in all", len(procs), len(cgs))
			}
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	for m := range mountTable() {
		if mountsBefore[m] {
			continue
		}
		if strings.Contains(m, e.Dir) || strings.Contains(m, e.CgroupRoot) || strings.Contains(m, "/sys/fs/cgroup") {
			t.Errorf("mount left: %s", m)
		} else {
			t.Logf("note: new mount on the host (another test's?): %s", m)
		}
	}
	if ents, err := os.ReadDir(e.Place); err == nil {
		for _, d := range ents {
			t.Errorf("left in place %s: %s", e.Place, d.Name())
		}
	}
}

// The shared trees: sh0..sh3, each with children a and b, each with x and y.
var sharedTops = []string{"sh0", "sh1", "sh2", "sh3"}

func sharedNames() []string {
	var out []string
	for _, top := range sharedTops {
		out = append(out, top)
		for _, c := range []string{"a", "b"} {
			out = append(out, top+"/"+c)
			for _, g := range []string{"x", "y"} {
				out = append(out, top+"/"+c+"/"+g)
			}
		}
	}
	return out
}

// sharedCommand is the command every client gives a shared container.
func sharedCommand(i int) string { return ccCommands[i%len(ccCommands)] }

// sharedRace runs the 8 clients for 3 s on the shared trees: random create
// (with command), start, stop, pause, resume, destroy, wait and get. The
// only acceptable failures are the ones the races explain
// (ContainerAlreadyExists, ContainerDoesNotExist, InvalidState). Then every
// container must be in a state consistent with its parent's, with no
// process where none may be.
func sharedRace(t *testing.T, e *Env, workers []*ccWorker, seed uint64) {
	t.Helper()
	ctx := context.Background()
	names := sharedNames()
	var mu sync.Mutex
	counts := map[string]int{}
	var errs []string
	var slow []string
	report := func(op, name string, err error, allowed ...api.Code) {
		key := op + " ok"
		if err != nil {
			key = op + " " + api.CodeOf(err).String()
		}
		mu.Lock()
		defer mu.Unlock()
		counts[key]++
		if err != nil && !slices.Contains(allowed, api.CodeOf(err)) && len(errs) < 30 {
			errs = append(errs, fmt.Sprintf("%s %s: %v", op, name, err))
		}
	}
	const (
		exists  = api.ContainerAlreadyExists
		missing = api.ContainerDoesNotExist
		state   = api.InvalidState
	)
	stopAt := time.Now().Add(3 * time.Second)
	var wg sync.WaitGroup
	for _, w := range workers {
		rng := rand.New(rand.NewPCG(seed^0x5eed, uint64(w.id)))
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(stopAt) {
				i := rng.IntN(len(names))
				n := names[i]
				r := rng.IntN(100)
				opStart := time.Now()
				switch {
				case r < 30:
					err := w.c.Create(ctx, n)
					report("create", n, err, exists, missing)
					if err == nil {
						if cmd := sharedCommand(i); cmd != "" {
							report("set", n, w.c.SetProperty(ctx, n, "command", cmd), missing, state)
						}
						report("set", n, w.c.SetProperty(ctx, n, "isolate", strconv.FormatBool(i%3 != 0)), missing, state)
					}
				case r < 55:
					report("start", n, w.c.Start(ctx, n), missing, state)
				case r < 70:
					report("stop", n, w.c.Stop(ctx, n, -1), missing, state)
				case r < 75:
					report("pause", n, w.c.Pause(ctx, n), missing, state)
				case r < 80:
					report("resume", n, w.c.Resume(ctx, n), missing, state)
				case r < 90:
					// Under a paused ancestor its tasks cannot die: InvalidState.
					report("destroy", n, w.c.Destroy(ctx, n), missing, state)
				case r < 95:
					_, err := w.c.Wait(ctx, []string{n}, 10*time.Millisecond)
					report("wait", n, err, missing)
				default:
					st, err := w.c.GetProperty(ctx, n, "state")
					report("get", n, err, missing)
					if err == nil && !slices.Contains([]string{"stopped", "running", "paused", "dead", "meta", "starting", "stopping"}, st) {
						report("get", n, fmt.Errorf("unknown state %q", st))
					}
				}
				if d := time.Since(opStart); d > 3*time.Second {
					mu.Lock()
					slow = append(slow, fmt.Sprintf("%s on %s took %v", sharedOp(r), n, d))
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	t.Logf("shared trees, 8 clients for 3 s: %v", counts)
	// No call may hang (3 s): stop and destroy end with SIGKILL quickly.
	for _, s := range slow {
		t.Errorf("slow call: %s", s)
	}
	for _, msg := range errs {
		t.Error(msg)
	}
	if !e.PortodAlive() {
		t.Fatalf("portod died\n%s", e.LogTail())
	}

	// Quiesce: thaw what is paused, let finite commands end.
	c := workers[0].c
	for _, n := range names {
		if st, err := c.GetProperty(ctx, n, "state"); err == nil && st == "paused" {
			if err := c.Resume(ctx, n); err != nil && api.CodeOf(err) != state {
				t.Errorf("resume %s: %v", n, err)
			}
		}
	}
	time.Sleep(time.Second)

	states := map[string]string{}
	pids := map[string]int{}
	for _, n := range names {
		st, err := c.GetProperty(ctx, n, "state")
		if api.CodeOf(err) == missing {
			continue
		}
		if err != nil {
			t.Errorf("get %s state: %v", n, err)
			continue
		}
		states[n] = st
		if p, err := c.GetProperty(ctx, n, "root_pid"); err == nil {
			pids[n] = atoi(p)
		}
	}
	t.Logf("shared trees after the race: %v", states)
	for n, st := range states {
		switch st {
		case "stopped", "running", "dead", "meta", "paused":
		default:
			t.Errorf("%s is %q after the race", n, st)
		}
		if i := strings.LastIndexByte(n, '/'); i > 0 {
			parent := n[:i]
			ps, ok := states[parent]
			switch {
			case !ok:
				t.Errorf("%s exists without its parent %s", n, parent)
			case ps == "stopped" && st != "stopped":
				t.Errorf("%s is %s under a stopped parent", n, st)
			case ps == "dead" && st != "dead" && st != "stopped":
				t.Errorf("%s is %s under a dead parent", n, st)
			case (st == "running" || st == "meta" || st == "paused") && ps != "running" && ps != "meta" && ps != "paused":
				t.Errorf("%s is %s under a %s parent", n, st, ps)
			}
		}
		i := slices.Index(names, n)
		cmd := sharedCommand(i)
		// The command is set right after create, but another client may
		// start a child (and so this one, as meta) in between; then the set
		// fails with InvalidState and the container rightly has no command.
		actual, _ := c.GetProperty(ctx, n, "command")
		switch {
		case st == "meta" && actual != "":
			t.Errorf("%s (command %q) is meta", n, actual)
		case st == "running" && cmd != "sleep 1000":
			t.Errorf("%s (command %q) still running 1 s after the race", n, cmd)
		case st == "running":
			if p, ok := readProc(pids[n]); !ok || p.cmdline != cmd || p.state == "Z" {
				t.Errorf("%s: root_pid %d is not a live %q", n, pids[n], cmd)
			}
		case st == "stopped" || st == "dead":
			if b, err := os.ReadFile(filepath.Join(e.cgroupDir("freezer", n), "cgroup.procs")); err == nil && strings.TrimSpace(string(b)) != "" {
				t.Errorf("%s is %s but its cgroup holds processes %q", n, st, strings.Fields(string(b)))
			}
		}
	}
}

// sharedOp names the operation sharedRace draws as r.
func sharedOp(r int) string {
	switch {
	case r < 30:
		return "create"
	case r < 55:
		return "start"
	case r < 70:
		return "stop"
	case r < 75:
		return "pause"
	case r < 80:
		return "resume"
	case r < 90:
		return "destroy"
	case r < 95:
		return "wait"
	}
	return "get"
}
