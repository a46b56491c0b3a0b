package units

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/porto-dev/porto/api"
)

// v1Controllers are the hierarchies a container lives in, in the order
// they are created and attached. A missing optional one is skipped.
var v1Controllers = []string{"freezer", "memory", "cpu", "cpuacct", "pids", "devices", "blkio", "cpuset", "net_cls"}

// v1Required must be mounted.
var v1Required = []string{"freezer", "memory", "cpu", "cpuacct", "pids"}

// hierarchy is one mounted v1 hierarchy (several controllers may share it).
type hierarchy struct {
	ctrls []string
	mount string // the hierarchy's mount point, symlinks resolved
	root  string // mount/<Root>
}

func (h *hierarchy) has(ctrl string) bool { return slices.Contains(h.ctrls, ctrl) }

// V1 is the cgroup v1 driver: container "a/b" lives at
// <MountRoot>/<controller>/<Root>/a/b in every hierarchy of
// v1Controllers that is mounted.
type V1 struct {
	opts  Options
	log   *slog.Logger
	hiers []*hierarchy          // deduplicated, in v1Controllers order
	by    map[string]*hierarchy // controller -> hierarchy
	reg   registry

	freezeTimeout time.Duration
	// rel, set by the systemd driver, maps a container name to its
	// directory relative to each hierarchy's mount point.
	rel func(n string) string
}

// NewV1 finds the v1 hierarchies under opts.MountRoot and creates porto's
// subtree root in each.
func NewV1(opts Options) (*V1, error) {
	if err := opts.fill(); err != nil {
		return nil, err
	}
	v, err := discoverV1(opts)
	if err != nil {
		return nil, err
	}
	var made []string
	for _, h := range v.hiers {
		created, err := claimRoot(h.root)
		if err != nil {
			return nil, err
		}
		if created {
			made = append(made, h.root)
		}
		if h.has("cpuset") {
			if err := copyCpuset(h.mount, h.root, created); err != nil {
				return nil, err
			}
			// The kernel then fills cpuset.cpus/mems of every new
			// cgroup below from its parent (the flag is inherited), as
			// copyCpuset would: without the write to cpuset.cpus, which
			// rebuilds the scheduler domains by walking every cpuset
			// (0.06 ms per creation with no other cpuset, 0.76 ms with
			// 4000; bench/, docs/performance.md). Best effort: Create
			// falls back to copying.
			if err := writeFile(filepath.Join(h.root, "cgroup.clone_children"), "1"); err != nil {
				v.log.Warn("cannot set cgroup.clone_children on porto's cpuset root; copying cpuset.cpus/mems at every creation", "err", err)
			}
		}
	}
	if len(made) > 0 {
		v.log.Info("created porto's cgroups", "paths", made)
	}
	return v, nil
}

// discoverV1 finds the mounted hierarchies; it creates nothing.
func discoverV1(opts Options) (*V1, error) {
	v := &V1{opts: opts, log: opts.Log, by: make(map[string]*hierarchy), freezeTimeout: freezeTimeout}
	byMount := make(map[string]*hierarchy)
	for _, c := range v1Controllers {
		p := filepath.Join(opts.MountRoot, c)
		if c == "net_cls" && opts.NetCls != "" {
			p = opts.NetCls
		}
		if !exists(filepath.Join(p, "cgroup.procs")) {
			continue
		}
		real, err := filepath.EvalSymlinks(p)
		if err != nil {
			return nil, err
		}
		h := byMount[real]
		if h == nil {
			h = &hierarchy{mount: real, root: filepath.Join(real, opts.Root)}
			byMount[real] = h
			v.hiers = append(v.hiers, h)
		}
		h.ctrls = append(h.ctrls, c)
		v.by[c] = h
	}
	var missing []string
	for _, c := range v1Required {
		if v.by[c] == nil {
			missing = append(missing, c)
		}
	}
	if len(missing) > 0 {
		return nil, api.Errorf(api.NotSupported, "cgroup v1 hierarchies not mounted under %s: %s", opts.MountRoot, strings.Join(missing, ", "))
	}
	return v, nil
}

// Version reports CgroupV1.
func (v *V1) Version() Version { return CgroupV1 }

// Controllers lists the mounted controllers the driver uses.
func (v *V1) Controllers() []string {
	var out []string
	for _, c := range v1Controllers {
		if v.by[c] != nil {
			out = append(out, c)
		}
	}
	return out
}

// Path is the directory of container name in controller's hierarchy ("" if
// that controller is not mounted). The name "" or "/" is porto's root.
func (v *V1) Path(name, controller string) string {
	h := v.by[controller]
	if h == nil {
		return ""
	}
	n, err := cleanName(name)
	if err != nil {
		return ""
	}
	return v.hpath(h, n)
}

// hpath is the directory of container n in hierarchy h: under porto's
// Root, or where the systemd driver's layout puts it.
func (v *V1) hpath(h *hierarchy, n string) string {
	if v.rel != nil {
		return h.mount + "/" + v.rel(n)
	}
	return h.path(n)
}

func (h *hierarchy) path(name string) string {
	if name == "" {
		return h.root
	}
	return h.root + "/" + EscapeName(name)
}

func (v *V1) dir(ctrl, name string) string { return v.hpath(v.by[ctrl], name) }

// copyCpuset copies cpuset.cpus and cpuset.mems from parent to a new
// cpuset cgroup (cgroup.clone_children is off by default, and a cpuset
// with no cpus cannot take tasks). An existing cgroup is fixed only if
// empty.
func copyCpuset(parent, dir string, created bool) error {
	for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
		if !created {
			if b, err := readFile(filepath.Join(dir, f)); err == nil && strings.TrimSpace(string(b)) != "" {
				continue
			}
		}
		b, err := readFile(filepath.Join(parent, f))
		if err != nil {
			return err
		}
		val := strings.TrimSpace(string(b))
		if val == "" {
			continue
		}
		if err := writeFile(filepath.Join(dir, f), val); err != nil {
			return err
		}
	}
	return nil
}

// clonedCpuset reports whether the kernel filled the new cpuset cgroup dir
// from its parent (cgroup.clone_children of the parent, see NewV1): its
// cpuset.cpus is set. cpus and mems are cloned together.
func clonedCpuset(dir string) bool {
	b, err := readFile(filepath.Join(dir, "cpuset.cpus"))
	return err == nil && strings.TrimSpace(string(b)) != ""
}

// Create makes the container's cgroup in every hierarchy. Its parent must
// exist. It is idempotent; if a hierarchy fails, the cgroups made by this
// call are removed again.
func (v *V1) Create(name string) error {
	n, err := cleanName(name)
	if err != nil || n == "" {
		return err
	}
	var made []string
	fresh := true
	for _, h := range v.hiers {
		d := v.hpath(h, n)
		created, err := mkdir(d)
		if err == nil && created && h.has("cpuset") && !clonedCpuset(d) {
			if err = copyCpuset(filepath.Dir(d), d, true); err != nil {
				made = append(made, d)
			}
		}
		if err != nil {
			for _, m := range made {
				unix.Rmdir(m)
			}
			if errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("create cgroup of %q: parent missing: %w", n, err)
			}
			return fmt.Errorf("create cgroup of %q: %w", n, err)
		}
		if created {
			made = append(made, d)
		} else {
			fresh = false
		}
	}
	if fresh {
		// A new cgroup has the kernel's defaults: nothing to write for
		// limits that stay at zero.
		v.reg.setApplied(n, &Limits{})
	}
	return nil
}

// Attach moves pid (its whole thread group) into the container's cgroup of
// every hierarchy: one write to cgroup.procs each, nothing else, unless
// the container has a per-task cpu_policy (batch, rt).
func (v *V1) Attach(name string, pid int) error {
	n, err := cleanName(name)
	if err != nil {
		return err
	}
	s := strconv.Itoa(pid)
	for _, h := range v.hiers {
		if err := writeFile(v.hpath(h, n)+"/cgroup.procs", s); err != nil {
			return fmt.Errorf("attach %d to %q: %w", pid, n, err)
		}
	}
	if p := v.reg.policy(n); p != "normal" && p != "idle" {
		if err := setSched([]int{pid}, p); err != nil {
			return fmt.Errorf("attach %d to %q: %w", pid, n, err)
		}
	}
	return nil
}

// Procs lists every process in the container's subtree (freezer
// hierarchy), sorted.
func (v *V1) Procs(name string) ([]int, error) {
	n, err := cleanName(name)
	if err != nil {
		return nil, err
	}
	pids, err := readProcs(v.dir("freezer", n))
	if err != nil {
		return nil, fmt.Errorf("procs of %q: %w", n, err)
	}
	slices.Sort(pids)
	return pids, nil
}

// Freeze freezes the subtree and waits (bounded) until the kernel reports
// FROZEN. On timeout the cgroup is thawed again and an error returned.
func (v *V1) Freeze(name string) error {
	n, err := cleanName(name)
	if err != nil {
		return err
	}
	if n == "" {
		return api.Errorf(api.InvalidValue, "cannot freeze porto's root cgroup")
	}
	return freezeV1(v.dir("freezer", n), v.freezeTimeout)
}

func freezeV1(dir string, timeout time.Duration) error {
	f := dir + "/freezer.state"
	if err := writeFile(f, "FROZEN"); err != nil {
		return err
	}
	deadline := time.Now().Add(timeout)
	sleep := 100 * time.Microsecond
	for {
		b, err := readFile(f)
		if err != nil {
			return err
		}
		st := strings.TrimSpace(string(b))
		if st == "FROZEN" {
			return nil
		}
		if time.Now().After(deadline) {
			writeFile(f, "THAWED")
			return api.Errorf(api.Busy, "freezing %s timed out after %v (state %s)", dir, timeout, st)
		}
		time.Sleep(sleep)
		sleep = min(2*sleep, 10*time.Millisecond)
		// Re-writing FROZEN makes the kernel retry tasks that were busy.
		if err := writeFile(f, "FROZEN"); err != nil {
			return err
		}
	}
}

// Thaw thaws the container (tasks stay frozen if an ancestor is frozen).
func (v *V1) Thaw(name string) error {
	n, err := cleanName(name)
	if err != nil {
		return err
	}
	if n == "" {
		return nil
	}
	return writeFile(v.dir("freezer", n)+"/freezer.state", "THAWED")
}

// Frozen reports whether the container's tasks are frozen, by itself or by
// a frozen ancestor.
func (v *V1) Frozen(name string) (bool, error) {
	n, err := cleanName(name)
	if err != nil || n == "" {
		return false, err
	}
	b, err := readFile(v.dir("freezer", n) + "/freezer.state")
	if err != nil {
		return false, err
	}
	return strings.TrimSpace(string(b)) == "FROZEN", nil
}

func selfFrozenV1(dir string) bool {
	b, err := readFile(dir + "/freezer.self_freezing")
	return err == nil && strings.TrimSpace(string(b)) == "1"
}

// Kill freezes the subtree so that nothing can fork away, signals every
// process in it and thaws it. A container that was frozen before stays
// frozen (its signals are delivered when it is thawed) unless sig is
// SIGKILL: then the whole subtree is thawed so that the processes die.
func (v *V1) Kill(name string, sig syscall.Signal) error {
	n, err := cleanName(name)
	if err != nil {
		return err
	}
	if n == "" {
		return api.Errorf(api.InvalidValue, "cannot kill porto's root cgroup")
	}
	dir := v.dir("freezer", n)
	if !isDir(dir) {
		return fmt.Errorf("kill %q: %w", n, fs.ErrNotExist)
	}
	was := selfFrozenV1(dir)
	var ferr error
	if !was {
		ferr = freezeV1(dir, v.freezeTimeout)
		if ferr != nil {
			v.log.Warn("kill: freezing failed, signalling anyway", "container", n, "err", ferr)
		}
	}
	kerr := signalAll(dir, sig)
	var terr error
	if sig == syscall.SIGKILL {
		terr = thawTreeV1(dir)
	} else if !was {
		terr = writeFile(dir+"/freezer.state", "THAWED")
	}
	return errors.Join(kerr, terr)
}

func signalAll(dir string, sig syscall.Signal) error {
	pids, err := readProcs(dir)
	if err != nil {
		return err
	}
	for _, p := range pids {
		if err := unix.Kill(p, sig); err != nil && err != unix.ESRCH {
			return fmt.Errorf("kill %d: %w", p, err)
		}
	}
	return nil
}

// thawTreeV1 thaws dir and every self-frozen cgroup below it.
func thawTreeV1(dir string) error {
	dirs, err := subdirs(dir)
	if err != nil {
		return err
	}
	var errs []error
	for i, d := range dirs {
		if i == 0 || selfFrozenV1(d) {
			if err := writeFile(d+"/freezer.state", "THAWED"); err != nil && !errors.Is(err, fs.ErrNotExist) {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// Remove removes the container's cgroups, children first, in every
// hierarchy. A missing cgroup is fine; EBUSY is retried briefly and then
// reported with the pids still inside. Remove("/") removes porto's root.
func (v *V1) Remove(name string) error {
	n, err := cleanName(name)
	if err != nil {
		return err
	}
	var errs []error
	deadline := time.Now().Add(busyWait)
	// Real-time runtime reserved in this subtree (cpu_policy=rt) is
	// handed back to the ancestors once the cgroups are gone.
	var rt uint64
	if n != "" && v.rel == nil {
		rt, _ = readUint(v.dir("cpu", n) + "/cpu.rt_runtime_us")
	}
	// In the reverse of Create's order: freezer, which Create makes first
	// and Exists looks at, goes last, so a Remove (or a Create) cut short
	// by a crash always leaves Exists true for the restore to clean up.
	for i := len(v.hiers) - 1; i >= 0; i-- {
		h := v.hiers[i]
		d := v.hpath(h, n)
		if err := rmdirTree(d, deadline); err != nil {
			errs = append(errs, busyPids(d, err))
		} else if h.has("cpu") && rt > 0 {
			if err := v.rtRelease(n, int64(rt)); err != nil {
				v.log.Warn("releasing real-time budget", "container", n, "err", err)
			}
		}
	}
	v.reg.forget(n)
	if len(errs) > 0 {
		return fmt.Errorf("remove cgroups of %q: %w", name, errors.Join(errs...))
	}
	return nil
}

// Exists reports whether the container's cgroup exists (freezer hierarchy).
func (v *V1) Exists(name string) bool {
	n, err := cleanName(name)
	if err != nil {
		return false
	}
	return isDir(v.dir("freezer", n))
}

// OOMKills sums oom_kill of memory.oom_control over the subtree (on v1 it
// counts the kills of that memcg's own OOMs only).
func (v *V1) OOMKills(name string) (uint64, error) {
	n, err := cleanName(name)
	if err != nil {
		return 0, err
	}
	dirs, err := subdirs(v.dir("memory", n))
	if err != nil {
		return 0, err
	}
	var kills uint64
	for _, d := range dirs {
		if b, err := readFile(d + "/memory.oom_control"); err == nil {
			kills += parseKeyed(b)["oom_kill"]
		}
	}
	return kills, nil
}

// Stats reads the container's counters; every one is hierarchical.
func (v *V1) Stats(name string) (Stats, error) {
	var st Stats
	n, err := cleanName(name)
	if err != nil {
		return st, err
	}
	if !v.Exists(n) {
		return st, fmt.Errorf("stats of %q: %w", n, fs.ErrNotExist)
	}
	var errs []error
	must := func(p string, into *uint64) {
		x, err := readUint(p)
		if err != nil {
			errs = append(errs, err)
			return
		}
		*into = x
	}
	must(v.dir("cpuacct", n)+"/cpuacct.usage", &st.CPUUsage)
	mem := v.dir("memory", n)
	must(mem+"/memory.usage_in_bytes", &st.MemoryUsage)
	must(mem+"/memory.max_usage_in_bytes", &st.MaxRSS)
	if b, err := readFile(mem + "/memory.stat"); err == nil {
		m := parseKeyed(b)
		pf, ok := m["total_pgfault"]
		if !ok {
			pf = m["pgfault"]
		}
		maj, ok := m["total_pgmajfault"]
		if !ok {
			maj = m["pgmajfault"]
		}
		st.MajorFaults = maj
		if pf > maj {
			st.MinorFaults = pf - maj
		}
	} else {
		errs = append(errs, err)
	}
	// oom_kill in memory.oom_control counts the kills of that memcg's own
	// OOMs (it is not hierarchical on v1): sum it over the subtree.
	if dirs, err := subdirs(mem); err == nil {
		for _, d := range dirs {
			if b, err := readFile(d + "/memory.oom_control"); err == nil {
				st.OOMKills += parseKeyed(b)["oom_kill"]
			}
		}
	} else {
		errs = append(errs, err)
	}
	must(v.dir("pids", n)+"/pids.current", &st.ThreadCount)
	if pids, err := readProcs(v.dir("freezer", n)); err == nil {
		st.ProcessCount = uint64(len(pids))
	} else {
		errs = append(errs, err)
	}
	if h := v.by["blkio"]; h != nil {
		d := v.hpath(h, n)
		for _, f := range []string{"blkio.io_service_bytes_recursive", "blkio.throttle.io_service_bytes_recursive", "blkio.bfq.io_service_bytes_recursive"} {
			if b, err := readFile(d + "/" + f); err == nil {
				st.IORead, st.IOWrite = parseBlkioBytes(b)
				break
			}
		}
	}
	if len(errs) > 0 {
		return st, fmt.Errorf("stats of %q: %w", n, errors.Join(errs...))
	}
	return st, nil
}

// Apply writes the container's limits. Every limit is checked first; if
// the kernel cannot apply one, nothing is written and the error is
// NotSupported naming each such limit with the reason.
func (v *V1) Apply(name string, l Limits) (err error) {
	n, err := cleanName(name)
	if err != nil {
		return err
	}
	if n == "" {
		return api.Errorf(api.InvalidValue, "cannot set limits on porto's root cgroup")
	}
	if !v.Exists(n) {
		return fmt.Errorf("apply limits to %q: %w", n, fs.ErrNotExist)
	}
	rules, err := validateLimits(&l)
	if err != nil {
		return err
	}
	mem := v.dir("memory", n)
	cpu := v.dir("cpu", n)
	var ns notSupported
	lowFile := mem + "/memory.low_limit_in_bytes"
	if l.MemoryGuarantee > 0 && !exists(lowFile) {
		ns.add("memory_guarantee: cgroup v1 in this kernel has no memory protection (memory.low_limit_in_bytes is missing; memory.low exists only in cgroup v2, and memory.soft_limit_in_bytes is a reclaim priority, not a guarantee)")
	}
	rechargeFile := mem + "/memory.recharge_on_pgfault"
	if l.RechargeOnPgfault && !exists(rechargeFile) {
		ns.add("recharge_on_pgfault: this kernel has no memory.recharge_on_pgfault")
	}
	p := normPolicy(l.CPUPolicy)
	if p == "idle" && !exists(cpu+"/cpu.idle") {
		ns.add("cpu_policy=idle: this kernel has no cpu.idle")
	}
	var devs []string
	blk := ""
	if h := v.by["blkio"]; h != nil {
		blk = v.hpath(h, n)
	}
	if l.IOLimit > 0 {
		devs = blockDevices(v.opts.BlockRoot)
		switch {
		case blk == "":
			ns.add("io_limit: the blkio hierarchy is not mounted")
		case !exists(blk + "/blkio.throttle.read_bps_device"):
			ns.add("io_limit: this kernel has no blkio throttling")
		case len(devs) == 0:
			ns.add("io_limit: blkio throttling needs a block device and none was found in %s", v.opts.BlockRoot)
		}
	}
	weightFile := ""
	if blk != "" {
		for _, f := range []string{"blkio.weight", "blkio.bfq.weight"} {
			if exists(blk + "/" + f) {
				weightFile = blk + "/" + f
				break
			}
		}
	}
	if l.IOPolicy == "batch" {
		if weightFile == "" {
			ns.add("io_policy=batch: no blkio weight (blkio.weight or blkio.bfq.weight) in this kernel; the block device's scheduler has no proportional weights")
		} else if strings.HasSuffix(weightFile, ".bfq.weight") {
			if ok, scheds := bfqWeightsWork(v.opts.BlockRoot); !ok {
				ns.add("io_policy=batch: blkio.bfq.weight acts only on disks whose I/O scheduler is bfq, and none is (%s)", scheds)
			}
		}
	}
	if l.Devices != nil && v.by["devices"] == nil {
		ns.add("devices: the devices hierarchy is not mounted")
	}
	if err := ns.err(); err != nil {
		return err
	}

	prev := v.reg.applied(n)
	force := prev == nil // unknown state: write everything
	cur := Limits{}
	if prev != nil {
		cur = *prev
	}
	defer func() {
		if force {
			// Fields not reached stay unknown: remember nothing.
			if err == nil {
				v.reg.setApplied(n, &cur)
			}
			return
		}
		v.reg.setApplied(n, &cur)
	}()

	if force || l.MemoryLimit != cur.MemoryLimit {
		val := "-1"
		if l.MemoryLimit > 0 {
			usage, uerr := readUint(mem + "/memory.usage_in_bytes")
			if uerr != nil {
				return uerr
			}
			if l.MemoryLimit < usage {
				return api.Errorf(api.InvalidValue, "memory_limit %d is below the current memory usage %d", l.MemoryLimit, usage)
			}
			val = strconv.FormatUint(l.MemoryLimit, 10)
		}
		if err = writeFile(mem+"/memory.limit_in_bytes", val); err != nil {
			return limitErr("memory_limit", err)
		}
		cur.MemoryLimit = l.MemoryLimit
	}
	if force || l.MemoryGuarantee != cur.MemoryGuarantee {
		if exists(lowFile) {
			if err = writeFile(lowFile, strconv.FormatUint(l.MemoryGuarantee, 10)); err != nil {
				return limitErr("memory_guarantee", err)
			}
		}
		cur.MemoryGuarantee = l.MemoryGuarantee
	}
	if force || l.RechargeOnPgfault != cur.RechargeOnPgfault {
		if exists(rechargeFile) {
			if err = writeFile(rechargeFile, boolStr(l.RechargeOnPgfault)); err != nil {
				return limitErr("recharge_on_pgfault", err)
			}
		}
		cur.RechargeOnPgfault = l.RechargeOnPgfault
	}
	if force || l.CPULimit != cur.CPULimit {
		if force {
			if err = writeFile(cpu+"/cpu.cfs_period_us", strconv.Itoa(cfsPeriod)); err != nil {
				return limitErr("cpu_limit", err)
			}
		}
		val := "-1"
		if l.CPULimit > 0 {
			val = strconv.FormatInt(cpuQuota(l.CPULimit), 10)
		}
		if err = writeFile(cpu+"/cpu.cfs_quota_us", val); err != nil {
			return limitErr("cpu_limit", err)
		}
		cur.CPULimit = l.CPULimit
	}
	if force || l.CPUGuarantee != cur.CPUGuarantee {
		if err = writeFile(cpu+"/cpu.shares", strconv.FormatUint(cpuShares(l.CPUGuarantee), 10)); err != nil {
			return limitErr("cpu_guarantee", err)
		}
		cur.CPUGuarantee = l.CPUGuarantee
	}
	if old := normPolicy(cur.CPUPolicy); force || p != old {
		if force {
			old = "?"
		}
		if err = v.applyPolicy(n, old, p); err != nil {
			return err
		}
		cur.CPUPolicy = l.CPUPolicy
	}
	if force || l.PidsLimit != cur.PidsLimit {
		val := "max"
		if l.PidsLimit > 0 {
			val = strconv.FormatUint(l.PidsLimit, 10)
		}
		if err = writeFile(v.dir("pids", n)+"/pids.max", val); err != nil {
			return limitErr("pids limit", err)
		}
		cur.PidsLimit = l.PidsLimit
	}
	if force || l.IOLimit != cur.IOLimit {
		if blk != "" && exists(blk+"/blkio.throttle.read_bps_device") {
			if devs == nil {
				devs = blockDevices(v.opts.BlockRoot)
			}
			for _, d := range devs {
				for _, f := range []string{"blkio.throttle.read_bps_device", "blkio.throttle.write_bps_device"} {
					if err = writeFile(blk+"/"+f, d+" "+strconv.FormatUint(l.IOLimit, 10)); err != nil {
						return limitErr("io_limit", err)
					}
				}
			}
		}
		cur.IOLimit = l.IOLimit
	}
	if force || normPolicy(l.IOPolicy) != normPolicy(cur.IOPolicy) {
		if weightFile != "" {
			w := "100"
			if l.IOPolicy == "batch" {
				w = "10"
			}
			if err = writeFile(weightFile, w); err != nil {
				return limitErr("io_policy", err)
			}
		}
		cur.IOPolicy = l.IOPolicy
	}
	if force || l.NetClassID != cur.NetClassID {
		if h := v.by["net_cls"]; h != nil {
			if err = writeFile(v.hpath(h, n)+"/net_cls.classid", strconv.FormatUint(uint64(l.NetClassID), 10)); err != nil {
				return limitErr("net_cls classid", err)
			}
		}
		cur.NetClassID = l.NetClassID
	}
	if !slices.Equal(rules, cur.Devices) || (rules == nil) != (cur.Devices == nil) || (force && rules != nil) {
		if err = v.applyDevices(n, rules, !force && cur.Devices != nil); err != nil {
			return err
		}
		cur.Devices = rules
	}
	return nil
}

func boolStr(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

// applyDevices replaces the container's device rules. nil restores the
// default (everything the parent allows) when reset is set.
func (v *V1) applyDevices(n string, rules []string, reset bool) error {
	h := v.by["devices"]
	if h == nil {
		return nil
	}
	d := v.hpath(h, n)
	if rules == nil {
		if !reset {
			return nil
		}
		if err := writeFile(d+"/devices.allow", "a"); err != nil {
			return devErr(err)
		}
		return nil
	}
	if err := writeFile(d+"/devices.deny", "a"); err != nil {
		return devErr(err)
	}
	for _, r := range rules {
		if err := writeFile(d+"/devices.allow", r); err != nil {
			return devErr(err)
		}
	}
	return nil
}

func devErr(err error) error {
	if errors.Is(err, unix.EINVAL) {
		return &api.Error{Code: api.InvalidValue, Msg: fmt.Sprintf("devices: the kernel refused it (a cgroup with child cgroups cannot change its default rule): %v", err), Err: err}
	}
	if errors.Is(err, unix.EPERM) {
		return &api.Error{Code: api.Permission, Msg: fmt.Sprintf("devices: a rule wider than the parent's was refused: %v", err), Err: err}
	}
	return limitErr("devices", err)
}

// applyPolicy moves the container from cpu_policy old to p: cpu.idle for
// idle, a real-time budget for rt, and the scheduling policy of each of
// its own tasks (new tasks inherit it; Attach sets it on the first).
func (v *V1) applyPolicy(n, old, p string) error {
	cpu := v.dir("cpu", n)
	if p == "idle" || (old == "idle" || old == "?") && exists(cpu+"/cpu.idle") {
		if err := writeFile(cpu+"/cpu.idle", boolStr(p == "idle")); err != nil {
			return limitErr("cpu_policy", err)
		}
	}
	if p == "rt" && old != "rt" {
		if err := v.rtReserve(n, rtBudget); err != nil {
			return &api.Error{Code: api.NotSupported, Msg: fmt.Sprintf("cpu_policy=rt: cannot reserve a real-time budget: %v", err), Err: err}
		}
	}
	pids, err := readPidsOf(cpu)
	if err != nil {
		return err
	}
	if err := setSched(pids, p); err != nil {
		return &api.Error{Code: api.NotSupported, Msg: "cpu_policy=" + p + ": " + err.Error(), Err: err}
	}
	if old == "rt" && p != "rt" {
		if err := v.rtReserve(n, -rtBudget); err != nil {
			v.log.Warn("releasing real-time budget", "container", n, "err", err)
		}
	}
	return nil
}

func readPidsOf(dir string) ([]int, error) {
	b, err := readFile(dir + "/cgroup.procs")
	if err != nil {
		return nil, err
	}
	return parsePids(b, nil)
}

// rtRelease subtracts val µs of real-time runtime from every ancestor of
// the (removed) container n up to porto's root, children first.
func (v *V1) rtRelease(n string, val int64) error {
	h := v.by["cpu"]
	parts := strings.Split(n, "/")
	for i := len(parts) - 1; i >= 0; i-- {
		d := h.root
		if i > 0 {
			d = v.hpath(h, strings.Join(parts[:i], "/"))
		}
		f := d + "/cpu.rt_runtime_us"
		c, err := readUint(f)
		if err != nil {
			return err
		}
		// The removed group leaves the kernel's schedulability check only
		// after an RCU grace period: retry EINVAL briefly.
		nv := strconv.FormatInt(max(int64(c)-val, 0), 10)
		deadline := time.Now().Add(time.Second)
		for {
			err = writeFile(f, nv)
			if err == nil || !errors.Is(err, unix.EINVAL) || time.Now().After(deadline) {
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// rtReserve adds delta µs of real-time runtime to the container's cgroup
// and to each of its ancestors up to porto's root (parents are raised
// first and lowered last, as the kernel requires). Without RT group
// scheduling (no cpu.rt_runtime_us) there is nothing to reserve.
func (v *V1) rtReserve(n string, delta int64) error {
	h := v.by["cpu"]
	if v.rel != nil {
		return errors.New("the real-time budget would have to be written to cgroups systemd owns")
	}
	if !exists(h.root + "/cpu.rt_runtime_us") {
		return nil
	}
	own, err := readUint(v.hpath(h, n) + "/cpu.rt_runtime_us")
	if err != nil {
		return err
	}
	if (delta > 0 && own > 0) || (delta < 0 && own == 0) {
		return nil // already reserved / nothing to release
	}
	chain := []string{h.root}
	parts := strings.Split(n, "/")
	for i := range parts {
		chain = append(chain, v.hpath(h, strings.Join(parts[:i+1], "/")))
	}
	if delta < 0 {
		slices.Reverse(chain)
	}
	for _, d := range chain {
		f := d + "/cpu.rt_runtime_us"
		b, err := readFile(f)
		if err != nil {
			return err
		}
		c, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
		if err != nil {
			return err
		}
		if err := writeFile(f, strconv.FormatInt(max(c+delta, 0), 10)); err != nil {
			return err
		}
	}
	return nil
}
