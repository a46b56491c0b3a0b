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

// v2Wanted are the controllers porto enables for its subtree, when the
// kernel offers them.
var v2Wanted = []string{"cpu", "memory", "pids", "io", "cpuset"}

// v2Required must be available.
var v2Required = []string{"cpu", "memory", "pids"}

// leafName is the child cgroup that holds a container's own processes.
// cgroup v2 lets a cgroup either hold processes or distribute domain
// controllers to children, not both (the no-internal-process rule), and a
// porto container may have both processes and child containers. So the
// container's cgroup distributes, and its processes live in this leaf.
// Escaped container names never contain '.', so it cannot collide with
// a child container.
const leafName = ".self"

// V2 is the cgroup v2 driver: container "a/b" is <MountRoot>/<Root>/a/b
// on the unified hierarchy, its processes in <...>/a/b/.self.
type V2 struct {
	opts  Options
	log   *slog.Logger
	root  string   // MountRoot/Root
	ctrls []string // controllers enabled in porto's subtree
	reg   registry
	ncls  *netCls // Options.NetCls, or nil

	freezeTimeout time.Duration
}

// NewV2 sets up porto's subtree on the unified hierarchy at
// opts.MountRoot: it enables the controllers porto needs in the mount
// root's cgroup.subtree_control if they are not already (the only write
// porto makes outside its own subtree, and only one that adds), creates
// <Root> and enables them there.
func NewV2(opts Options) (*V2, error) {
	if err := opts.fill(); err != nil {
		return nil, err
	}
	v := &V2{opts: opts, log: opts.Log, root: filepath.Join(opts.MountRoot, opts.Root), freezeTimeout: freezeTimeout}
	b, err := readFile(filepath.Join(opts.MountRoot, "cgroup.controllers"))
	if err != nil {
		return nil, fmt.Errorf("cgroup v2 at %s: %w", opts.MountRoot, err)
	}
	avail := strings.Fields(string(b))
	for _, c := range v2Wanted {
		if slices.Contains(avail, c) {
			v.ctrls = append(v.ctrls, c)
		}
	}
	var missing []string
	for _, c := range v2Required {
		if !slices.Contains(v.ctrls, c) {
			missing = append(missing, c)
		}
	}
	if len(missing) > 0 {
		return nil, api.Errorf(api.NotSupported, "cgroup v2 controllers not available at %s: %s", opts.MountRoot, strings.Join(missing, ", "))
	}
	if err := v.enable(opts.MountRoot, true); err != nil {
		return nil, err
	}
	created, err := claimRoot(v.root)
	if err != nil {
		return nil, err
	}
	if created {
		v.log.Info("created porto cgroup root", "path", v.root)
	}
	if err := v.enable(v.root, false); err != nil {
		return nil, err
	}
	if opts.NetCls != "" {
		if v.ncls, err = newNetCls(opts.NetCls, opts.Root); err != nil {
			return nil, err
		}
	}
	return v, nil
}

// enable writes the controllers of v.ctrls missing from dir's
// cgroup.subtree_control.
func (v *V2) enable(dir string, log bool) error {
	b, err := readFile(dir + "/cgroup.subtree_control")
	if err != nil {
		return err
	}
	have := strings.Fields(strings.ReplaceAll(string(b), "+", ""))
	var add []string
	for _, c := range v.ctrls {
		if !slices.Contains(have, c) {
			add = append(add, "+"+c)
		}
	}
	if len(add) == 0 {
		return nil
	}
	if log {
		v.log.Info("enabling cgroup controllers", "path", dir, "controllers", add)
	}
	if err := writeFile(dir+"/cgroup.subtree_control", strings.Join(add, " ")); err != nil {
		return fmt.Errorf("enable controllers %v: %w", add, err)
	}
	return nil
}

// ioWeightFile is the weight file of cgroup dir that acts: io.weight where
// io.cost.qos enables iocost, else io.bfq.weight where a disk runs bfq.
// Without one it says why. It reads the root's io.cost.qos and the disks'
// schedulers, so Apply asks only when io_policy is batch or changes.
func (v *V2) ioWeightFile(d string) (file, why string) {
	if exists(d+"/io.weight") && iocostEnabled(v.opts.MountRoot) {
		return d + "/io.weight", ""
	}
	if exists(d + "/io.bfq.weight") {
		ok, scheds := bfqWeightsWork(v.opts.BlockRoot)
		if ok {
			return d + "/io.bfq.weight", ""
		}
		return "", "iocost is not enabled (io.cost.qos) and io.bfq.weight acts only on disks whose I/O scheduler is bfq, and none is (" + scheds + ")"
	}
	if exists(d + "/io.weight") {
		return "", "io.weight acts only where iocost is enabled, and io.cost.qos enables it for no device"
	}
	return "", "no io.weight or io.bfq.weight; the block device's scheduler has no proportional weights"
}

// iocostEnabled reports whether the root's io.cost.qos enables iocost for
// some device ("8:0 enable=1 ctrl=auto ...").
func iocostEnabled(mount string) bool {
	b, err := readFile(mount + "/io.cost.qos")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if slices.Contains(strings.Fields(line), "enable=1") {
			return true
		}
	}
	return false
}

// Version reports CgroupV2.
func (v *V2) Version() Version { return CgroupV2 }

// Controllers lists the controllers enabled in porto's subtree.
func (v *V2) Controllers() []string { return slices.Clone(v.ctrls) }

// Path is the container's cgroup directory; "" or "/" is porto's root.
func (v *V2) Path(name string) string {
	n, err := cleanName(name)
	if err != nil {
		return ""
	}
	return v.dir(n)
}

func (v *V2) dir(n string) string {
	if n == "" {
		return v.root
	}
	return v.root + "/" + EscapeName(n)
}

// Create makes the container's cgroup, enables porto's controllers for its
// children and makes its process leaf. It is idempotent.
func (v *V2) Create(name string) error {
	n, err := cleanName(name)
	if err != nil || n == "" {
		return err
	}
	d := v.dir(n)
	created, err := mkdir(d)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("create cgroup of %q: parent missing: %w", n, err)
		}
		return fmt.Errorf("create cgroup of %q: %w", n, err)
	}
	if err := v.enable(d, false); err != nil {
		if created {
			unix.Rmdir(d)
		}
		return fmt.Errorf("create cgroup of %q: %w", n, err)
	}
	_, err = mkdir(d + "/" + leafName)
	if err == nil && v.ncls != nil {
		var nc bool
		if nc, err = v.ncls.create(n); err == nil && created && !nc {
			// A leftover with a stale classid: reset it.
			err = v.ncls.setClass(n, 0)
		}
	}
	if err != nil {
		if created {
			unix.Rmdir(d + "/" + leafName)
			unix.Rmdir(d)
		}
		return fmt.Errorf("create cgroup of %q: %w", n, err)
	}
	if created {
		v.reg.setApplied(n, &Limits{})
	}
	return nil
}

// Attach moves pid into the container's process leaf: one write.
func (v *V2) Attach(name string, pid int) error {
	n, err := cleanName(name)
	if err != nil {
		return err
	}
	if err := writeFile(v.dir(n)+"/"+leafName+"/cgroup.procs", strconv.Itoa(pid)); err != nil {
		return fmt.Errorf("attach %d to %q: %w", pid, n, err)
	}
	if v.ncls != nil {
		if err := v.ncls.attach(n, strconv.Itoa(pid)); err != nil {
			return fmt.Errorf("attach %d to %q (net_cls): %w", pid, n, err)
		}
	}
	if p := v.reg.policy(n); p != "normal" && p != "idle" {
		if err := setSched([]int{pid}, p); err != nil {
			return fmt.Errorf("attach %d to %q: %w", pid, n, err)
		}
	}
	return nil
}

// Procs lists every process in the container's subtree, sorted.
func (v *V2) Procs(name string) ([]int, error) {
	n, err := cleanName(name)
	if err != nil {
		return nil, err
	}
	pids, err := readProcs(v.dir(n))
	if err != nil {
		return nil, fmt.Errorf("procs of %q: %w", n, err)
	}
	slices.Sort(pids)
	return pids, nil
}

func frozenV2(dir string) (bool, error) {
	b, err := readFile(dir + "/cgroup.events")
	if err != nil {
		return false, err
	}
	return parseKeyedString(b)["frozen"] == "1", nil
}

func freezeV2(dir string, timeout time.Duration) error {
	if err := writeFile(dir+"/cgroup.freeze", "1"); err != nil {
		return err
	}
	deadline := time.Now().Add(timeout)
	sleep := 100 * time.Microsecond
	for {
		fr, err := frozenV2(dir)
		if err != nil {
			return err
		}
		if fr {
			return nil
		}
		if time.Now().After(deadline) {
			writeFile(dir+"/cgroup.freeze", "0")
			return api.Errorf(api.Busy, "freezing %s timed out after %v", dir, timeout)
		}
		time.Sleep(sleep)
		sleep = min(2*sleep, 10*time.Millisecond)
	}
}

// Freeze freezes the subtree and waits (bounded) until cgroup.events says
// frozen. On timeout it is thawed again and an error returned.
func (v *V2) Freeze(name string) error {
	n, err := cleanName(name)
	if err != nil {
		return err
	}
	if n == "" {
		return api.Errorf(api.InvalidValue, "cannot freeze porto's root cgroup")
	}
	return freezeV2(v.dir(n), v.freezeTimeout)
}

// Thaw thaws the container (it stays frozen if an ancestor is frozen).
func (v *V2) Thaw(name string) error {
	n, err := cleanName(name)
	if err != nil || n == "" {
		return err
	}
	return writeFile(v.dir(n)+"/cgroup.freeze", "0")
}

// Frozen reports whether the container is frozen, by itself or by an
// ancestor (cgroup.events "frozen").
func (v *V2) Frozen(name string) (bool, error) {
	n, err := cleanName(name)
	if err != nil || n == "" {
		return false, err
	}
	return frozenV2(v.dir(n))
}

func selfFrozenV2(dir string) bool {
	b, err := readFile(dir + "/cgroup.freeze")
	return err == nil && strings.TrimSpace(string(b)) == "1"
}

// Kill signals every process of the subtree. SIGKILL uses cgroup.kill
// where the kernel has it (5.14+), which cannot miss a forking process;
// otherwise the subtree is frozen, signalled and thawed as on v1.
func (v *V2) Kill(name string, sig syscall.Signal) error {
	n, err := cleanName(name)
	if err != nil {
		return err
	}
	if n == "" {
		return api.Errorf(api.InvalidValue, "cannot kill porto's root cgroup")
	}
	dir := v.dir(n)
	if !isDir(dir) {
		return fmt.Errorf("kill %q: %w", n, fs.ErrNotExist)
	}
	if sig == syscall.SIGKILL && exists(dir+"/cgroup.kill") {
		return writeFile(dir+"/cgroup.kill", "1")
	}
	was := selfFrozenV2(dir)
	if !was {
		if ferr := freezeV2(dir, v.freezeTimeout); ferr != nil {
			v.log.Warn("kill: freezing failed, signalling anyway", "container", n, "err", ferr)
		}
	}
	kerr := signalAll(dir, sig)
	var terr error
	if sig == syscall.SIGKILL {
		dirs, err := subdirs(dir)
		if err != nil {
			terr = err
		}
		for i, d := range dirs {
			if i == 0 || selfFrozenV2(d) {
				if err := writeFile(d+"/cgroup.freeze", "0"); err != nil && !errors.Is(err, fs.ErrNotExist) {
					terr = errors.Join(terr, err)
				}
			}
		}
	} else if !was {
		terr = writeFile(dir+"/cgroup.freeze", "0")
	}
	return errors.Join(kerr, terr)
}

// Remove removes the container's cgroup, leaf and children first. A
// missing cgroup is fine; EBUSY is retried briefly, then reported with
// the pids still inside. Remove("/") removes porto's root.
func (v *V2) Remove(name string) error {
	n, err := cleanName(name)
	if err != nil {
		return err
	}
	d := v.dir(n)
	deadline := time.Now().Add(busyWait)
	err = rmdirTree(d, deadline)
	v.reg.forget(n)
	if err != nil {
		return fmt.Errorf("remove cgroup of %q: %w", name, busyPids(d, err))
	}
	if v.ncls != nil {
		if err := v.ncls.remove(n, deadline); err != nil {
			return fmt.Errorf("remove net_cls cgroup of %q: %w", name, err)
		}
	}
	return nil
}

// Exists reports whether the container's cgroup exists.
func (v *V2) Exists(name string) bool {
	n, err := cleanName(name)
	if err != nil {
		return false
	}
	return isDir(v.dir(n))
}

// OOMKills reads oom_kill of memory.events (hierarchical on v2).
func (v *V2) OOMKills(name string) (uint64, error) {
	n, err := cleanName(name)
	if err != nil {
		return 0, err
	}
	b, err := readFile(v.dir(n) + "/memory.events")
	if err != nil {
		return 0, err
	}
	return parseKeyed(b)["oom_kill"], nil
}

// Stats reads the container's counters; on v2 every file read is
// hierarchical already.
func (v *V2) Stats(name string) (Stats, error) {
	var st Stats
	n, err := cleanName(name)
	if err != nil {
		return st, err
	}
	d := v.dir(n)
	if !isDir(d) {
		return st, fmt.Errorf("stats of %q: %w", n, fs.ErrNotExist)
	}
	var errs []error
	if b, err := readFile(d + "/cpu.stat"); err == nil {
		st.CPUUsage = parseKeyed(b)["usage_usec"] * 1000
	} else {
		errs = append(errs, err)
	}
	if x, err := readUint(d + "/memory.current"); err == nil {
		st.MemoryUsage = x
	} else {
		errs = append(errs, err)
	}
	if x, err := readUint(d + "/memory.peak"); err == nil { // Linux 5.19+
		st.MaxRSS = x
	}
	if b, err := readFile(d + "/memory.stat"); err == nil {
		m := parseKeyed(b)
		st.MajorFaults = m["pgmajfault"]
		if pf := m["pgfault"]; pf > st.MajorFaults {
			st.MinorFaults = pf - st.MajorFaults
		}
	} else {
		errs = append(errs, err)
	}
	if b, err := readFile(d + "/memory.events"); err == nil {
		st.OOMKills = parseKeyed(b)["oom_kill"]
	} else {
		errs = append(errs, err)
	}
	if b, err := readFile(d + "/io.stat"); err == nil {
		st.IORead, st.IOWrite = parseIOStat(b)
	}
	if x, err := readUint(d + "/pids.current"); err == nil {
		st.ThreadCount = x
	} else {
		errs = append(errs, err)
	}
	if pids, err := readProcs(d); err == nil {
		st.ProcessCount = uint64(len(pids))
	} else {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return st, fmt.Errorf("stats of %q: %w", n, errors.Join(errs...))
	}
	return st, nil
}

// Apply writes the container's limits (see V1.Apply): everything is
// checked first, and a limit the kernel cannot apply is NotSupported with
// the reason, before anything is written.
func (v *V2) Apply(name string, l Limits) (err error) {
	n, err := cleanName(name)
	if err != nil {
		return err
	}
	if n == "" {
		return api.Errorf(api.InvalidValue, "cannot set limits on porto's root cgroup")
	}
	d := v.dir(n)
	if !isDir(d) {
		return fmt.Errorf("apply limits to %q: %w", n, fs.ErrNotExist)
	}
	if _, err = validateLimits(&l); err != nil {
		return err
	}
	p := normPolicy(l.CPUPolicy)
	var ns notSupported
	if l.RechargeOnPgfault {
		ns.add("recharge_on_pgfault: mainline kernels have no memory.recharge_on_pgfault")
	}
	if l.Devices != nil {
		ns.add("devices: cgroup v2 has no devices controller; device rules need a BPF_CGROUP_DEVICE program, which porto does not load")
	}
	if p == "idle" && !exists(d+"/cpu.idle") {
		ns.add("cpu_policy=idle: this kernel has no cpu.idle")
	}
	var devs []string
	if l.IOLimit > 0 {
		devs = blockDevices(v.opts.BlockRoot)
		switch {
		case !exists(d + "/io.max"):
			ns.add("io_limit: the io controller is not enabled (no io.max)")
		case len(devs) == 0:
			ns.add("io_limit: io.max needs a block device and none was found in %s", v.opts.BlockRoot)
		}
	}
	if l.IOPolicy == "batch" {
		if _, why := v.ioWeightFile(d); why != "" {
			ns.add("io_policy=batch: %s", why)
		}
	}
	if err = ns.err(); err != nil {
		return err
	}

	prev := v.reg.applied(n)
	force := prev == nil
	cur := Limits{}
	if prev != nil {
		cur = *prev
	}
	defer func() {
		if !force || err == nil {
			v.reg.setApplied(n, &cur)
		}
	}()

	if force || l.MemoryLimit != cur.MemoryLimit {
		val := "max"
		if l.MemoryLimit > 0 {
			usage, uerr := readUint(d + "/memory.current")
			if uerr != nil {
				return uerr
			}
			if l.MemoryLimit < usage {
				return api.Errorf(api.InvalidValue, "memory_limit %d is below the current memory usage %d", l.MemoryLimit, usage)
			}
			val = strconv.FormatUint(l.MemoryLimit, 10)
		}
		if err = writeFile(d+"/memory.max", val); err != nil {
			return limitErr("memory_limit", err)
		}
		cur.MemoryLimit = l.MemoryLimit
	}
	if force || l.MemoryGuarantee != cur.MemoryGuarantee {
		if err = writeFile(d+"/memory.low", strconv.FormatUint(l.MemoryGuarantee, 10)); err != nil {
			return limitErr("memory_guarantee", err)
		}
		cur.MemoryGuarantee = l.MemoryGuarantee
	}
	cur.RechargeOnPgfault = l.RechargeOnPgfault
	if force || l.CPULimit != cur.CPULimit {
		val := "max " + strconv.Itoa(cfsPeriod)
		if l.CPULimit > 0 {
			val = strconv.FormatInt(cpuQuota(l.CPULimit), 10) + " " + strconv.Itoa(cfsPeriod)
		}
		if err = writeFile(d+"/cpu.max", val); err != nil {
			return limitErr("cpu_limit", err)
		}
		cur.CPULimit = l.CPULimit
	}
	if force || l.CPUGuarantee != cur.CPUGuarantee {
		if err = writeFile(d+"/cpu.weight", strconv.FormatUint(cpuWeight(l.CPUGuarantee), 10)); err != nil {
			return limitErr("cpu_guarantee", err)
		}
		cur.CPUGuarantee = l.CPUGuarantee
	}
	if old := normPolicy(cur.CPUPolicy); force || p != old {
		if p == "idle" || ((old == "idle" || force) && exists(d+"/cpu.idle")) {
			if err = writeFile(d+"/cpu.idle", boolStr(p == "idle")); err != nil {
				return limitErr("cpu_policy", err)
			}
		}
		pids, perr := readPidsOf(d + "/" + leafName)
		if perr != nil {
			return perr
		}
		if err = setSched(pids, p); err != nil {
			return &api.Error{Code: api.NotSupported, Msg: "cpu_policy=" + p + ": " + err.Error(), Err: err}
		}
		cur.CPUPolicy = l.CPUPolicy
	}
	if force || l.PidsLimit != cur.PidsLimit {
		val := "max"
		if l.PidsLimit > 0 {
			val = strconv.FormatUint(l.PidsLimit, 10)
		}
		if err = writeFile(d+"/pids.max", val); err != nil {
			return limitErr("pids limit", err)
		}
		cur.PidsLimit = l.PidsLimit
	}
	if force || l.IOLimit != cur.IOLimit {
		if exists(d + "/io.max") {
			if devs == nil {
				devs = blockDevices(v.opts.BlockRoot)
			}
			bps := "max"
			if l.IOLimit > 0 {
				bps = strconv.FormatUint(l.IOLimit, 10)
			}
			for _, dev := range devs {
				if err = writeFile(d+"/io.max", dev+" rbps="+bps+" wbps="+bps); err != nil {
					return limitErr("io_limit", err)
				}
			}
		}
		cur.IOLimit = l.IOLimit
	}
	if force || normPolicy(l.IOPolicy) != normPolicy(cur.IOPolicy) {
		if weightFile, _ := v.ioWeightFile(d); weightFile != "" {
			w := "default 100"
			if l.IOPolicy == "batch" {
				w = "default 10"
			}
			if err = writeFile(weightFile, w); err != nil {
				return limitErr("io_policy", err)
			}
		}
		cur.IOPolicy = l.IOPolicy
	}
	if force || l.NetClassID != cur.NetClassID {
		if v.ncls != nil {
			if err = v.ncls.setClass(n, l.NetClassID); err != nil {
				return limitErr("net_cls classid", err)
			}
		}
		cur.NetClassID = l.NetClassID
	}
	return nil
}
