package service

import (
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/porto-dev/porto/api"
	"github.com/porto-dev/porto/units"
	"github.com/porto-dev/porto/units/netsched"
)

// Network shapes and counts containers' traffic on the host's devices
// (units.Network: an HTB class per container and device, classified by
// the net_cls classid of the sending socket). Nil when porto.conf turns
// it off.
type Network interface {
	// Devices are the managed devices' names, sorted.
	Devices() []string
	// SetClass creates or changes container class id and its own leaf
	// id+1 under parent on every device.
	SetClass(id, parent uint16, s units.NetShape) error
	// DeleteClass deletes class id and its leaf; children go first.
	DeleteClass(id uint16) error
	// Classes dumps every device's classes (at most a few ms old).
	Classes() (map[string]map[uint16]units.NetClass, error)
	// Prune deletes the container classes keep does not claim.
	Prune(keep func(minor uint16) bool) error
}

// netState allocates container classes: class 1:id for the container
// (its counters include its descendants') and 1:id+1 for its own
// processes (the net_cls classid of its cgroup). ids are even, from
// netsched.FirstMinor; a container keeps its id from first start to
// destroy (record.NetClass).
type netState struct {
	mu   sync.Mutex
	used map[uint16]*Container
	next uint16
}

// SetNetwork makes m shape and count traffic through n. Call it before
// Restore.
func (m *Manager) SetNetwork(n Network) { m.net = n }

// SetNetworkOff says why there is no traffic control although porto.conf
// asks for it; the net properties answer NotSupported with it.
func (m *Manager) SetNetworkOff(reason string) { m.netOff = reason }

// netOffReason is why the net properties are NotSupported.
func (m *Manager) netOffReason() string {
	if m.netOff != "" {
		return m.netOff
	}
	return "traffic control is off in porto.conf (network = false)"
}

const netMaxID = 0xfffe

func (m *Manager) netAlloc(c *Container) (uint16, error) {
	c.mu.Lock()
	id := c.rec.NetClass
	c.mu.Unlock()
	if id != 0 {
		return id, nil
	}
	s := &m.netIDs
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.used == nil {
		s.used = map[uint16]*Container{}
	}
	if s.next < netsched.FirstMinor {
		s.next = netsched.FirstMinor
	}
	for range (netMaxID - netsched.FirstMinor) / 2 {
		cand := s.next
		s.next += 2
		if s.next >= netMaxID || s.next < netsched.FirstMinor {
			s.next = netsched.FirstMinor
		}
		if s.used[cand] == nil {
			s.used[cand] = c
			c.mu.Lock()
			c.rec.NetClass = cand
			c.mu.Unlock()
			return cand, nil
		}
	}
	return 0, api.Errorf(api.ResourceNotAvailable, "no traffic class left for %s", c.name)
}

// netRelease frees c's class id (destroy).
func (m *Manager) netRelease(c *Container) {
	c.mu.Lock()
	id := c.rec.NetClass
	c.mu.Unlock()
	if id == 0 {
		return
	}
	m.netIDs.mu.Lock()
	if m.netIDs.used[id] == c {
		delete(m.netIDs.used, id)
	}
	m.netIDs.mu.Unlock()
}

// netParent is the class c's class hangs under: its nearest ancestor's
// that HTB's depth allows, or 1:1.
func (m *Manager) netParent(c *Container) uint16 {
	want := units.NetParentLevel(depth(c.name))
	for a := c.parent; a != nil && !a.isRoot(); a = a.parent {
		if depth(a.name) <= want {
			a.mu.Lock()
			id := a.rec.NetClass
			a.mu.Unlock()
			if id != 0 {
				return id
			}
		}
	}
	return netsched.RootMinor
}

// netShape reads c's net_guarantee, net_limit and net_priority.
func (m *Manager) netShape(c *Container) (units.NetShape, bool) {
	var s units.NetShape
	custom := false
	for _, k := range []string{"net_guarantee", "net_limit", "net_priority"} {
		if _, ok := c.prop(k); ok {
			custom = true
		}
		mp, _ := parseNetMap(m.value(c, k))
		switch k {
		case "net_guarantee":
			s.Guarantee = mp
		case "net_limit":
			s.Limit = mp
		case "net_priority":
			s.Priority = map[string]uint32{}
			for d, v := range mp {
				s.Priority[d] = uint32(v)
			}
		}
	}
	return s, custom
}

// netClassID is the classid of c's own processes, 0 without network.
func (m *Manager) netClassID(c *Container) uint32 {
	if m.net == nil {
		return 0
	}
	c.mu.Lock()
	id := c.rec.NetClass
	c.mu.Unlock()
	if id == 0 {
		return 0
	}
	return netsched.Major<<16 | uint32(id+1)
}

// netSetup gives c its classes at start. A failure fails the start when c
// asked for shaping; otherwise it costs only c's traffic accounting and is
// logged.
func (m *Manager) netSetup(c *Container) error {
	if m.net == nil {
		return nil
	}
	id, err := m.netAlloc(c)
	if err != nil {
		return err
	}
	shape, custom := m.netShape(c)
	if err := m.net.SetClass(id, m.netParent(c), shape); err != nil {
		if custom {
			return api.Wrap(api.ResourceNotAvailable, err, "traffic classes: "+err.Error())
		}
		m.log.Warn("no traffic class: the container's traffic is not counted", "container", c.name, "err", err)
	}
	return nil
}

// netTeardown deletes c's classes (its cgroups are gone: nothing of it
// sends any more).
func (m *Manager) netTeardown(c *Container) {
	if m.net == nil {
		return
	}
	c.mu.Lock()
	id := c.rec.NetClass
	c.mu.Unlock()
	if id == 0 {
		return
	}
	if err := m.net.DeleteClass(id); err != nil {
		m.log.Warn("cannot delete traffic classes", "container", c.name, "err", err)
	}
}

// restoreNetwork re-registers the class ids of restored containers, puts
// back the classes of started ones that are missing (a reboot of the
// network, a device set up anew) and deletes classes nobody owns.
func (m *Manager) restoreNetwork(restored []*Container) {
	live := map[uint16]bool{}
	m.netIDs.mu.Lock()
	if m.netIDs.used == nil {
		m.netIDs.used = map[uint16]*Container{}
	}
	for _, c := range restored {
		c.mu.Lock()
		id, st := c.rec.NetClass, c.rec.State
		c.mu.Unlock()
		if id == 0 {
			continue
		}
		m.netIDs.used[id] = c
		if st != api.StateStopped {
			live[id] = true
		}
	}
	m.netIDs.mu.Unlock()
	if m.net == nil {
		return
	}
	have, err := m.net.Classes()
	if err != nil {
		m.log.Warn("cannot read traffic classes", "err", err)
		return
	}
	for _, c := range restored { // parents first
		c.mu.Lock()
		id, st := c.rec.NetClass, c.rec.State
		c.mu.Unlock()
		if id == 0 && st != api.StateStopped {
			// Started while traffic control was off (or by a porto
			// without it): give it its classes and its cgroup the
			// classid now; the kernel moves its sockets along.
			if err := m.netSetup(c); err != nil {
				m.log.Warn("cannot give a restored container traffic classes", "container", c.name, "err", err)
				continue
			}
			if err := m.applyLimits(c); err != nil {
				m.log.Warn("cannot set the net_cls classid of a restored container", "container", c.name, "err", err)
			}
			c.mu.Lock()
			live[c.rec.NetClass] = true
			c.mu.Unlock()
			m.save(c)
			continue
		}
		if !live[id] {
			continue
		}
		missing := false
		for _, cl := range have {
			if _, ok := cl[id+1]; !ok {
				missing = true
			}
		}
		if missing {
			shape, _ := m.netShape(c)
			if err := m.net.SetClass(id, m.netParent(c), shape); err != nil {
				m.log.Warn("cannot restore traffic classes", "container", c.name, "err", err)
			}
		}
	}
	if err := m.net.Prune(func(minor uint16) bool { return live[minor&^1] }); err != nil {
		m.log.Warn("cannot delete stale traffic classes", "err", err)
	}
}

// parseNetMap reads "eth0: 10M; default: 0" (sizes with suffixes); the
// keys are device names or "default". A lone value is "default: value".
func parseNetMap(v string) (map[string]uint64, error) {
	out := map[string]uint64{}
	v = strings.TrimSpace(v)
	if v == "" {
		return out, nil
	}
	for _, part := range strings.Split(v, ";") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		k, val, ok := strings.Cut(part, ":")
		if !ok {
			k, val = "default", part
		}
		k, val = strings.TrimSpace(k), strings.TrimSpace(val)
		if !validDevName(k) {
			return nil, fmt.Errorf("%q is not a network device name (or \"default\")", k)
		}
		n, err := ParseSize(val)
		if err != nil {
			return nil, fmt.Errorf("%s: %v", k, err)
		}
		if _, dup := out[k]; dup {
			return nil, fmt.Errorf("%s is given twice", k)
		}
		out[k] = n
	}
	return out, nil
}

// validDevName is a Linux interface name: 1-15 bytes, no '/', ':',
// whitespace or control characters, not "." or "..".
func validDevName(s string) bool {
	if s == "" || len(s) > 15 || s == "." || s == ".." {
		return false
	}
	for _, r := range s {
		if r <= ' ' || r == '/' || r == ':' || r == ';' || r >= 0x7f {
			return false
		}
	}
	return true
}

func formatNetMap(mp map[string]uint64) string {
	keys := make([]string, 0, len(mp))
	for k := range mp {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(k)
		b.WriteString(": ")
		b.WriteString(strconv.FormatUint(mp[k], 10))
	}
	return b.String()
}

// vNetMap validates a per-device map of sizes (or of priorities 0-7).
func vNetMap(key string, maxVal uint64) func(*Manager, *Container, string) (string, error) {
	return func(m *Manager, _ *Container, v string) (string, error) {
		if m.net == nil {
			return "", api.Errorf(api.NotSupported, "%s: %s", key, m.netOffReason())
		}
		mp, err := parseNetMap(v)
		if err != nil {
			return "", api.Errorf(api.InvalidValue, "%s: %v (expected \"device: value; ...\", device a name or default)", key, err)
		}
		devs := m.net.Devices()
		for k, n := range mp {
			if maxVal > 0 && n > maxVal {
				return "", api.Errorf(api.InvalidValue, "%s: %s: %d is above %d", key, k, n, maxVal)
			}
			if k != "default" && !slices.Contains(devs, k) {
				return "", api.Errorf(api.InvalidValue, "%s: porto manages no device %s (it manages: %s; \"default\" is every device not named)", key, k, strings.Join(devs, ", "))
			}
		}
		return formatNetMap(mp), nil
	}
}

// netData is one per-device counter of c's traffic, its descendants'
// included: "em1: 123; eth1: 0". HTB counts bytes and packets of an inner
// class for its whole subtree; drops and overlimits are counted where they
// happen (drops in leaves), so those are summed over c's subtree.
func netData(key, desc string, subtree bool, f func(units.NetStats) uint64) *prop {
	return &prop{name: key, desc: desc, data: true,
		get: func(m *Manager, c *Container) (string, error) {
			if _, err := needState(c, key, started...); err != nil {
				return "", err
			}
			if m.net == nil {
				return "", api.Errorf(api.NotSupported, "%s: %s", key, m.netOffReason())
			}
			c.mu.Lock()
			id := c.rec.NetClass
			c.mu.Unlock()
			all, err := m.net.Classes()
			if err != nil {
				return "", api.Wrap(api.Unknown, err, fmt.Sprintf("%s: %v", key, err))
			}
			out := make(map[string]uint64, len(all))
			for dev, cl := range all {
				info, ok := cl[id]
				if id == 0 || !ok {
					return "", api.Errorf(api.ResourceNotAvailable, "%s: %s has no traffic class on %s", key, c.name, dev)
				}
				if !subtree {
					out[dev] = f(info.Stats)
					continue
				}
				var sum uint64
				for minor, ci := range cl {
					for a, hops := minor, 0; a != 0 && hops < 16; a, hops = cl[a].Parent, hops+1 {
						if a == id {
							sum += f(ci.Stats)
							break
						}
					}
				}
				out[dev] = sum
			}
			return formatNetMap(out), nil
		}}
}
