package units

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/porto-dev/porto/api"
)

const (
	defaultMountRoot = "/sys/fs/cgroup"
	defaultRoot      = "porto"
	defaultBlockRoot = "/sys/block"
	// freezeTimeout bounds how long Freeze waits for FROZEN.
	freezeTimeout = 5 * time.Second
	// busyWait bounds how long Remove retries an rmdir that fails EBUSY.
	busyWait = time.Second
	// cfsPeriod is the CFS period porto uses for cpu_limit (µs).
	cfsPeriod = 100000
	// rtBudget is the real-time runtime (µs per 1 s period, per CPU)
	// reserved for a container with cpu_policy=rt on kernels with RT group
	// scheduling.
	rtBudget = 100000
)

func (o *Options) fill() error {
	if o.MountRoot == "" {
		o.MountRoot = defaultMountRoot
	}
	if o.Root == "" {
		o.Root = defaultRoot
	}
	if o.BlockRoot == "" {
		o.BlockRoot = defaultBlockRoot
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if strings.Contains(o.Root, "/") || o.Root == "." || o.Root == ".." || EscapeComponent(o.Root) != o.Root {
		return fmt.Errorf("cgroup root %q: must be one plain path component without '.'", o.Root)
	}
	return nil
}

// cleanName normalises a container name ("/a/b/" -> "a/b"; "/" -> "") and
// refuses components that are empty, "." or "..".
func cleanName(name string) (string, error) {
	n := strings.Trim(name, "/")
	if n == "" {
		return "", nil
	}
	for _, c := range strings.Split(n, "/") {
		if c == "" || c == "." || c == ".." || strings.ContainsRune(c, 0) {
			return "", api.Errorf(api.InvalidValue, "invalid container name %q", name)
		}
	}
	return n, nil
}

// state is what a driver remembers about one cgroup it manages.
type state struct {
	applied *Limits // last limits written; nil = unknown (write all)
}

// registry is the per-name memory shared by the drivers.
type registry struct {
	mu sync.Mutex
	m  map[string]*state
}

func (r *registry) get(name string) *state {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.m == nil {
		r.m = make(map[string]*state)
	}
	s := r.m[name]
	if s == nil {
		s = &state{}
		r.m[name] = s
	}
	return s
}

func (r *registry) applied(name string) *Limits {
	r.mu.Lock()
	defer r.mu.Unlock()
	if s := r.m[name]; s != nil && s.applied != nil {
		c := *s.applied
		c.Devices = append([]string(nil), s.applied.Devices...)
		if s.applied.Devices == nil {
			c.Devices = nil
		}
		return &c
	}
	return nil
}

func (r *registry) setApplied(name string, l *Limits) {
	s := r.get(name)
	r.mu.Lock()
	defer r.mu.Unlock()
	if l == nil {
		s.applied = nil
		return
	}
	c := *l
	if l.Devices != nil {
		c.Devices = append([]string{}, l.Devices...)
	}
	s.applied = &c
}

func (r *registry) policy(name string) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if s := r.m[name]; s != nil && s.applied != nil {
		return normPolicy(s.applied.CPUPolicy)
	}
	return "normal"
}

// forget drops name and everything below it.
func (r *registry) forget(name string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for k := range r.m {
		if name == "" || k == name || strings.HasPrefix(k, name+"/") {
			delete(r.m, k)
		}
	}
}

// validateLimits checks values that are wrong whatever the kernel.
func validateLimits(l *Limits) ([]string, error) {
	if !validPolicy(l.CPUPolicy) {
		return nil, api.Errorf(api.InvalidValue, "cpu_policy %q: expected normal, rt, idle or batch", l.CPUPolicy)
	}
	if !validIOPolicy(l.IOPolicy) {
		return nil, api.Errorf(api.InvalidValue, "io_policy %q: expected normal or batch", l.IOPolicy)
	}
	if math.IsNaN(l.CPULimit) || math.IsInf(l.CPULimit, 0) || l.CPULimit < 0 {
		return nil, api.Errorf(api.InvalidValue, "cpu_limit %v: expected a non-negative number of cores", l.CPULimit)
	}
	if math.IsNaN(l.CPUGuarantee) || math.IsInf(l.CPUGuarantee, 0) || l.CPUGuarantee < 0 {
		return nil, api.Errorf(api.InvalidValue, "cpu_guarantee %v: expected a non-negative number of cores", l.CPUGuarantee)
	}
	if l.Devices == nil {
		return nil, nil
	}
	rules := make([]string, 0, len(l.Devices))
	for _, r := range l.Devices {
		n, err := deviceRule(r)
		if err != nil {
			return nil, api.Errorf(api.InvalidValue, "devices: %v", err)
		}
		rules = append(rules, n)
	}
	return rules, nil
}

// notSupported collects limits the kernel cannot apply.
type notSupported []string

func (n *notSupported) add(format string, args ...any) { *n = append(*n, fmt.Sprintf(format, args...)) }

func (n notSupported) err() error {
	if len(n) == 0 {
		return nil
	}
	return api.Errorf(api.NotSupported, "%s", strings.Join(n, "; "))
}

// cpuQuota is the CFS quota (µs per cfsPeriod) of cpu_limit cores.
func cpuQuota(cores float64) int64 {
	q := int64(math.Round(cores * cfsPeriod))
	return max(q, 1000) // the kernel's minimum
}

// cpuShares maps cpu_guarantee (cores) to v1 cpu.shares: the default 1024
// plus 1024 per guaranteed core, so a guarantee only ever raises a
// container's weight above that of one without.
func cpuShares(cores float64) uint64 {
	return min(1024+uint64(math.Round(cores*1024)), 262144)
}

// cpuWeight maps cpu_guarantee (cores) to v2 cpu.weight the same way:
// the default 100 plus 100 per core.
func cpuWeight(cores float64) uint64 {
	return min(100+uint64(math.Round(cores*100)), 10000)
}

// limitErr classifies a failed write of a limit.
func limitErr(prop string, err error) error {
	if errors.Is(err, unix.EBUSY) || errors.Is(err, unix.EINVAL) {
		return &api.Error{Code: api.InvalidValue, Msg: fmt.Sprintf("%s: the kernel refused it: %v", prop, err), Err: err}
	}
	if errors.Is(err, fs.ErrNotExist) {
		return &api.Error{Code: api.NotSupported, Msg: fmt.Sprintf("%s: %v", prop, err), Err: err}
	}
	return fmt.Errorf("%s: %w", prop, err)
}

func busyPids(dir string, err error) error {
	if !errors.Is(err, unix.EBUSY) {
		return err
	}
	pids, perr := readProcs(dir)
	if perr != nil || len(pids) == 0 {
		return &api.Error{Code: api.Busy, Msg: err.Error(), Err: err}
	}
	return &api.Error{Code: api.Busy, Msg: fmt.Sprintf("%v (processes still inside: %v)", err, pids), Err: err}
}
