package tests

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Issue 5: limits through cgroups (root tier). Every limit is set on a real
// container and read back from the kernel's cgroup v1 files; the seed's
// meta memory_limit transcript; OOM; cpu_limit measured through cpu_usage;
// thread_limit refusing forks. The cgroup files are the v1 driver's (this
// machine has cgroup v1 only); the v2 path is unit-tested in units/.

// python is the interpreter the containers run (absolute: the containers'
// PATH has no pyenv shims).
const python = "/usr/bin/python3"

func requirePython(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(python); err != nil {
		t.Skipf("%s: %v", python, err)
	}
}

// dgetUint reads a numeric datum or property raw (dget).
func (e *Env) dgetUint(t *testing.T, name, key string) uint64 {
	t.Helper()
	v := e.Out(t, rootUser, "dget", name, key)
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		t.Fatalf("dget %s %s = %q: not a number", name, key, v)
	}
	return n
}

// waitUntil polls f every 50 ms for up to d.
func waitUntil(d time.Duration, f func() bool) bool {
	deadline := time.Now().Add(d)
	for {
		if f() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// cgFile is a control file of container name in hierarchy h.
func (e *Env) cgFile(h, name, file string) string {
	return filepath.Join(e.cgroupDir(h, name), file)
}

// schedPolicy is the scheduling policy number of pid (0 normal, 2 RR,
// 3 batch), from /proc/PID/sched.
func schedPolicy(t *testing.T, pid string) string {
	t.Helper()
	b, err := os.ReadFile("/proc/" + pid + "/sched")
	if err != nil {
		t.Fatalf("sched of %s: %v", pid, err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) == 3 && f[0] == "policy" {
			return f[2]
		}
	}
	t.Fatalf("no policy in /proc/%s/sched", pid)
	return ""
}

func TestLimits(t *testing.T) {
	e := NewEnv(t)
	root := rootUser

	// Every cgroup-backed limit set on a running container, read back from
	// the kernel, changed while running, and reset.
	t.Run("kernel-files", func(t *testing.T) {
		e.CleanupContainers(t)
		e.OK(t, root, "run", "l", "command=sleep 1000",
			"memory_limit=64M", "cpu_limit=1c", "cpu_guarantee=0.5c", "thread_limit=100", "io_limit=1M")
		mem := e.cgFile("memory", "l", "memory.limit_in_bytes")
		quota := e.cgFile("cpu", "l", "cpu.cfs_quota_us")
		shares := e.cgFile("cpu", "l", "cpu.shares")
		pids := e.cgFile("pids", "l", "pids.max")
		rbps := e.cgFile("blkio", "l", "blkio.throttle.read_bps_device")
		wbps := e.cgFile("blkio", "l", "blkio.throttle.write_bps_device")
		check := func(when string, want map[string]string) {
			t.Helper()
			for f, w := range want {
				if got := readTrim(t, f); got != w {
					t.Errorf("%s: %s = %q, want %q", when, f, got, w)
				}
			}
		}
		// Every whole disk but loop/ram/zram devices gets the io_limit;
		// vda (254:0) is this machine's.
		ioLines := func(f string) string {
			for _, l := range strings.Split(readTrim(t, f), "\n") {
				if strings.HasPrefix(l, "254:0 ") {
					return l
				}
			}
			return ""
		}
		check("at start", map[string]string{
			mem: "67108864", quota: "100000", shares: "1536", pids: "100",
			e.cgFile("cpu", "l", "cpu.cfs_period_us"): "100000",
		})
		if _, err := os.Stat("/sys/block/vda"); err == nil {
			for _, f := range []string{rbps, wbps} {
				if got := ioLines(f); got != "254:0 1048576" {
					t.Errorf("%s: vda line %q, want \"254:0 1048576\"", f, got)
				}
			}
		}
		// Dynamic: every one changes while running.
		e.OK(t, root, "set", "l", "memory_limit", "128M")
		e.OK(t, root, "set", "l", "cpu_limit", "50%") // of 2 cores here: 1c
		e.OK(t, root, "set", "l", "cpu_guarantee", "1c")
		e.OK(t, root, "set", "l", "thread_limit", "50")
		e.OK(t, root, "set", "l", "io_limit", "2M")
		ncpu := len(cpusOnline(t))
		check("after set while running", map[string]string{
			mem: "134217728", quota: strconv.Itoa(ncpu * 50000), shares: "2048", pids: "50",
		})
		if _, err := os.Stat("/sys/block/vda"); err == nil {
			if got := ioLines(wbps); got != "254:0 2097152" {
				t.Errorf("io_limit 2M: vda write line %q", got)
			}
		}
		e.Expect(t, root, strconv.FormatFloat(float64(ncpu)/2, 'f', -1, 64)+"c", "dget", "l", "cpu_limit") // "N%" is stored as cores
		// Paused: still dynamic.
		e.OK(t, root, "pause", "l")
		e.OK(t, root, "set", "l", "memory_limit", "96M")
		check("paused", map[string]string{mem: "100663296"})
		e.OK(t, root, "resume", "l")
		// 0 resets to the kernel's unlimited.
		for _, k := range []string{"memory_limit", "cpu_limit", "cpu_guarantee", "thread_limit", "io_limit"} {
			e.OK(t, root, "set", "l", k, "0")
		}
		check("after reset", map[string]string{mem: "9223372036854771712", quota: "-1", shares: "1024", pids: "max"})
		if _, err := os.Stat("/sys/block/vda"); err == nil {
			if got := ioLines(rbps); got != "" {
				t.Errorf("io_limit 0 left a throttle: %q", got)
			}
		}
		// The container lived through all of it.
		e.Expect(t, root, "running", "get", "l", "state")
	})

	// cpu_policy: idle is cpu.idle, batch is SCHED_BATCH of the tasks, rt is
	// SCHED_RR plus a real-time budget, normal undoes each.
	t.Run("cpu-policy", func(t *testing.T) {
		e.CleanupContainers(t)
		e.OK(t, root, "run", "p", "command=sleep 1000", "cpu_policy=batch")
		pid := e.Out(t, root, "get", "p", "root_pid")
		if got := schedPolicy(t, pid); got != "3" {
			t.Errorf("cpu_policy=batch: policy of %s = %s, want 3 (SCHED_BATCH)", pid, got)
		}
		idle := e.cgFile("cpu", "p", "cpu.idle")
		if _, err := os.Stat(idle); err == nil {
			e.OK(t, root, "set", "p", "cpu_policy", "idle")
			if got := readTrim(t, idle); got != "1" {
				t.Errorf("cpu_policy=idle: cpu.idle = %s", got)
			}
			if got := schedPolicy(t, pid); got != "0" {
				t.Errorf("cpu_policy=idle: policy = %s, want 0", got)
			}
		} else {
			e.FailWith(t, root, "NotSupported", "set", "p", "cpu_policy", "idle")
		}
		r := e.Ctl(root, "set", "p", "cpu_policy", "rt")
		switch {
		case r.Code == 0:
			if got := schedPolicy(t, pid); got != "2" {
				t.Errorf("cpu_policy=rt: policy = %s, want 2 (SCHED_RR)", got)
			}
			if got := readTrim(t, e.cgFile("cpu", "p", "cpu.rt_runtime_us")); got == "0" {
				t.Errorf("cpu_policy=rt: no real-time budget (cpu.rt_runtime_us = 0)")
			}
		case strings.Contains(r.Stderr, ": NotSupported (cpu_policy=rt"):
			t.Logf("cpu_policy=rt is not supported here: %s", r.Stderr)
		default:
			t.Errorf("set cpu_policy rt: %s", r)
		}
		e.OK(t, root, "set", "p", "cpu_policy", "normal")
		if got := schedPolicy(t, pid); got != "0" {
			t.Errorf("cpu_policy=normal: policy = %s, want 0", got)
		}
		if _, err := os.Stat(idle); err == nil && readTrim(t, idle) != "0" {
			t.Errorf("cpu_policy=normal left cpu.idle = %s", readTrim(t, idle))
		}
		e.FailWith(t, root, "InvalidValue", "set", "p", "cpu_policy", "fast")
	})

	// What this kernel cannot do is NotSupported with the reason, whether
	// set while running or found at start; nothing is silently dropped.
	t.Run("not-supported", func(t *testing.T) {
		e.CleanupContainers(t)
		e.OK(t, root, "run", "n", "command=sleep 1000")
		memcg := e.cgroupDir("memory", "n")
		blk := e.cgroupDir("blkio", "n")
		type ns struct{ key, val, reason, probe string }
		cases := []ns{
			{"memory_guarantee", "16M", "memory_guarantee: ", memcg + "/memory.low_limit_in_bytes"},
			{"recharge_on_pgfault", "true", "recharge_on_pgfault: ", memcg + "/memory.recharge_on_pgfault"},
			{"io_policy", "batch", "io_policy=batch: ", blk + "/blkio.weight"},
		}
		for _, c := range cases {
			if _, err := os.Stat(c.probe); err == nil {
				t.Logf("%s: this kernel has %s; not a NotSupported case here", c.key, c.probe)
				continue
			}
			if c.key == "io_policy" {
				// blkio.bfq.weight acts only on a disk bfq schedules.
				if _, err := os.Stat(blk + "/blkio.bfq.weight"); err == nil && bfqScheduled() {
					t.Logf("io_policy: a disk is scheduled by bfq; not a NotSupported case here")
					continue
				}
			}
			r := e.FailWith(t, root, "NotSupported", "set", "n", c.key, c.val)
			if !strings.Contains(r.Stderr, c.reason) {
				t.Errorf("set %s %s: no reason naming it: %s", c.key, c.val, r.Stderr)
			}
			e.Expect(t, root, map[string]string{"memory_guarantee": "0", "recharge_on_pgfault": "false", "io_policy": "normal"}[c.key],
				"dget", "n", c.key)
			// Set while stopped: kept, and the start says why it fails.
			e.OK(t, root, "create", "s")
			e.OK(t, root, "set", "s", "command", "sleep 1000")
			e.OK(t, root, "set", "s", c.key, c.val)
			r = e.FailWith(t, root, "NotSupported", "start", "s")
			if !strings.Contains(r.Stderr, c.reason) {
				t.Errorf("start with %s=%s: no reason: %s", c.key, c.val, r.Stderr)
			}
			e.Expect(t, root, "stopped", "get", "s", "state")
			e.OK(t, root, "destroy", "s")
		}
		// Traffic control is off in this env's porto.conf (network =
		// false); with it on: tests/network_test.go.
		for _, k := range []string{"net_limit", "net_guarantee", "net_priority"} {
			e.OK(t, root, "create", "s")
			r := e.FailWith(t, root, "NotSupported", "set", "s", k, "eth0: 1000")
			if !strings.Contains(r.Stderr, "network = false") {
				t.Errorf("set %s: no reason: %s", k, r.Stderr)
			}
			e.OK(t, root, "destroy", "s")
		}
	})

	// Static properties are refused while running; a dead container takes
	// no limits either.
	t.Run("static", func(t *testing.T) {
		e.CleanupContainers(t)
		e.OK(t, root, "run", "r", "command=sleep 1000")
		for _, kv := range [][2]string{{"ulimit", "nofile: 100 200"}, {"net_limit", "eth0: 1000"}, {"command", "true"}} {
			e.FailWith(t, root, "InvalidState", "set", "r", kv[0], kv[1])
		}
		e.OK(t, root, "run", "d", "command=true")
		e.WaitState(t, root, "d", "dead")
		e.FailWith(t, root, "InvalidState", "set", "d", "memory_limit", "64M")
		e.FailWith(t, root, "InvalidState", "set", "d", "ulimit", "nofile: 100 200")
	})

	// Sizes take K/M/G suffixes; get prints them humanized, dget raw.
	t.Run("sizes", func(t *testing.T) {
		e.CleanupContainers(t)
		e.OK(t, root, "create", "z")
		for _, c := range []struct{ set, raw, human string }{
			{"64M", "67108864", "64M"}, {"1G", "1073741824", "1024M"}, {"2G", "2147483648", "2G"}, {"1536K", "1572864", "1.5M"},
			{"1048576", "1048576", "1024K"}, {"1000", "1000", "1000"},
		} {
			e.OK(t, root, "set", "z", "memory_limit", c.set)
			e.Expect(t, root, c.raw, "dget", "z", "memory_limit")
			e.Expect(t, root, c.human, "get", "z", "memory_limit")
		}
		e.OK(t, root, "set", "z", "io_limit", "10M")
		e.Expect(t, root, "10485760", "dget", "z", "io_limit")
		e.Expect(t, root, "10M", "get", "z", "io_limit")
		for _, bad := range []string{"-1", "12Q", "M", "1.5.5G"} {
			e.FailWith(t, root, "InvalidValue", "set", "z", "memory_limit", bad)
		}
		e.FailWith(t, root, "InvalidValue", "set", "z", "cpu_limit", "1000c")
		e.FailWith(t, root, "InvalidValue", "set", "z", "thread_limit", "-5")
	})

	// The seed's meta transcript, checked in the kernel: the meta
	// container's memory cgroup carries the limit and holds its children.
	t.Run("seed-meta", func(t *testing.T) {
		e.CleanupContainers(t)
		//   $ portoctl create meta
		//   $ portoctl set meta memory_limit 1073741824
		//   $ portoctl run meta/child1 command="sleep 1000"
		//   $ portoctl run meta/child2 command="sleep 1000"
		//   $ portoctl get meta state
		//   meta
		e.OK(t, root, "create", "meta")
		e.OK(t, root, "set", "meta", "memory_limit", "1073741824")
		e.OK(t, root, "run", "meta/child1", "command=sleep 1000")
		e.OK(t, root, "run", "meta/child2", "command=sleep 1000")
		e.Expect(t, root, "meta", "get", "meta", "state")
		e.Expect(t, root, "running", "get", "meta/child1", "state")
		e.Expect(t, root, "running", "get", "meta/child2", "state")
		if got := readTrim(t, e.cgFile("memory", "meta", "memory.limit_in_bytes")); got != "1073741824" {
			t.Errorf("meta memory.limit_in_bytes = %s", got)
		}
		for _, c := range []string{"child1", "child2"} {
			pid, _ := strconv.Atoi(e.Out(t, root, "get", "meta/"+c, "root_pid"))
			cg := ContainerCgroups(pid)["memory"]
			if want := "/" + e.CgroupRoot + "/meta/" + c; !strings.HasPrefix(cg, want) {
				t.Errorf("meta/%s: memory cgroup %q, not under %s", c, cg, want)
			}
		}
		// portoctl divides while the value is above 1024 (ctl/human.go),
		// so exactly 1 GiB prints as 1024M.
		e.Expect(t, root, "1024M", "get", "meta", "memory_limit")
		// Dynamic on meta too.
		e.OK(t, root, "set", "meta", "memory_limit", "512M")
		if got := readTrim(t, e.cgFile("memory", "meta", "memory.limit_in_bytes")); got != "536870912" {
			t.Errorf("meta memory.limit_in_bytes after set = %s", got)
		}
		//   $ portoctl stop meta
		//   $ portoctl get meta/child1 state
		//   stopped
		e.OK(t, root, "stop", "meta")
		e.Expect(t, root, "stopped", "get", "meta/child1", "state")
		e.Expect(t, root, "stopped", "get", "meta/child2", "state")
	})

	// The hierarchical check (Porto's ValidHierarchicalProperty): a child's
	// limit may not exceed an ancestor's, the children together may not
	// exceed the parent's, a parent may not go below its children.
	t.Run("hierarchy", func(t *testing.T) {
		e.CleanupContainers(t)
		e.OK(t, root, "create", "h")
		e.OK(t, root, "set", "h", "memory_limit", "100M")
		e.OK(t, root, "create", "h/a")
		e.OK(t, root, "create", "h/a/x")
		e.OK(t, root, "create", "h/b")
		e.FailWith(t, root, "InvalidValue", "set", "h/a", "memory_limit", "200M")
		e.FailWith(t, root, "InvalidValue", "set", "h/a/x", "memory_limit", "101M") // grandparent's 100M
		e.OK(t, root, "set", "h/a", "memory_limit", "60M")
		e.FailWith(t, root, "InvalidValue", "set", "h/b", "memory_limit", "50M") // 60M + 50M > 100M
		e.OK(t, root, "set", "h/b", "memory_limit", "40M")
		e.FailWith(t, root, "InvalidValue", "set", "h", "memory_limit", "90M") // below 60M + 40M
		e.FailWith(t, root, "InvalidValue", "set", "h/a/x", "memory_limit", "61M")
		e.OK(t, root, "set", "h/a/x", "memory_limit", "60M")
		e.OK(t, root, "set", "h", "memory_limit", "0") // unlimited is always allowed
		e.OK(t, root, "set", "h/b", "memory_limit", "1G")
		e.FailWith(t, root, "InvalidValue", "set", "h/a", "memory_limit", "50M") // below h/a/x's 60M
		e.Expect(t, root, "60M", "get", "h/a/x", "memory_limit")
		e.Expect(t, root, "60M", "get", "h/a", "memory_limit")
		e.Expect(t, root, "1024M", "get", "h/b", "memory_limit")
	})

	// A limit below the current usage is InvalidValue, and the kernel keeps
	// the old one; a guarantee that overcommits RAM is ResourceNotAvailable.
	t.Run("below-usage", func(t *testing.T) {
		requirePython(t)
		e.CleanupContainers(t)
		e.OK(t, root, "run", "u", "memory_limit=256M",
			"command="+python+" -c 'import time; b = b\"x\" * (48 << 20); time.sleep(1000)'")
		if !waitUntil(10*time.Second, func() bool { return e.dgetUint(t, "u", "memory_usage") > 48<<20 }) {
			t.Fatalf("memory_usage never passed 48M: %s", e.Out(t, root, "dget", "u", "memory_usage"))
		}
		r := e.FailWith(t, root, "InvalidValue", "set", "u", "memory_limit", "16M")
		if !strings.Contains(r.Stderr, "below the current memory usage") {
			t.Errorf("no reason: %s", r.Stderr)
		}
		if got := readTrim(t, e.cgFile("memory", "u", "memory.limit_in_bytes")); got != "268435456" {
			t.Errorf("memory.limit_in_bytes = %s after a refused limit", got)
		}
		e.Expect(t, root, "268435456", "dget", "u", "memory_limit")
		e.Expect(t, root, "running", "get", "u", "state")
		e.OK(t, root, "set", "u", "memory_limit", "128M")

		e.OK(t, root, "create", "g")
		e.FailWith(t, root, "ResourceNotAvailable", "set", "g", "memory_guarantee", strconv.FormatUint(memTotalBytes(t), 10))
		e.Expect(t, root, "0", "dget", "g", "memory_guarantee")
	})

	// Acceptance 2: a 400 MB allocation under memory_limit=64M is killed;
	// the daemon and another container are untouched.
	t.Run("oom", func(t *testing.T) {
		requirePython(t)
		e.CleanupContainers(t)
		e.OK(t, root, "run", "bystander", "command=sleep 1000")
		bpid := e.Out(t, root, "get", "bystander", "root_pid")
		e.OK(t, root, "run", "oom", "memory_limit=64M", "command="+python+" -c 'b = b\"x\" * (400 << 20)'")
		if !waitUntil(30*time.Second, func() bool { return e.Out(t, root, "get", "oom", "state") == "dead" }) {
			t.Fatalf("not dead after 30 s")
		}
		e.Expect(t, root, "Container killed by signal 9", "get", "oom", "exit_status")
		e.Expect(t, root, "9", "dget", "oom", "exit_status")
		e.Expect(t, root, "true", "get", "oom", "oom_killed")
		if mx := e.dgetUint(t, "oom", "max_rss"); mx > 64<<20 || mx < 32<<20 {
			t.Errorf("max_rss = %d, want near the 64M limit", mx)
		}
		if !e.PortodAlive() {
			t.Fatalf("portod died")
		}
		e.Expect(t, root, "running", "get", "bystander", "state")
		e.Expect(t, root, bpid, "get", "bystander", "root_pid")
		// Restarting the dead container clears oom_killed.
		e.OK(t, root, "stop", "oom")
		e.OK(t, root, "set", "oom", "command", "true")
		e.OK(t, root, "start", "oom")
		e.WaitState(t, root, "oom", "dead")
		e.Expect(t, root, "false", "get", "oom", "oom_killed")
		e.Expect(t, root, "Container exited with 0", "get", "oom", "exit_status")
	})

	// Acceptance 2: two busy processes under cpu_limit=1c use between 0.5
	// and 1.3 cores, measured through cpu_usage over 3 s.
	t.Run("cpu-limit", func(t *testing.T) {
		e.CleanupContainers(t)
		if n := len(cpusOnline(t)); n < 2 {
			t.Logf("only %d CPU: the limit cannot be told from the machine", n)
		}
		e.OK(t, root, "run", "busy", "cpu_limit=1c", "command=bash -c 'while :; do :; done & while :; do :; done'")
		if !waitUntil(5*time.Second, func() bool { return e.dgetUint(t, "busy", "process_count") >= 2 }) {
			t.Fatalf("the busy loops did not start")
		}
		time.Sleep(300 * time.Millisecond)
		// measure returns the cores the container used over d, and the
		// cores the host left idle meanwhile (other tenants of this small
		// machine can starve the container below its limit: the lower
		// bound is only checked when the host had idle CPU to give).
		measure := func(d time.Duration) (cores, idle float64) {
			u0, i0, t0 := e.dgetUint(t, "busy", "cpu_usage"), hostIdle(t), time.Now()
			time.Sleep(d)
			u1, i1, t1 := e.dgetUint(t, "busy", "cpu_usage"), hostIdle(t), time.Now()
			wall := float64(t1.Sub(t0).Nanoseconds())
			return float64(u1-u0) / wall, float64(i1-i0) / wall
		}
		check := func(limit string, lo, hi float64, cores, idle float64) {
			t.Helper()
			t.Logf("cpu_limit=%s: %.3f cores used, host idle %.3f cores", limit, cores, idle)
			if cores > hi {
				t.Errorf("cpu_limit=%s: %.3f cores, above %.2f", limit, cores, hi)
			}
			if cores < lo {
				if idle < 0.2 {
					t.Logf("cpu_limit=%s: below %.2f cores but the host was saturated (%.3f idle): not the limit's doing", limit, lo, idle)
				} else {
					t.Errorf("cpu_limit=%s: %.3f cores, below %.2f while the host had %.3f cores idle", limit, cores, lo, idle)
				}
			}
		}
		cores, idle := measure(3 * time.Second)
		check("1c", 0.5, 1.3, cores, idle)
		// Dynamic: halve it while running.
		e.OK(t, root, "set", "busy", "cpu_limit", "0.5c")
		time.Sleep(200 * time.Millisecond)
		cores, idle = measure(2 * time.Second)
		check("0.5c", 0.25, 0.65, cores, idle)
		st := readTrim(t, e.cgFile("cpu", "busy", "cpu.stat"))
		if strings.Contains(st, "nr_throttled 0\n") && idle >= 0.2 {
			t.Errorf("never throttled: cpu.stat %q", st)
		}
	})

	// io_limit throttles the disk: 8M written with O_DIRECT at 4M/s take
	// about 2 s (unlimited: a few ms on this machine's disk).
	t.Run("io-limit", func(t *testing.T) {
		e.CleanupContainers(t)
		if _, err := os.Stat("/sys/block/vda"); err != nil {
			t.Skip("no vda here: the disk under /tmp is unknown")
		}
		start := time.Now()
		e.OK(t, root, "run", "io", "io_limit=4M", "command=dd if=/dev/zero of=io.dat bs=1M count=8 oflag=direct status=none")
		e.WaitState(t, root, "io", "dead")
		took := time.Since(start)
		t.Logf("8M written with O_DIRECT under io_limit=4M in %v", took.Round(time.Millisecond))
		e.Expect(t, root, "Container exited with 0", "get", "io", "exit_status")
		if took < 1500*time.Millisecond {
			t.Errorf("io_limit=4M: 8M written in %v", took)
		}
		if w := e.dgetUint(t, "io", "io_write"); w < 8<<20 {
			t.Errorf("io_write = %d", w)
		}
	})

	// thread_limit is pids.max: forks beyond it fail with EAGAIN.
	t.Run("thread-limit", func(t *testing.T) {
		requirePython(t)
		e.CleanupContainers(t)
		script := "import os, time\n" +
			"n = 0\n" +
			"try:\n" +
			"    for i in range(20):\n" +
			"        if os.fork() == 0:\n" +
			"            time.sleep(3)\n" +
			"            os._exit(0)\n" +
			"        n += 1\n" +
			"except OSError as e:\n" +
			"    print(n, e.errno)\n" +
			"else:\n" +
			"    print(n, 0)\n"
		e.OK(t, root, "run", "t", "thread_limit=5", "command="+python+" -c '"+script+"'")
		if got := readTrim(t, e.cgFile("pids", "t", "pids.max")); got != "5" {
			t.Errorf("pids.max = %s", got)
		}
		e.WaitState(t, root, "t", "dead")
		// The interpreter is one task; four children fit, the fifth fork
		// fails with EAGAIN (11).
		out := strings.TrimSpace(e.Out(t, root, "get", "t", "stdout"))
		if out != "4 11" {
			t.Errorf("forks under thread_limit=5: %q (stderr %q), want \"4 11\"", out, e.Out(t, root, "get", "t", "stderr"))
		}
	})
}

// cpusOnline lists the CPUs the tests' processes may run on.
func cpusOnline(t *testing.T) []int {
	t.Helper()
	b, err := os.ReadFile("/sys/devices/system/cpu/online")
	if err != nil {
		t.Fatal(err)
	}
	var out []int
	for _, r := range strings.Split(strings.TrimSpace(string(b)), ",") {
		lo, hi, ok := strings.Cut(r, "-")
		a, _ := strconv.Atoi(lo)
		z := a
		if ok {
			z, _ = strconv.Atoi(hi)
		}
		for i := a; i <= z; i++ {
			out = append(out, i)
		}
	}
	return out
}

// hostIdle is the host's idle CPU time in ns (idle + iowait of every CPU,
// from /proc/stat).
func hostIdle(t *testing.T) uint64 {
	t.Helper()
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		t.Fatal(err)
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line) // cpu user nice system idle iowait ...
	if len(f) < 6 || f[0] != "cpu" {
		t.Fatalf("/proc/stat: %q", line)
	}
	idle, _ := strconv.ParseUint(f[4], 10, 64)
	iowait, _ := strconv.ParseUint(f[5], 10, 64)
	return (idle + iowait) * uint64(time.Second/100) // USER_HZ is 100
}

// memTotalBytes is the machine's RAM.
func memTotalBytes(t *testing.T) uint64 {
	t.Helper()
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "MemTotal:"); ok {
			f := strings.Fields(v)
			n, _ := strconv.ParseUint(f[0], 10, 64)
			return n << 10
		}
	}
	t.Fatal("no MemTotal")
	return 0
}

// bfqScheduled reports whether some disk's active I/O scheduler is bfq.
func bfqScheduled() bool {
	ms, _ := filepath.Glob("/sys/block/*/queue/scheduler")
	for _, m := range ms {
		if b, err := os.ReadFile(m); err == nil && strings.Contains(string(b), "[bfq]") {
			return true
		}
	}
	return false
}
