package service

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"

	"github.com/porto-dev/porto/api"
	"github.com/porto-dev/porto/units"
)

// memoryGuaranteeReserve is kept out of guarantees for the host (Porto's).
const memoryGuaranteeReserve = 2 << 30

// limitsOf collects c's resource limits from its properties; override
// replaces one property's value (a Set being applied).
func (m *Manager) limitsOf(c *Container, overKey, overVal string) (units.Limits, error) {
	val := func(k string) string {
		if k == overKey {
			return overVal
		}
		return m.value(c, k)
	}
	var l units.Limits
	var err error
	size := func(k string) uint64 {
		n, e := strconv.ParseUint(val(k), 10, 64)
		if e != nil && err == nil {
			err = api.Errorf(api.InvalidValue, "%s: %q", k, val(k))
		}
		return n
	}
	l.MemoryLimit = size("memory_limit")
	l.MemoryGuarantee = size("memory_guarantee")
	l.IOLimit = size("io_limit")
	l.PidsLimit = size("thread_limit")
	l.RechargeOnPgfault, _ = ParseBool(val("recharge_on_pgfault"))
	l.CPULimit, _ = parseCores(val("cpu_limit"))
	l.CPUGuarantee, _ = parseCores(val("cpu_guarantee"))
	l.CPUPolicy = val("cpu_policy")
	l.IOPolicy = val("io_policy")
	l.NetClassID = m.netClassID(c)
	if v, ok := c.prop("allowed_devices"); ok || overKey == "allowed_devices" {
		if overKey == "allowed_devices" {
			v = overVal
		}
		l.Devices = splitList(v)
	}
	return l, err
}

// applyLimits pushes c's limits into its cgroups.
func (m *Manager) applyLimits(c *Container) error {
	return m.applyLimitsWith(c, "", "")
}

func (m *Manager) applyLimitsWith(c *Container, key, val string) error {
	l, err := m.limitsOf(c, key, val)
	if err != nil {
		return err
	}
	if err := m.cg.Apply(c.name, l); err != nil {
		return api.AsError(err)
	}
	return nil
}

// parseCores reads "1.5c" (cores), "50%" or "50" (percent of the whole
// machine); "0" is unlimited.
func parseCores(v string) (float64, error) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, nil
	}
	ncpu := float64(runtime.NumCPU())
	var f float64
	var err error
	switch {
	case strings.HasSuffix(v, "c"):
		f, err = strconv.ParseFloat(strings.TrimSuffix(v, "c"), 64)
	case strings.HasSuffix(v, "%"):
		f, err = strconv.ParseFloat(strings.TrimSuffix(v, "%"), 64)
		f = f / 100 * ncpu
	default:
		f, err = strconv.ParseFloat(v, 64)
		f = f / 100 * ncpu
	}
	if err != nil || f < 0 || f != f || f > 4096 {
		return 0, fmt.Errorf("%q is not a CPU amount (Nc cores, or N%% of the machine)", v)
	}
	return f, nil
}

func vCores(_ *Manager, _ *Container, v string) (string, error) {
	f, err := parseCores(v)
	if err != nil {
		return "", api.Errorf(api.InvalidValue, "%v", err)
	}
	if f > float64(runtime.NumCPU()) {
		return "", api.Errorf(api.InvalidValue, "%s is more than the %d cores of this machine", v, runtime.NumCPU())
	}
	return strconv.FormatFloat(f, 'f', -1, 64) + "c", nil
}

func vChoice(key string, choices ...string) func(*Manager, *Container, string) (string, error) {
	return func(_ *Manager, _ *Container, v string) (string, error) {
		for _, c := range choices {
			if v == c {
				return v, nil
			}
		}
		return "", api.Errorf(api.InvalidValue, "%s is one of %s, not %q", key, strings.Join(choices, ", "), v)
	}
}

// dynamicLimit is the apply of every cgroup-backed property: the new value
// goes to the kernel before it is recorded.
func dynamicLimit(key string) func(m *Manager, c *Container, v string) error {
	return func(m *Manager, c *Container, v string) error {
		return m.applyLimitsWith(c, key, v)
	}
}

// propUint is c's value of a size property, 0 when unset or unparsable.
func propUint(c *Container, key string) uint64 {
	v, _ := c.prop(key)
	n, _ := strconv.ParseUint(v, 10, 64)
	return n
}

// childrenSum is Porto's GetChildrenSum: over c's children, a child's own
// non-zero value of key, else (recursively) its children's sum; except is
// counted as exceptVal. The caller holds treeMu.
func childrenSum(c *Container, key string, except *Container, exceptVal uint64) uint64 {
	var sum uint64
	for _, ch := range c.children {
		if ch == except {
			sum += exceptVal
			continue
		}
		if v := propUint(ch, key); v > 0 {
			sum += v
		} else {
			sum += childrenSum(ch, key, except, exceptVal)
		}
	}
	return sum
}

// checkHierarchy is Porto's ValidHierarchicalProperty for memory_limit and
// memory_guarantee (0 = not set): a non-zero value may not be below what
// the children already have (summed as childrenSum does), nor above any
// ancestor's non-zero value, and the parent's children together may not
// exceed the parent's non-zero value. Unlike old Porto, 0 (unlimited) is
// never refused for being below the children's sum. Refusals are
// InvalidValue.
func (m *Manager) checkHierarchy(c *Container, key string, n uint64) error {
	if n == 0 {
		return nil
	}
	m.treeMu.RLock()
	defer m.treeMu.RUnlock()
	if kids := childrenSum(c, key, nil, 0); kids > 0 && n < kids {
		return api.Errorf(api.InvalidValue, "%s %d is below the %d bytes its child containers have together", key, n, kids)
	}
	for a := c.parent; a != nil && !a.isRoot(); a = a.parent {
		if v := propUint(a, key); v > 0 && n > v {
			return api.Errorf(api.InvalidValue, "%s %d is above the %s %d of %s", key, n, key, v, a.name)
		}
	}
	if p := c.parent; p != nil && !p.isRoot() {
		if v := propUint(p, key); v > 0 {
			if sum := childrenSum(p, key, c, n); sum > v {
				return api.Errorf(api.InvalidValue, "%s %d would make the children of %s have %d bytes together, more than its %s %d", key, n, p.name, sum, key, v)
			}
		}
	}
	return nil
}

// vMemoryLimit is a size that passes the hierarchical check. A limit below
// the current usage is refused by the cgroup driver when it is applied.
func vMemoryLimit(m *Manager, c *Container, v string) (string, error) {
	canon, err := vSize(0)(m, c, v)
	if err != nil {
		return "", err
	}
	n, _ := strconv.ParseUint(canon, 10, 64)
	if err := m.checkHierarchy(c, "memory_limit", n); err != nil {
		return "", err
	}
	return canon, nil
}

// vMemoryGuarantee refuses a guarantee that fails the hierarchical check,
// or that would overcommit the machine: the guarantees of all containers
// (summed as Porto did: a container with a guarantee of its own counts
// that, not its children's) plus a 2 GiB reserve must fit in RAM
// (ResourceNotAvailable).
func vMemoryGuarantee(m *Manager, c *Container, v string) (string, error) {
	canon, err := vSize(0)(m, c, v)
	if err != nil {
		return "", err
	}
	n, _ := strconv.ParseUint(canon, 10, 64)
	if n == 0 {
		return canon, nil
	}
	if err := m.checkHierarchy(c, "memory_guarantee", n); err != nil {
		return "", err
	}
	total := memTotal()
	root := c
	for root.parent != nil {
		root = root.parent
	}
	m.treeMu.RLock()
	sum := childrenSum(root, "memory_guarantee", c, n)
	m.treeMu.RUnlock()
	if total > 0 && sum+memoryGuaranteeReserve > total {
		return "", api.Errorf(api.ResourceNotAvailable, "memory_guarantee %s would overcommit the machine: %d bytes guaranteed in all with it, %d reserved for the host, %d of RAM", v, sum, uint64(memoryGuaranteeReserve), total)
	}
	return canon, nil
}

func memTotal() uint64 {
	data, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "MemTotal:"); ok {
			f := strings.Fields(v)
			if len(f) > 0 {
				n, _ := strconv.ParseUint(f[0], 10, 64)
				return n << 10
			}
		}
	}
	return 0
}

// registerLimits adds the cgroup-backed limit properties (props.go calls
// it, so they list after the other properties and before the data).
func registerLimits() {
	register(
		netData("net_bytes", "bytes sent, per device: dev: N; ...", false, func(s units.NetStats) uint64 { return s.Bytes }),
		netData("net_packets", "packets sent, per device", false, func(s units.NetStats) uint64 { return s.Packets }),
		netData("net_drops", "packets dropped, per device", true, func(s units.NetStats) uint64 { return s.Drops }),
		netData("net_overlimits", "times the traffic class went over its limit, per device", true, func(s units.NetStats) uint64 { return s.Overlimits }),
		&prop{name: "net_class_id", desc: "the traffic class of the container's own processes (tc classid)", data: true,
			get: func(m *Manager, c *Container) (string, error) {
				if _, err := needState(c, "net_class_id", started...); err != nil {
					return "", err
				}
				id := m.netClassID(c)
				if id == 0 {
					return "", api.Errorf(api.NotSupported, "net_class_id: %s", m.netOffReason())
				}
				return fmt.Sprintf("%x:%x", id>>16, id&0xffff), nil
			}},
		&prop{name: "memory_limit", desc: "memory limit, bytes (suffixes K, M, G); 0: unlimited", dynamic: true,
			def: constDef("0"), validate: vMemoryLimit, apply: dynamicLimit("memory_limit")},
		&prop{name: "memory_guarantee", desc: "memory guarantee, bytes; the sum over all containers plus 2G must fit in RAM", dynamic: true,
			def: constDef("0"), validate: vMemoryGuarantee, apply: dynamicLimit("memory_guarantee")},
		&prop{name: "recharge_on_pgfault", desc: "move memory charges to the container that faults the page", dynamic: true,
			def: constDef("false"), validate: vBool, apply: dynamicLimit("recharge_on_pgfault")},
		&prop{name: "cpu_limit", desc: "CPU limit: Nc cores or N% of the machine; 0: unlimited", dynamic: true,
			def: constDef("0c"), validate: vCores, apply: dynamicLimit("cpu_limit")},
		&prop{name: "cpu_guarantee", desc: "CPU guarantee: Nc cores or N% of the machine", dynamic: true,
			def: constDef("0c"), validate: vCores, apply: dynamicLimit("cpu_guarantee")},
		&prop{name: "cpu_policy", desc: "CPU scheduling policy: normal, rt, batch or idle", dynamic: true,
			def: constDef("normal"), validate: vChoice("cpu_policy", "normal", "rt", "batch", "idle"), apply: dynamicLimit("cpu_policy")},
		&prop{name: "io_limit", desc: "disk bandwidth limit, bytes/s; 0: unlimited", dynamic: true,
			def: constDef("0"), validate: vSize(0), apply: dynamicLimit("io_limit")},
		&prop{name: "io_policy", desc: "disk I/O policy: normal or batch", dynamic: true,
			def: constDef("normal"), validate: vChoice("io_policy", "normal", "batch"), apply: dynamicLimit("io_policy")},
		&prop{name: "thread_limit", desc: "maximum number of tasks (the pids limit); 0: unlimited", dynamic: true,
			def: constDef("0"), validate: vInt(0, 1<<31-1), apply: dynamicLimit("thread_limit")},
		&prop{name: "net_limit", desc: "traffic limit per device, bytes/s: dev: N; default: N (0: unlimited)",
			def: constDef("default: 0"), validate: vNetMap("net_limit", 0)},
		&prop{name: "net_guarantee", desc: "guaranteed traffic rate per device, bytes/s: dev: N; default: N",
			def: constDef("default: 0"), validate: vNetMap("net_guarantee", 0)},
		&prop{name: "net_priority", desc: "traffic priority per device, 0 (first) to 7: dev: N; default: N",
			def: constDef("default: 3"), validate: vNetMap("net_priority", 7)},
	)
}
