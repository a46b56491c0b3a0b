package units

import (
	"errors"
	"fmt"
	"slices"
	"syscall"
	"testing"

	"github.com/porto-dev/porto/units/netsched"
)

// fakeTC keeps classes per device with HTB's rules for parents and
// children.
type fakeTC struct {
	links   []netsched.Link
	setup   []int
	classes map[int]map[uint16]netsched.ClassInfo
	calls   int
	gone    map[int]bool // devices that answer ENODEV
}

func newFakeTC(links ...netsched.Link) *fakeTC {
	return &fakeTC{links: links, classes: map[int]map[uint16]netsched.ClassInfo{}}
}

func (f *fakeTC) Links() ([]netsched.Link, error) { return f.links, nil }
func (f *fakeTC) Setup(i int) error {
	f.setup = append(f.setup, i)
	if f.classes[i] == nil {
		f.classes[i] = map[uint16]netsched.ClassInfo{
			netsched.RootMinor:    {},
			netsched.DefaultMinor: {Parent: netsched.RootMinor, Leaf: true},
		}
	}
	return nil
}
func (f *fakeTC) SetClass(i int, c netsched.Class) error {
	if f.gone[i] {
		return fmt.Errorf("netsched: set class dev %d: %w", i, syscall.ENODEV)
	}
	cl := f.classes[i]
	if _, ok := cl[c.Parent]; !ok {
		return errors.New("ENOENT")
	}
	p := cl[c.Parent]
	p.Leaf = false
	cl[c.Parent] = p
	cl[c.Minor] = netsched.ClassInfo{Parent: c.Parent, Leaf: true, Rate: c.Rate, Ceil: c.Ceil, Prio: c.Prio}
	return nil
}
func (f *fakeTC) DeleteClass(i int, m uint16) error {
	cl := f.classes[i]
	for _, c := range cl {
		if c.Parent == m {
			return errors.New("EBUSY")
		}
	}
	delete(cl, m)
	return nil
}
func (f *fakeTC) Classes(i int) (map[uint16]netsched.ClassInfo, error) {
	if f.gone[i] {
		return nil, fmt.Errorf("netsched: classes dev %d: %w", i, syscall.ENODEV)
	}
	f.calls++
	out := map[uint16]netsched.ClassInfo{}
	for k, v := range f.classes[i] {
		out[k] = v
	}
	return out, nil
}

func TestPickDevices(t *testing.T) {
	links := []netsched.Link{
		{Index: 1, Name: "lo", Up: true, Loopback: true},
		{Index: 2, Name: "eth0", Up: true},
		{Index: 3, Name: "ifb0"},
		{Index: 4, Name: "em1", Up: true},
		{Index: 5, Name: "eth1"},
	}
	names := func(ls []netsched.Link) []string {
		var out []string
		for _, l := range ls {
			out = append(out, l.Name)
		}
		return out
	}
	if got := names(pickDevices(links, nil)); !slices.Equal(got, []string{"em1", "eth0"}) {
		t.Errorf("default devices %v, want the up non-loopback ones", got)
	}
	if got := names(pickDevices(links, []string{"eth*"})); !slices.Equal(got, []string{"eth0", "eth1"}) {
		t.Errorf("eth* picked %v", got)
	}
	if got := names(pickDevices(links, []string{"nope"})); len(got) != 0 {
		t.Errorf("no match picked %v", got)
	}
}

func TestNetworkClasses(t *testing.T) {
	tc := newFakeTC(netsched.Link{Index: 2, Name: "eth0", Up: true}, netsched.Link{Index: 4, Name: "em1", Up: true})
	n, err := NewNetwork(tc, NetworkOptions{Log: quiet})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(tc.setup, []int{4, 2}) || !slices.Equal(n.Devices(), []string{"em1", "eth0"}) {
		t.Fatalf("set up %v, devices %v", tc.setup, n.Devices())
	}
	shape := NetShape{
		Guarantee: map[string]uint64{"em1": 1000},
		Limit:     map[string]uint64{"default": 5000, "eth0": 7000},
		Priority:  map[string]uint32{"default": 6},
	}
	if err := n.SetClass(0x10, netsched.RootMinor, shape); err != nil {
		t.Fatal(err)
	}
	if err := n.SetClass(0x12, 0x10, NetShape{}); err != nil {
		t.Fatal(err)
	}
	em1, eth0 := tc.classes[4], tc.classes[2]
	if c := em1[0x10]; c.Rate != 1000 || c.Ceil != 5000 || c.Prio != 6 || c.Parent != netsched.RootMinor {
		t.Errorf("em1 1:10 = %+v", c)
	}
	if c := eth0[0x10]; c.Rate != 0 || c.Ceil != 7000 || c.Prio != 6 {
		t.Errorf("eth0 1:10 = %+v", c)
	}
	if c := em1[0x11]; c.Parent != 0x10 || c.Rate != 1000 || c.Ceil != 0 || c.Prio != 6 {
		t.Errorf("em1 leaf 1:11 = %+v", c)
	}
	if c := em1[0x12]; c.Parent != 0x10 || c.Prio != 3 {
		t.Errorf("em1 child 1:12 = %+v (default prio 3)", c)
	}
	// Cached within statsTTL; a change invalidates.
	calls := tc.calls
	n.Classes()
	n.Classes()
	if tc.calls != calls+2 {
		t.Errorf("%d dumps for two reads of two devices", tc.calls-calls)
	}
	if err := n.DeleteClass(0x12); err != nil {
		t.Fatal(err)
	}
	// Prune: 1:10 is kept, a stray 1:40 with a child 1:41 goes (child
	// first), porto's own 1:1 and 1:2 stay.
	tc.SetClass(4, netsched.Class{Minor: 0x40, Parent: netsched.RootMinor})
	tc.SetClass(4, netsched.Class{Minor: 0x41, Parent: 0x40})
	if err := n.Prune(func(m uint16) bool { return m&^1 == 0x10 }); err != nil {
		t.Fatal(err)
	}
	var left []uint16
	for m := range tc.classes[4] {
		left = append(left, m)
	}
	slices.Sort(left)
	if !slices.Equal(left, []uint16{1, 2, 0x10, 0x11}) {
		t.Errorf("classes after prune: %x", left)
	}
	tc.SetClass(4, netsched.Class{Minor: 0x14, Parent: 0x10})
	if err := n.DeleteClass(0x10); err == nil {
		t.Errorf("deleting a class with a child container's class succeeded")
	}
}

func TestNetParentLevel(t *testing.T) {
	for _, c := range []struct{ level, want int }{{1, 0}, {2, 1}, {6, 5}, {7, 5}, {12, 5}} {
		if got := NetParentLevel(c.level); got != c.want {
			t.Errorf("NetParentLevel(%d) = %d, want %d", c.level, got, c.want)
		}
	}
}

// A device that vanishes (ENODEV) is dropped, not an error of every later
// start and read.
func TestNetworkDeviceGone(t *testing.T) {
	tc := newFakeTC(netsched.Link{Index: 2, Name: "eth0", Up: true}, netsched.Link{Index: 4, Name: "em1", Up: true})
	n, err := NewNetwork(tc, NetworkOptions{Log: quiet})
	if err != nil {
		t.Fatal(err)
	}
	tc.gone = map[int]bool{4: true}
	if err := n.SetClass(0x10, netsched.RootMinor, NetShape{}); err != nil {
		t.Fatalf("SetClass with a vanished device: %v", err)
	}
	if !slices.Equal(n.Devices(), []string{"eth0"}) {
		t.Errorf("devices %v after em1 vanished", n.Devices())
	}
	cl, err := n.Classes()
	if err != nil || len(cl) != 1 || cl["eth0"][0x11].Parent != 0x10 {
		t.Errorf("classes %v, %v", cl, err)
	}
}
