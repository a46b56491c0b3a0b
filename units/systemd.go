package units

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	sdbus "github.com/coreos/go-systemd/v22/dbus"
	"github.com/coreos/go-systemd/v22/unit"
	"github.com/godbus/dbus/v5"
	"golang.org/x/sys/unix"

	"github.com/porto-dev/porto/api"
)

// SystemdConn is the part of go-systemd's *dbus.Conn the systemd driver
// uses; tests substitute a fake.
type SystemdConn interface {
	StartTransientUnitContext(ctx context.Context, name, mode string, props []sdbus.Property, ch chan<- string) (int, error)
	StopUnitContext(ctx context.Context, name, mode string, ch chan<- string) (int, error)
	ResetFailedUnitContext(ctx context.Context, name string) error
	SetUnitPropertiesContext(ctx context.Context, name string, runtime bool, props ...sdbus.Property) error
	GetUnitPropertyContext(ctx context.Context, unit string, propertyName string) (*sdbus.Property, error)
	Connected() bool
	Close()
}

// SystemdOptions configure the systemd driver.
type SystemdOptions struct {
	Options
	// Dial connects to systemd; default: the system bus
	// (DBUS_SYSTEM_BUS_ADDRESS honoured). It is called again to
	// reconnect after the connection is lost.
	Dial func(ctx context.Context) (SystemdConn, error)
	// JobTimeout bounds the wait for a scope's start or stop job;
	// default 30 s.
	JobTimeout time.Duration
}

// Systemd is the driver for hosts where systemd manages cgroups (cgroup
// v1 here): each first-level container "a" gets a transient scope
// porto-<a>.scope in <Root>.slice, created with the PID of the first
// process attached to it and Delegate=yes. Nested containers are porto's
// own sub-cgroups inside the scope. In the hierarchies systemd does not
// delegate (freezer, cpuacct, cpuset, net_cls here) porto creates its own cgroups
// at the scope's path and marks them. porto never writes an attribute of
// a cgroup systemd created: a first-level container's limits are unit
// properties (SetUnitProperties).
type Systemd struct {
	v     *V1
	opts  SystemdOptions
	slice string

	connMu sync.Mutex
	conn   SystemdConn

	mu      sync.Mutex
	locks   map[string]*sync.Mutex // per first-level container
	pending map[string]*Limits     // limits of containers whose cgroups wait for their scope
	ooms    map[string]*oomWatch   // OOM counters of first-level containers' scope cgroups
}

// SystemdAvailable reports whether systemd answers on the system bus.
func SystemdAvailable() bool {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	c, err := sdbus.NewSystemConnectionContext(ctx)
	if err != nil {
		return false
	}
	defer c.Close()
	_, err = c.GetManagerProperty("Version")
	return err == nil
}

// NewSystemd connects to systemd and finds the v1 hierarchies. It needs
// cgroup v1 (the v2 variant is not written).
func NewSystemd(opts SystemdOptions) (*Systemd, error) {
	if err := opts.Options.fill(); err != nil {
		return nil, err
	}
	if opts.JobTimeout == 0 {
		opts.JobTimeout = 30 * time.Second
	}
	if opts.Dial == nil {
		// godbus closes a connection when its context ends: dial with
		// one that never does.
		opts.Dial = func(context.Context) (SystemdConn, error) {
			return sdbus.NewSystemConnectionContext(context.Background())
		}
	}
	ver, err := Detect(opts.MountRoot)
	if err != nil {
		return nil, err
	}
	if ver != CgroupV1 {
		return nil, api.Errorf(api.NotSupported, "the systemd driver supports cgroup v1 only; this host is %v", ver)
	}
	v, err := discoverV1(opts.Options)
	if err != nil {
		return nil, err
	}
	s := &Systemd{v: v, opts: opts, slice: sliceName(opts.Root), locks: map[string]*sync.Mutex{}, pending: map[string]*Limits{}, ooms: map[string]*oomWatch{}}
	v.rel = s.rel
	ctx, cancel := context.WithTimeout(context.Background(), opts.JobTimeout)
	defer cancel()
	if s.conn, err = opts.Dial(ctx); err != nil {
		return nil, fmt.Errorf("connect to systemd: %w", err)
	}
	opts.Log.Info("managing cgroups through systemd", "slice", s.slice, "controllers", v.Controllers())
	return s, nil
}

// Close closes the connection to systemd.
func (s *Systemd) Close() {
	s.connMu.Lock()
	defer s.connMu.Unlock()
	if s.conn != nil {
		s.conn.Close()
	}
	s.mu.Lock()
	for k, w := range s.ooms {
		w.close()
		delete(s.ooms, k)
	}
	s.mu.Unlock()
}

// watchOOM subscribes to the OOMs of first's scope memory cgroup (once;
// also for scopes started by an earlier porto process) so that a dead
// first-level container still reports them after systemd removed it.
func (s *Systemd) watchOOM(first string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ooms[first] != nil {
		return
	}
	dir := s.v.dir("memory", first)
	if !isDir(dir) {
		return
	}
	w, err := newOOMWatch(dir)
	if err != nil {
		s.opts.Log.Warn("cannot watch OOMs; oom_killed may be missed once the scope is gone", "container", first, "err", err)
		return
	}
	s.ooms[first] = w
}

// oomCount is what first's OOM watch has seen (see oomWatch.count).
func (s *Systemd) oomCount(first string, wait time.Duration) uint64 {
	s.mu.Lock()
	w := s.ooms[first]
	s.mu.Unlock()
	if w != nil {
		return w.count(wait)
	}
	return 0
}

func (s *Systemd) unwatchOOM(first string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if w := s.ooms[first]; w != nil {
		w.close()
		delete(s.ooms, first)
	}
}

// sliceName is porto's slice: Root escaped so that a '-' in it does not
// nest the slice ("porto" -> "porto.slice", "porto-dev" ->
// "porto\x2ddev.slice").
func sliceName(root string) string { return unit.UnitNameEscape(root) + ".slice" }

// ScopeName is the transient scope of first-level container first:
// "<Root>-" + the name escaped as systemd-escape does + ".scope".
func (s *Systemd) ScopeName(first string) string {
	return s.opts.Root + "-" + unit.UnitNameEscape(first) + ".scope"
}

// rel maps a container name to its directory relative to a hierarchy.
func (s *Systemd) rel(n string) string {
	if n == "" {
		return s.slice
	}
	first, rest, _ := strings.Cut(n, "/")
	p := s.slice + "/" + s.ScopeName(first)
	if rest != "" {
		p += "/" + EscapeName(rest)
	}
	return p
}

// Version reports CgroupV1.
func (s *Systemd) Version() Version { return CgroupV1 }

// Path is the container's directory in controller's hierarchy.
func (s *Systemd) Path(name, controller string) string { return s.v.Path(name, controller) }

func (s *Systemd) lock(first string) func() {
	s.mu.Lock()
	l := s.locks[first]
	if l == nil {
		l = &sync.Mutex{}
		s.locks[first] = l
	}
	s.mu.Unlock()
	l.Lock()
	return l.Unlock
}

// ownedBySystemd reports whether dir was created by systemd: porto marks
// every cgroup it creates at or above a scope's level.
func ownedBySystemd(dir string) bool {
	buf := make([]byte, 16)
	_, err := unix.Getxattr(dir, ownerXattr, buf)
	return err == unix.ENODATA
}

// mkdirMarked creates dir as porto's own (marked) cgroup.
func mkdirMarked(dir string) (bool, error) {
	created, err := mkdir(dir)
	if err != nil || !created {
		return created, err
	}
	if err := unix.Setxattr(dir, ownerXattr, []byte("porto"), 0); err != nil && err != unix.ENOTSUP && err != unix.EOPNOTSUPP {
		unix.Rmdir(dir)
		return false, &fs.PathError{Op: "setxattr " + ownerXattr, Path: dir, Err: err}
	}
	return true, nil
}

// scopeActive asks systemd whether first's scope runs. (Its cgroup
// directories are no proof: systemd may leave an empty memory cgroup
// behind for a moment after the scope stopped.)
func (s *Systemd) scopeActive(first string) bool {
	scope := s.ScopeName(first)
	var st string
	err := s.call(func(ctx context.Context, c SystemdConn) error {
		p, err := c.GetUnitPropertyContext(ctx, scope, "ActiveState")
		if err == nil {
			st, _ = p.Value.Value().(string)
		}
		return err
	})
	return err == nil && (st == "active" || st == "activating" || st == "reloading")
}

// ensureOwn creates porto's own slice and scope level directories in the
// hierarchies where systemd made none, once the scope runs or before.
func (s *Systemd) ensureOwn(first string, scopeRunning bool) error {
	for _, h := range s.v.hiers {
		sliceDir := h.mount + "/" + s.slice
		scopeDir := h.mount + "/" + s.rel(first)
		if scopeRunning && isDir(scopeDir) {
			continue
		}
		if !scopeRunning && !porto1Owned(h) {
			continue
		}
		if !isDir(sliceDir) {
			if _, err := mkdirMarked(sliceDir); err != nil {
				return err
			}
			if h.has("cpuset") {
				if err := copyCpuset(h.mount, sliceDir, true); err != nil {
					return err
				}
			}
		}
		created, err := mkdirMarked(scopeDir)
		if err != nil {
			return err
		}
		if created && h.has("cpuset") {
			if err := copyCpuset(sliceDir, scopeDir, true); err != nil {
				return err
			}
		}
	}
	return nil
}

// porto1Owned: hierarchies systemd never delegates on cgroup v1, where
// porto can create the scope level before the scope exists.
func porto1Owned(h *hierarchy) bool {
	return h.has("freezer") || h.has("cpuacct") || h.has("cpuset") || h.has("net_cls")
}

// Create makes the container's cgroups where they can exist now: porto's
// own hierarchies always, the delegated ones once the scope runs (until
// then they are made by the Attach that starts it).
func (s *Systemd) Create(name string) error {
	n, err := cleanName(name)
	if err != nil || n == "" {
		return err
	}
	first, rest, _ := strings.Cut(n, "/")
	defer s.lock(first)()
	active := s.scopeActive(first)
	if err := s.ensureOwn(first, active); err != nil {
		return fmt.Errorf("create cgroup of %q: %w", n, err)
	}
	if rest == "" {
		return nil
	}
	return s.mkdirs(n, active)
}

// mkdirs creates a nested container's cgroups (parents must exist).
func (s *Systemd) mkdirs(n string, active bool) error {
	for _, h := range s.v.hiers {
		if !active && !porto1Owned(h) {
			continue
		}
		d := s.v.hpath(h, n)
		created, err := mkdir(d)
		if err == nil && created && h.has("cpuset") {
			err = copyCpuset(filepath.Dir(d), d, true)
		}
		if err != nil {
			return fmt.Errorf("create cgroup of %q: %w", n, err)
		}
	}
	return nil
}

// Attach moves pid into the container. The first process of a
// first-level container starts its scope (PIDs=[pid], Delegate=yes) and
// waits for the job; systemd moves it into the delegated hierarchies and
// porto into its own.
func (s *Systemd) Attach(name string, pid int) error {
	n, err := cleanName(name)
	if err != nil {
		return err
	}
	if n == "" {
		return api.Errorf(api.InvalidValue, "cannot attach to porto's root cgroup")
	}
	first, rest, _ := strings.Cut(n, "/")
	unlock := s.lock(first)
	started := false
	if !s.scopeActive(first) {
		if err := s.startScope(first, pid); err != nil {
			unlock()
			return err
		}
		started = true
	}
	unlock()
	if started && rest == "" {
		// systemd moved pid into its hierarchies; porto's own are left.
		ps := strconv.Itoa(pid)
		for _, h := range s.v.hiers {
			d := s.v.hpath(h, n)
			if ownedBySystemd(d) {
				continue
			}
			if err := writeFile(d+"/cgroup.procs", ps); err != nil {
				return fmt.Errorf("attach %d to %q: %w", pid, n, err)
			}
		}
		if p := s.v.reg.policy(n); p == "batch" {
			return setSched([]int{pid}, p)
		}
		return nil
	}
	return s.v.Attach(n, pid)
}

// startScope starts first's scope with pid, then realizes what waited
// for it: porto's cgroups in the delegated hierarchies for nested
// containers made meanwhile, and their pending limits.
func (s *Systemd) startScope(first string, pid int) error {
	props := []sdbus.Property{
		sdbus.PropDescription("porto container " + first),
		sdbus.PropSlice(s.slice),
		sdbus.PropPids(uint32(pid)),
		{Name: "Delegate", Value: dbus.MakeVariant(true)},
		{Name: "MemoryAccounting", Value: dbus.MakeVariant(true)},
		{Name: "TasksAccounting", Value: dbus.MakeVariant(true)},
		{Name: "CPUAccounting", Value: dbus.MakeVariant(true)},
	}
	s.mu.Lock()
	pl := s.pending[first]
	s.mu.Unlock()
	if pl != nil {
		lp, err := s.unitProps(first, *pl)
		if err != nil {
			return err
		}
		props = append(props, lp...)
	}
	scope := s.ScopeName(first)
	err := s.runJob(scope, func(ctx context.Context, c SystemdConn, ch chan<- string) (int, error) {
		return c.StartTransientUnitContext(ctx, scope, "fail", props, ch)
	})
	if isDBusError(err, "org.freedesktop.systemd1.UnitExists") {
		// A failed or stopping scope of that name: reset it, retry once.
		s.call(func(ctx context.Context, c SystemdConn) error { return c.ResetFailedUnitContext(ctx, scope) })
		err = s.runJob(scope, func(ctx context.Context, c SystemdConn, ch chan<- string) (int, error) {
			return c.StartTransientUnitContext(ctx, scope, "fail", props, ch)
		})
	}
	if err != nil {
		return fmt.Errorf("start scope %s: %w", scope, err)
	}
	if pl != nil {
		s.v.reg.setApplied(first, pl)
		s.mu.Lock()
		delete(s.pending, first)
		s.mu.Unlock()
	}
	if err := s.ensureOwn(first, true); err != nil {
		return err
	}
	s.unwatchOOM(first) // a watch of an earlier scope of that name
	s.watchOOM(first)
	// Nested containers created before the scope: make their delegated
	// cgroups (parents first) and apply what they wait for.
	dirs, err := subdirs(s.v.dir("freezer", first))
	if err != nil {
		return err
	}
	base := s.v.dir("freezer", first)
	for _, d := range dirs[1:] {
		esc := strings.TrimPrefix(d, base+"/")
		rest, err := UnescapeName(esc)
		if err != nil {
			continue
		}
		n := first + "/" + rest
		if err := s.mkdirs(n, true); err != nil {
			return err
		}
		s.mu.Lock()
		l := s.pending[n]
		delete(s.pending, n)
		s.mu.Unlock()
		if l != nil {
			if err := s.v.Apply(n, *l); err != nil {
				return fmt.Errorf("apply limits of %q: %w", n, err)
			}
		}
	}
	return nil
}

// call runs f on the connection, reconnecting once if it was lost.
func (s *Systemd) call(f func(ctx context.Context, c SystemdConn) error) error {
	ctx, cancel := context.WithTimeout(context.Background(), s.opts.JobTimeout)
	defer cancel()
	var lastErr error
	for attempt := 0; ; attempt++ {
		s.connMu.Lock()
		c := s.conn
		if c == nil || !c.Connected() {
			if c != nil {
				c.Close()
			}
			nc, err := s.opts.Dial(ctx)
			if err != nil {
				s.conn = nil
				s.connMu.Unlock()
				return fmt.Errorf("reconnect to systemd: %w", err)
			}
			s.opts.Log.Warn("reconnected to systemd", "after", lastErr)
			s.conn, c = nc, nc
		}
		s.connMu.Unlock()
		err := f(ctx, c)
		if err != nil && attempt == 0 && (errors.Is(err, dbus.ErrClosed) || !c.Connected()) {
			lastErr = err
			s.connMu.Lock()
			if s.conn == c {
				c.Close()
				s.conn = nil
			}
			s.connMu.Unlock()
			continue
		}
		return err
	}
}

// runJob starts a job and waits for its result, bounded by JobTimeout.
func (s *Systemd) runJob(unitName string, start func(ctx context.Context, c SystemdConn, ch chan<- string) (int, error)) error {
	ch := make(chan string, 1)
	err := s.call(func(ctx context.Context, c SystemdConn) error {
		_, err := start(ctx, c, ch)
		return err
	})
	if err != nil {
		return err
	}
	select {
	case res := <-ch:
		if res != "done" {
			return api.Errorf(api.ResourceNotAvailable, "systemd job for %s: %s", unitName, res)
		}
		return nil
	case <-time.After(s.opts.JobTimeout):
		return api.Errorf(api.ResourceNotAvailable, "systemd job for %s: no result after %v", unitName, s.opts.JobTimeout)
	}
}

func isDBusError(err error, name string) bool {
	var de dbus.Error
	if errors.As(err, &de) {
		return de.Name == name
	}
	var dp *dbus.Error
	return errors.As(err, &dp) && dp.Name == name
}

// unitProps maps a first-level container's limits to unit properties of
// its scope (cgroup v1 names). Limits systemd cannot express here are
// NotSupported.
func (s *Systemd) unitProps(first string, l Limits) ([]sdbus.Property, error) {
	if _, err := validateLimits(&l); err != nil {
		return nil, err
	}
	inf := ^uint64(0)
	var ns notSupported
	if l.MemoryGuarantee > 0 {
		ns.add("memory_guarantee: cgroup v1 has no memory protection (MemoryLow= needs cgroup v2)")
	}
	if l.RechargeOnPgfault {
		ns.add("recharge_on_pgfault: this kernel has no memory.recharge_on_pgfault")
	}
	switch normPolicy(l.CPUPolicy) {
	case "idle":
		ns.add("cpu_policy=idle: a first-level container's cpu cgroup is systemd's, and CPUWeight=idle needs cgroup v2")
	case "rt":
		ns.add("cpu_policy=rt: the real-time budget would have to be written to cgroups systemd owns")
	}
	if l.Devices != nil {
		ns.add("devices: a first-level container's devices cgroup is systemd's, and DeviceAllow= takes device paths, not MAJOR:MINOR rules")
	}
	if l.IOPolicy == "batch" {
		ns.add("io_policy=batch: a first-level container's blkio cgroup is systemd's, and porto sets no BlockIOWeight= for it")
	}
	var bw []struct {
		Path string
		Bps  uint64
	}
	if l.IOLimit > 0 {
		devs := blockDevices(s.opts.BlockRoot)
		for _, d := range devs {
			p := "/dev/block/" + d
			if !exists(p) {
				ns.add("io_limit: systemd needs a device node and %s is missing", p)
				break
			}
			bw = append(bw, struct {
				Path string
				Bps  uint64
			}{p, l.IOLimit})
		}
		if len(devs) == 0 {
			ns.add("io_limit: blkio throttling needs a block device and none was found in %s", s.opts.BlockRoot)
		}
	}
	if err := ns.err(); err != nil {
		return nil, err
	}
	mem, quota, shares, tasks := inf, inf, inf, inf
	if l.MemoryLimit > 0 {
		if s.scopeActive(first) {
			usage, err := readUint(s.v.dir("memory", first) + "/memory.usage_in_bytes")
			if err == nil && l.MemoryLimit < usage {
				return nil, api.Errorf(api.InvalidValue, "memory_limit %d is below the current memory usage %d", l.MemoryLimit, usage)
			}
		}
		mem = l.MemoryLimit
	}
	if l.CPULimit > 0 {
		quota = uint64(cpuQuota(l.CPULimit)) * (1000000 / cfsPeriod)
	}
	if l.CPUGuarantee > 0 {
		shares = cpuShares(l.CPUGuarantee)
	}
	if l.PidsLimit > 0 {
		tasks = l.PidsLimit
	}
	if bw == nil {
		bw = []struct {
			Path string
			Bps  uint64
		}{}
	}
	return []sdbus.Property{
		{Name: "MemoryLimit", Value: dbus.MakeVariant(mem)},
		{Name: "CPUQuotaPerSecUSec", Value: dbus.MakeVariant(quota)},
		{Name: "CPUShares", Value: dbus.MakeVariant(shares)},
		{Name: "TasksMax", Value: dbus.MakeVariant(tasks)},
		{Name: "BlockIOReadBandwidth", Value: dbus.MakeVariant(bw)},
		{Name: "BlockIOWriteBandwidth", Value: dbus.MakeVariant(bw)},
	}, nil
}

// Apply sets limits: unit properties for a first-level container, porto's
// own sub-cgroups for nested ones. Limits of a container whose cgroups
// wait for its scope are checked and kept until the scope starts.
func (s *Systemd) Apply(name string, l Limits) error {
	n, err := cleanName(name)
	if err != nil {
		return err
	}
	if n == "" {
		return api.Errorf(api.InvalidValue, "cannot set limits on porto's root cgroup")
	}
	first, rest, _ := strings.Cut(n, "/")
	defer s.lock(first)()
	if !s.v.Exists(n) {
		return fmt.Errorf("apply limits to %q: %w", n, fs.ErrNotExist)
	}
	active := s.scopeActive(first)
	if rest != "" {
		if active {
			return s.v.Apply(n, l)
		}
		if _, err := validateLimits(&l); err != nil {
			return err
		}
		c := l
		s.mu.Lock()
		s.pending[n] = &c
		s.mu.Unlock()
		return nil
	}
	props, err := s.unitProps(first, l)
	if err != nil {
		return err
	}
	// net_cls is porto's own hierarchy (systemd has no such controller):
	// the classid goes straight to porto's cgroup at the scope's path.
	if h := s.v.by["net_cls"]; h != nil {
		if d := s.v.hpath(h, first); isDir(d) && !ownedBySystemd(d) {
			if err := writeFile(d+"/net_cls.classid", strconv.FormatUint(uint64(l.NetClassID), 10)); err != nil {
				return limitErr("net_cls classid", err)
			}
		}
	}
	if !active {
		c := l
		s.mu.Lock()
		s.pending[first] = &c
		s.mu.Unlock()
		return nil
	}
	scope := s.ScopeName(first)
	if err := s.call(func(ctx context.Context, c SystemdConn) error {
		return c.SetUnitPropertiesContext(ctx, scope, true, props...)
	}); err != nil {
		return fmt.Errorf("set properties of %s: %w", scope, err)
	}
	if old := s.v.reg.policy(first); old != normPolicy(l.CPUPolicy) {
		pids, err := readPidsOf(s.v.dir("freezer", first))
		if err == nil {
			err = setSched(pids, normPolicy(l.CPUPolicy))
		}
		if err != nil {
			return &api.Error{Code: api.NotSupported, Msg: "cpu_policy: " + err.Error(), Err: err}
		}
	}
	s.v.reg.setApplied(first, &l)
	return nil
}

// Remove removes the container's cgroups. For a first-level container it
// removes porto's sub-cgroups, stops the scope (systemd removes its
// cgroups), resets it if it failed, and removes porto's own scope-level
// cgroups.
func (s *Systemd) Remove(name string) error {
	n, err := cleanName(name)
	if err != nil {
		return err
	}
	if n == "" {
		var errs []error
		for _, h := range s.v.hiers {
			d := h.mount + "/" + s.slice
			if isDir(d) && !ownedBySystemd(d) {
				ents, _ := os.ReadDir(d)
				for _, e := range ents {
					if e.IsDir() {
						errs = append(errs, fmt.Errorf("%s still has %s", d, e.Name()))
					}
				}
				if err := rmdirRetry(d, time.Now().Add(busyWait)); err != nil {
					errs = append(errs, err)
				}
			}
		}
		return errors.Join(errs...)
	}
	first, rest, _ := strings.Cut(n, "/")
	defer s.lock(first)()
	s.mu.Lock()
	for k := range s.pending {
		if k == n || strings.HasPrefix(k, n+"/") {
			delete(s.pending, k)
		}
	}
	s.mu.Unlock()
	if rest != "" {
		return s.v.Remove(n)
	}
	deadline := time.Now().Add(busyWait)
	var errs []error
	// porto's sub-cgroups first, in every hierarchy.
	for _, h := range s.v.hiers {
		d := s.v.hpath(h, n)
		ents, err := os.ReadDir(d)
		if err != nil {
			continue
		}
		for _, e := range ents {
			if e.IsDir() {
				if err := rmdirTree(d+"/"+e.Name(), deadline); err != nil {
					errs = append(errs, busyPids(d+"/"+e.Name(), err))
				}
			}
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("remove cgroups of %q: %w", n, errors.Join(errs...))
	}
	scope := s.ScopeName(first)
	if s.scopeActive(first) {
		err := s.runJob(scope, func(ctx context.Context, c SystemdConn, ch chan<- string) (int, error) {
			return c.StopUnitContext(ctx, scope, "replace", ch)
		})
		if err != nil && !isDBusError(err, "org.freedesktop.systemd1.NoSuchUnit") {
			return fmt.Errorf("stop scope %s: %w", scope, err)
		}
	}
	s.call(func(ctx context.Context, c SystemdConn) error { return c.ResetFailedUnitContext(ctx, scope) })
	// The scope is gone: what is left at its path is porto's own, or an
	// empty cgroup systemd could not remove yet (memcg offlining).
	for _, h := range s.v.hiers {
		d := s.v.hpath(h, n)
		if err := rmdirRetry(d, deadline); err != nil {
			errs = append(errs, busyPids(d, err))
		}
	}
	s.v.reg.forget(n)
	s.unwatchOOM(first)
	if len(errs) > 0 {
		return fmt.Errorf("remove cgroups of %q: %w", n, errors.Join(errs...))
	}
	return nil
}

// Procs lists every process in the container's subtree.
func (s *Systemd) Procs(name string) ([]int, error) { return s.v.Procs(name) }

// Kill freezes, signals and thaws the subtree (freezer is porto's own).
func (s *Systemd) Kill(name string, sig syscall.Signal) error { return s.v.Kill(name, sig) }

// Freeze freezes the subtree through porto's own freezer cgroups.
func (s *Systemd) Freeze(name string) error { return s.v.Freeze(name) }

// Thaw thaws the subtree.
func (s *Systemd) Thaw(name string) error { return s.v.Thaw(name) }

// Frozen reports whether the container is frozen.
func (s *Systemd) Frozen(name string) (bool, error) {
	s.watchRestored(name)
	return s.v.Frozen(name)
}

// watchRestored starts the OOM watch of a running first-level container
// that an earlier porto process started (the service reconciles every
// restored container through Frozen or Stats).
func (s *Systemd) watchRestored(name string) {
	if n, err := cleanName(name); err == nil && n != "" && !strings.Contains(n, "/") {
		s.watchOOM(n)
	}
}

// Exists reports whether the container's (freezer) cgroup exists.
func (s *Systemd) Exists(name string) bool { return s.v.Exists(name) }

// OOMKills is Stats(name).OOMKills, read alone: the kernel's count, or
// for a first-level container the OOMs its watch saw if more (systemd may
// have removed the scope's memory cgroup already).
func (s *Systemd) OOMKills(name string) (uint64, error) {
	s.watchRestored(name)
	k, err := s.v.OOMKills(name)
	n, cerr := cleanName(name)
	if cerr != nil || n == "" || strings.Contains(n, "/") {
		return k, err
	}
	wait := time.Second
	if isDir(s.v.dir("memory", n)) {
		wait = 0
	}
	return max(k, s.oomCount(n, wait)), nil
}

// Stats reads the counters (reading systemd's cgroups is allowed). A
// first-level container whose scope has not started, or has stopped and
// been cleaned up by systemd, has only porto's own counters.
func (s *Systemd) Stats(name string) (Stats, error) {
	s.watchRestored(name)
	st, err := s.v.Stats(name)
	if err == nil {
		return st, nil
	}
	n, cerr := cleanName(name)
	if cerr != nil || n == "" || !s.v.Exists(n) {
		return st, err
	}
	first, _, _ := strings.Cut(n, "/")
	if s.scopeActive(first) {
		return st, err
	}
	// The scope is gone or going: systemd removes its cgroups one
	// hierarchy after the other. What is left, and the OOMs seen by the
	// watch (whose removal signal may still be in flight in the kernel).
	var part Stats
	part.CPUUsage, _ = readUint(s.v.dir("cpuacct", n) + "/cpuacct.usage")
	if pids, perr := readProcs(s.v.dir("freezer", n)); perr == nil {
		part.ProcessCount = uint64(len(pids))
	}
	part.OOMKills, _ = s.OOMKills(n)
	return part, nil
}
