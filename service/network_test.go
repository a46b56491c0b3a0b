package service

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/porto-dev/porto/api"
	"github.com/porto-dev/porto/units"
	"github.com/porto-dev/porto/units/netsched"
)

// fakeNet is a Network over one device "em1" that keeps classes in memory,
// with HTB's rules: a parent must exist, a class with children cannot be
// deleted. Each class counts bytes = 100*minor so sums can be checked.
type fakeNet struct {
	mu      sync.Mutex
	classes map[uint16]units.NetClass
	shapes  map[uint16]units.NetShape
	fail    error
}

func newFakeNet() *fakeNet {
	return &fakeNet{classes: map[uint16]units.NetClass{
		netsched.RootMinor:    {},
		netsched.DefaultMinor: {Parent: netsched.RootMinor},
	}, shapes: map[uint16]units.NetShape{}}
}

func (f *fakeNet) Devices() []string { return []string{"em1"} }

func (f *fakeNet) SetClass(id, parent uint16, s units.NetShape) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		return f.fail
	}
	if _, ok := f.classes[parent]; !ok {
		return errors.New("no parent class")
	}
	f.classes[id] = units.NetClass{Parent: parent, Stats: units.NetStats{Bytes: 100 * uint64(id), Drops: 1}}
	f.classes[id+1] = units.NetClass{Parent: id, Leaf: true, Stats: units.NetStats{Bytes: 100 * uint64(id+1), Drops: 1}}
	f.shapes[id] = s
	return nil
}

func (f *fakeNet) DeleteClass(id uint16) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for m, c := range f.classes {
		if (c.Parent == id && m != id+1) || c.Parent == id+1 {
			return errors.New("class has children")
		}
	}
	delete(f.classes, id+1)
	delete(f.classes, id)
	return nil
}

func (f *fakeNet) Classes() (map[string]map[uint16]units.NetClass, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	cp := map[uint16]units.NetClass{}
	for k, v := range f.classes {
		cp[k] = v
	}
	return map[string]map[uint16]units.NetClass{"em1": cp}, nil
}

func (f *fakeNet) Prune(keep func(uint16) bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for m := range f.classes {
		if m >= netsched.FirstMinor && !keep(m) {
			delete(f.classes, m)
		}
	}
	return nil
}

func (f *fakeNet) has(id uint16) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, ok := f.classes[id]
	return ok
}

func newNetEnv(t *testing.T) (*env, *fakeNet) {
	t.Helper()
	e := newEnv(t)
	n := newFakeNet()
	e.net = n
	e.m.Close()
	e.m = e.open()
	return e, n
}

func TestNetOffIsNotSupported(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.run(root, "n", "sleep 1000")
	for _, k := range []string{"net_bytes", "net_packets", "net_drops", "net_overlimits", "net_class_id"} {
		_, err := e.m.Get(ctx, root, "n", k)
		if api.CodeOf(err) != api.NotSupported || !strings.Contains(err.Error(), "network = false") {
			t.Errorf("get %s: %v, want NotSupported with the reason", k, err)
		}
	}
	for _, k := range []string{"net_limit", "net_guarantee", "net_priority"} {
		e.must(e.m.Create(ctx, root, "s"+k))
		if err := e.m.Set(ctx, root, "s"+k, k, "eth0: 1"); api.CodeOf(err) != api.NotSupported {
			t.Errorf("set %s: %v, want NotSupported", k, err)
		}
	}
}

func TestNetClassesFollowTheTree(t *testing.T) {
	e, n := newNetEnv(t)
	ctx := context.Background()
	e.must(e.m.Create(ctx, root, "a"))
	e.must(e.m.Set(ctx, root, "a", "net_limit", "em1: 1M; default: 10M"))
	e.must(e.m.Set(ctx, root, "a", "net_priority", "5"))
	e.run(root, "a/b", "sleep 1000")
	ida := e.m.byName["a"].rec.NetClass
	idb := e.m.byName["a/b"].rec.NetClass
	if ida < netsched.FirstMinor || idb < netsched.FirstMinor || ida == idb || ida%2 != 0 || idb%2 != 0 {
		t.Fatalf("class ids a=%#x b=%#x", ida, idb)
	}
	n.mu.Lock()
	pa, pb, sa := n.classes[ida].Parent, n.classes[idb].Parent, n.shapes[ida]
	n.mu.Unlock()
	if pa != netsched.RootMinor || pb != ida {
		t.Errorf("parents: a under %#x, b under %#x; want 1:1 and a's class", pa, pb)
	}
	if sa.Limit["em1"] != 1<<20 || sa.Limit["default"] != 10<<20 || sa.Priority["default"] != 5 {
		t.Errorf("a's shape %+v", sa)
	}
	if got := e.get("a", "net_limit"); got != "default: 10485760; em1: 1048576" {
		t.Errorf("net_limit reads %q", got)
	}
	if got, want := e.cg.classid["a/b"], uint32(1<<16|uint32(idb+1)); got != want {
		t.Errorf("a/b's net_cls classid %#x, want %#x", got, want)
	}
	// bytes: the container's own class (HTB counts its subtree there);
	// drops: summed over the subtree (a, a's leaf, b, b's leaf).
	if got, want := e.get("a", "net_bytes"), "em1: "+strconv.Itoa(100*int(ida)); got != want {
		t.Errorf("net_bytes %q, want %q", got, want)
	}
	if got := e.get("a", "net_drops"); got != "em1: 4" {
		t.Errorf("net_drops %q, want em1: 4", got)
	}
	if got := e.get("a/b", "net_class_id"); got != fmt.Sprintf("1:%x", idb+1) {
		t.Errorf("net_class_id %q", got)
	}
	e.must(e.m.Stop(ctx, root, "a", -1))
	if n.has(ida) || n.has(idb) || n.has(idb+1) {
		t.Errorf("classes left after stop")
	}
	e.must(e.m.Start(ctx, root, "a/b"))
	if e.m.byName["a/b"].rec.NetClass != idb {
		t.Errorf("a/b's class id changed across a restart")
	}
	e.must(e.m.Destroy(ctx, root, "a"))
	if n.has(ida) || n.has(idb) {
		t.Errorf("classes left after destroy")
	}
	e.run(root, "c", "sleep 1000")
	if _, used := e.m.netIDs.used[ida]; used && e.m.netIDs.used[ida].name != "c" {
		t.Errorf("a's id still allocated after destroy")
	}
}

func TestNetMapValidation(t *testing.T) {
	e, _ := newNetEnv(t)
	ctx := context.Background()
	e.must(e.m.Create(ctx, root, "a"))
	for _, tc := range []struct{ key, val string }{
		{"net_limit", "em1 10"}, {"net_limit", "em1: x"}, {"net_limit", "a/b: 1"},
		{"net_limit", "em1: 1; em1: 2"}, {"net_priority", "8"}, {"net_guarantee", "averyveryverylongname: 1"},
	} {
		if err := e.m.Set(ctx, root, "a", tc.key, tc.val); api.CodeOf(err) != api.InvalidValue {
			t.Errorf("set %s %q: %v, want InvalidValue", tc.key, tc.val, err)
		}
	}
	if got := e.get("a", "net_priority"); got != "default: 3" {
		t.Errorf("default net_priority %q", got)
	}
}

func TestNetStartFailsOnlyWhenShapingAsked(t *testing.T) {
	e, n := newNetEnv(t)
	ctx := context.Background()
	n.fail = errors.New("device gone")
	e.run(root, "plain", "sleep 1000") // accounting lost, start goes on
	e.must(e.m.Create(ctx, root, "shaped"))
	e.must(e.m.Set(ctx, root, "shaped", "command", "sleep 1000"))
	e.must(e.m.Set(ctx, root, "shaped", "net_limit", "default: 1M"))
	if err := e.m.Start(ctx, root, "shaped"); api.CodeOf(err) != api.ResourceNotAvailable {
		t.Fatalf("start with an unusable net_limit: %v, want ResourceNotAvailable", err)
	}
	if e.cg.groups["shaped"] {
		t.Errorf("cgroups left after the failed start")
	}
	e.must(e.m.Destroy(ctx, root, "shaped"))
	e.must(e.m.Destroy(ctx, root, "plain"))
}

func TestNetRestorePrunesAndRecreates(t *testing.T) {
	e, n := newNetEnv(t)
	ctx := context.Background()
	e.run(root, "a", "sleep 1000")
	ida := e.m.byName["a"].rec.NetClass
	// A stray class (a crashed start) and a class of "a" lost.
	n.mu.Lock()
	n.classes[0x400] = units.NetClass{Parent: netsched.RootMinor}
	delete(n.classes, ida+1)
	delete(n.classes, ida)
	n.mu.Unlock()
	e.m.Close()
	e.m = e.open()
	if n.has(0x400) {
		t.Errorf("stray class not pruned")
	}
	if !n.has(ida) || !n.has(ida+1) {
		t.Errorf("a's classes not put back")
	}
	if _, err := e.m.Get(ctx, root, "a", "net_packets"); err != nil {
		t.Errorf("net_packets after restore: %v", err)
	}
	e.must(e.m.Destroy(ctx, root, "a"))
}

// A container started while traffic control was off gets its classes and
// classid when a porto with it restores the container.
func TestNetRestoreGivesClassesToOldContainers(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.run(root, "a", "sleep 1000")
	if id := e.m.byName["a"].rec.NetClass; id != 0 {
		t.Fatalf("class id %#x without traffic control", id)
	}
	n := newFakeNet()
	e.net = n
	e.m.Close()
	e.m = e.open()
	id := e.m.byName["a"].rec.NetClass
	if id < netsched.FirstMinor || !n.has(id) || !n.has(id+1) {
		t.Fatalf("a has class id %#x after restore, classes there: %v %v", id, n.has(id), n.has(id+1))
	}
	if got := e.cg.classid["a"]; got != netsched.Major<<16|uint32(id+1) {
		t.Errorf("a's cgroup classid %#x", got)
	}
	if _, err := e.m.Get(ctx, root, "a", "net_bytes"); err != nil {
		t.Errorf("net_bytes after restore: %v", err)
	}
	e.must(e.m.Destroy(ctx, root, "a"))
}

func TestNetMapUnknownDevice(t *testing.T) {
	e, _ := newNetEnv(t)
	ctx := context.Background()
	e.must(e.m.Create(ctx, root, "a"))
	err := e.m.Set(ctx, root, "a", "net_limit", "eth9: 1M")
	if api.CodeOf(err) != api.InvalidValue || !strings.Contains(err.Error(), "em1") {
		t.Errorf("net_limit on a device porto does not manage: %v", err)
	}
	e.must(e.m.Set(ctx, root, "a", "net_limit", "em1: 1M; default: 2M"))
}
