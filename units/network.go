package units

import (
	"errors"
	"fmt"
	"log/slog"
	"path"
	"slices"
	"sort"
	"sync"
	"syscall"
	"time"

	"github.com/porto-dev/porto/units/netsched"
)

// TC is the traffic control porto drives: *netsched.Sched, or a fake in
// unit tests.
type TC interface {
	Links() ([]netsched.Link, error)
	Setup(ifindex int) error
	SetClass(ifindex int, c netsched.Class) error
	DeleteClass(ifindex int, minor uint16) error
	Classes(ifindex int) (map[uint16]netsched.ClassInfo, error)
}

// NetworkOptions configure Network.
type NetworkOptions struct {
	// Devices are the names (or path.Match patterns) of the devices to
	// manage. Empty: every device that is up and not a loopback.
	Devices []string
	Log     *slog.Logger
}

// NetShape is a container's traffic shaping, each map by device name with
// "default" for the devices not named.
type NetShape struct {
	Guarantee map[string]uint64 // bytes/s; HTB rate
	Limit     map[string]uint64 // bytes/s; HTB ceil; 0 = unlimited
	Priority  map[string]uint32 // HTB prio 0-7
}

// NetStats are a traffic class's counters on one device.
type NetStats = netsched.Stats

// NetClass is one class of NetClasses: its parent and counters.
type NetClass = netsched.ClassInfo

// netDepth is the deepest container level whose class may hold child
// containers' classes: HTB trees are at most 8 classes deep (1:1, then a
// container class per level, then the container's own leaf).
const netDepth = 5

// NetParentLevel is the level (number of name components) of the
// ancestor whose class a container at level n hangs under; 0 is porto's
// root class 1:1. Containers deeper than HTB allows share the class of
// their ancestor at level netDepth.
func NetParentLevel(n int) int { return min(n-1, netDepth) }

// Network gives each container an HTB class per managed device: class
// 1:id, under its parent container's class (or 1:1), and the leaf 1:id+1
// for the container's own processes, whose net_cls classid it is. A
// class's counters include its descendants'; net_guarantee is the rate,
// net_limit the ceil, net_priority the prio of both.
type Network struct {
	tc  TC
	log *slog.Logger

	mu     sync.Mutex
	devs   []netsched.Link // managed, by name; a device that vanished is dropped
	cached map[string]map[uint16]netsched.ClassInfo
	at     time.Time
}

// statsTTL bounds how stale the counters may be: one dump per device
// serves every container read within it (portoctl top reads them all).
const statsTTL = 50 * time.Millisecond

// NewNetwork picks the devices and makes each one's root qdisc porto's
// HTB (an existing one is kept with its classes and counters). A device
// that cannot be set up is an error: porto would otherwise report
// counters that miss its traffic.
func NewNetwork(tc TC, opts NetworkOptions) (*Network, error) {
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	links, err := tc.Links()
	if err != nil {
		return nil, fmt.Errorf("list network devices: %w", err)
	}
	n := &Network{tc: tc, log: opts.Log, devs: pickDevices(links, opts.Devices)}
	for _, d := range n.devs {
		if err := tc.Setup(d.Index); err != nil {
			return nil, fmt.Errorf("set up traffic control on %s: %w", d.Name, err)
		}
	}
	names := n.Devices()
	opts.Log.Info("traffic control", "devices", names)
	return n, nil
}

// pickDevices: the links named by patterns, or every up non-loopback one.
func pickDevices(links []netsched.Link, patterns []string) []netsched.Link {
	var out []netsched.Link
	for _, l := range links {
		ok := false
		if len(patterns) == 0 {
			ok = l.Up && !l.Loopback
		}
		for _, p := range patterns {
			if m, _ := path.Match(p, l.Name); m {
				ok = true
			}
		}
		if ok {
			out = append(out, l)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Devices are the managed devices' names, sorted.
func (n *Network) Devices() []string {
	devs := n.devices()
	out := make([]string, len(devs))
	for i, d := range devs {
		out[i] = d.Name
	}
	return out
}

func (n *Network) devices() []netsched.Link {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.devs
}

// gone drops a device the kernel no longer has (ENODEV): its classes went
// with it, and every later operation would fail on it. It reports whether
// err was that.
func (n *Network) gone(d netsched.Link, err error) bool {
	if !errors.Is(err, syscall.ENODEV) {
		return false
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if i := slices.IndexFunc(n.devs, func(l netsched.Link) bool { return l.Index == d.Index }); i >= 0 {
		n.devs = slices.Delete(slices.Clone(n.devs), i, i+1)
		n.cached = nil
		n.log.Warn("a managed network device is gone; its traffic is no longer counted", "device", d.Name)
	}
	return true
}

func pick[T any](m map[string]T, dev string, def T) T {
	if v, ok := m[dev]; ok {
		return v
	}
	if v, ok := m["default"]; ok {
		return v
	}
	return def
}

// SetClass creates or changes container class id (and its leaf id+1)
// under parent (netsched.RootMinor for a first-level container) on every
// managed device.
func (n *Network) SetClass(id, parent uint16, s NetShape) error {
	var errs []error
	for _, d := range n.devices() {
		c := netsched.Class{
			Minor:  id,
			Parent: parent,
			Rate:   pick(s.Guarantee, d.Name, 0),
			Ceil:   pick(s.Limit, d.Name, 0),
			Prio:   pick(s.Priority, d.Name, 3),
		}
		if err := n.tc.SetClass(d.Index, c); err != nil {
			if !n.gone(d, err) {
				errs = append(errs, fmt.Errorf("%s: class 1:%x: %w", d.Name, id, err))
			}
			continue
		}
		leaf := netsched.Class{Minor: id + 1, Parent: id, Rate: c.Rate, Prio: c.Prio}
		if err := n.tc.SetClass(d.Index, leaf); err != nil && !n.gone(d, err) {
			errs = append(errs, fmt.Errorf("%s: class 1:%x: %w", d.Name, id+1, err))
		}
	}
	n.invalidate()
	return errors.Join(errs...)
}

// DeleteClass deletes container class id and its leaf on every device.
// Child containers' classes must be gone already.
func (n *Network) DeleteClass(id uint16) error {
	var errs []error
	for _, d := range n.devices() {
		for _, m := range []uint16{id + 1, id} {
			if err := n.tc.DeleteClass(d.Index, m); err != nil {
				if n.gone(d, err) {
					break
				}
				errs = append(errs, fmt.Errorf("%s: delete class 1:%x: %w", d.Name, m, err))
			}
		}
	}
	n.invalidate()
	return errors.Join(errs...)
}

func (n *Network) invalidate() {
	n.mu.Lock()
	n.cached = nil
	n.mu.Unlock()
}

// Classes are every class of every managed device, by device name and
// minor; the answer is at most statsTTL old.
func (n *Network) Classes() (map[string]map[uint16]netsched.ClassInfo, error) {
	n.mu.Lock()
	if n.cached != nil && time.Since(n.at) < statsTTL {
		defer n.mu.Unlock()
		return n.cached, nil
	}
	devs := n.devs
	n.mu.Unlock()
	out := make(map[string]map[uint16]netsched.ClassInfo, len(devs))
	for _, d := range devs {
		cl, err := n.tc.Classes(d.Index)
		if err != nil {
			if n.gone(d, err) {
				continue
			}
			return nil, fmt.Errorf("traffic classes of %s: %w", d.Name, err)
		}
		out[d.Name] = cl
	}
	n.mu.Lock()
	n.cached, n.at = out, time.Now()
	n.mu.Unlock()
	return out, nil
}

// Prune deletes, on every device, the container classes (minor >=
// netsched.FirstMinor) that keep does not claim, children before parents:
// what a crash or an unclean stop left behind.
func (n *Network) Prune(keep func(minor uint16) bool) error {
	var errs []error
	for _, d := range n.devices() {
		cl, err := n.tc.Classes(d.Index)
		if err != nil {
			if !n.gone(d, err) {
				errs = append(errs, fmt.Errorf("traffic classes of %s: %w", d.Name, err))
			}
			continue
		}
		var drop []uint16
		for m := range cl {
			if m >= netsched.FirstMinor && !keep(m) {
				drop = append(drop, m)
			}
		}
		// Deepest first: a class's depth is its chain of parents.
		depth := func(m uint16) int {
			k := 0
			for seen := 0; m != 0 && seen < 16; seen++ {
				m = cl[m].Parent
				k++
			}
			return k
		}
		slices.SortFunc(drop, func(a, b uint16) int { return depth(b) - depth(a) })
		for _, m := range drop {
			if err := n.tc.DeleteClass(d.Index, m); err != nil {
				errs = append(errs, fmt.Errorf("%s: delete class 1:%x: %w", d.Name, m, err))
			} else {
				n.log.Info("deleted a stale traffic class", "device", d.Name, "class", fmt.Sprintf("1:%x", m))
			}
		}
	}
	n.invalidate()
	return errors.Join(errs...)
}
