package units

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/porto-dev/porto/api"
)

// Issue 5: one v2 test per limit and per datum, on the fake tree of
// v2_test.go. Each limit is applied alone, changed (dynamic), and reset,
// and no other control file moves meanwhile; each datum is read from its
// own file.

// v2LimitFiles are the control files the limits write, with their values
// after a limit is reset by Apply(Limits{}).
var v2LimitFiles = map[string]string{
	"memory.max": "max",
	"memory.low": "0",
	"cpu.max":    "max 100000",
	"cpu.weight": "100",
	"cpu.idle":   "0",
	"pids.max":   "max",
	"io.max":     "254:0 rbps=max wbps=max",
	"io.weight":  "default 100",
}

func TestV2EachLimit(t *testing.T) {
	for _, tc := range []struct {
		limit string // porto's property
		l, l2 Limits // applied alone, then changed while "running"
		file  string
		want  string
		want2 string
	}{
		{"memory_limit", Limits{MemoryLimit: 64 << 20}, Limits{MemoryLimit: 1 << 30}, "memory.max", "67108864", "1073741824"},
		{"memory_guarantee", Limits{MemoryGuarantee: 16 << 20}, Limits{MemoryGuarantee: 32 << 20}, "memory.low", "16777216", "33554432"},
		{"cpu_limit", Limits{CPULimit: 1}, Limits{CPULimit: 0.25}, "cpu.max", "100000 100000", "25000 100000"},
		{"cpu_limit (kernel minimum)", Limits{CPULimit: 0.001}, Limits{CPULimit: 2.5}, "cpu.max", "1000 100000", "250000 100000"},
		{"cpu_guarantee", Limits{CPUGuarantee: 0.5}, Limits{CPUGuarantee: 2}, "cpu.weight", "150", "300"},
		{"cpu_guarantee (cap)", Limits{CPUGuarantee: 1000}, Limits{CPUGuarantee: 0.01}, "cpu.weight", "10000", "101"},
		{"cpu_policy", Limits{CPUPolicy: "idle"}, Limits{CPUPolicy: "normal"}, "cpu.idle", "1", "0"},
		{"io_limit", Limits{IOLimit: 1 << 20}, Limits{IOLimit: 5 << 20}, "io.max", "254:0 rbps=1048576 wbps=1048576", "254:0 rbps=5242880 wbps=5242880"},
		{"io_policy", Limits{IOPolicy: "batch"}, Limits{IOPolicy: "normal"}, "io.weight", "default 10", "default 100"},
		{"thread_limit", Limits{PidsLimit: 100}, Limits{PidsLimit: 7}, "pids.max", "100", "7"},
	} {
		t.Run(tc.limit, func(t *testing.T) {
			v, mount := newFakeV2(t)
			if err := v.Create("c"); err != nil {
				t.Fatal(err)
			}
			d := mount + "/porto/c"
			if err := v.Apply("c", Limits{}); err != nil {
				t.Fatal(err)
			}
			// A cgroup porto just created has the kernel's defaults, which
			// the driver does not write again (io.max stays empty).
			before := map[string]string{}
			for f := range v2LimitFiles {
				before[f] = read(t, d+"/"+f)
			}
			others := func(when string) {
				t.Helper()
				for f, want := range before {
					if f == tc.file {
						continue
					}
					if got := read(t, d+"/"+f); got != want {
						t.Errorf("%s: %s = %q, want %q (untouched)", when, f, got, want)
					}
				}
			}
			if err := v.Apply("c", tc.l); err != nil {
				t.Fatalf("Apply(%+v): %v", tc.l, err)
			}
			if got := read(t, d+"/"+tc.file); got != tc.want {
				t.Errorf("%s = %q, want %q", tc.file, got, tc.want)
			}
			others("set")
			if err := v.Apply("c", tc.l2); err != nil {
				t.Fatalf("Apply(%+v): %v", tc.l2, err)
			}
			if got := read(t, d+"/"+tc.file); got != tc.want2 {
				t.Errorf("changed: %s = %q, want %q", tc.file, got, tc.want2)
			}
			others("changed")
			if err := v.Apply("c", Limits{}); err != nil {
				t.Fatal(err)
			}
			if got, want := read(t, d+"/"+tc.file), v2LimitFiles[tc.file]; got != want {
				t.Errorf("reset: %s = %q, want %q", tc.file, got, want)
			}
		})
	}
}

// Limits v2 cannot apply are NotSupported, name the limit and give the
// reason; nothing at all is written then.
func TestV2LimitsNotSupported(t *testing.T) {
	v, mount := newFakeV2(t)
	v.Create("c")
	d := mount + "/porto/c"
	if err := v.Apply("c", Limits{}); err != nil {
		t.Fatal(err)
	}
	err := v.Apply("c", Limits{RechargeOnPgfault: true, MemoryLimit: 1 << 30})
	if api.CodeOf(err) != api.NotSupported || !strings.Contains(err.Error(), "recharge_on_pgfault: ") {
		t.Errorf("recharge_on_pgfault on v2: %v", err)
	}
	if got := read(t, d+"/memory.max"); got != "max" {
		t.Errorf("memory.max = %q after a refused Apply", got)
	}
	// No block device: io_limit cannot be applied.
	empty := t.TempDir()
	v.opts.BlockRoot = empty
	if err := v.Apply("c", Limits{IOLimit: 1}); api.CodeOf(err) != api.NotSupported || !strings.Contains(err.Error(), "block device") {
		t.Errorf("io_limit without disks: %v", err)
	}
}

// memory_limit below the current usage is InvalidValue (the reference's
// rule), at or above it is applied; 0 is always accepted.
func TestV2MemoryLimitUsage(t *testing.T) {
	v, mount := newFakeV2(t)
	v.Create("c")
	d := mount + "/porto/c"
	write(t, d+"/memory.current", "1000000\n")
	if err := v.Apply("c", Limits{MemoryLimit: 999999}); api.CodeOf(err) != api.InvalidValue || !strings.Contains(err.Error(), "below the current memory usage") {
		t.Errorf("below usage: %v", err)
	}
	if err := v.Apply("c", Limits{MemoryLimit: 1000000}); err != nil {
		t.Errorf("equal to usage: %v", err)
	}
	if err := v.Apply("c", Limits{}); err != nil || read(t, d+"/memory.max") != "max" {
		t.Errorf("unlimited: %v, memory.max %q", err, read(t, d+"/memory.max"))
	}
}

// cpu_policy on v2 is also the scheduling policy of the container's own
// tasks (those in its leaf): batch is SCHED_BATCH, normal SCHED_OTHER, and
// rt SCHED_RR (needs root: checked only in the root tier).
func TestV2CPUPolicyTasks(t *testing.T) {
	v, mount := newFakeV2(t)
	v.Create("c")
	d := mount + "/porto/c"
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Skip(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	pid := strconv.Itoa(cmd.Process.Pid)
	write(t, d+"/"+leafName+"/cgroup.procs", pid+"\n")
	policy := func() string {
		t.Helper()
		b, err := os.ReadFile("/proc/" + pid + "/sched")
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range strings.Split(string(b), "\n") {
			if f := strings.Fields(l); len(f) == 3 && f[0] == "policy" {
				return f[2]
			}
		}
		t.Fatal("no policy line")
		return ""
	}
	steps := []struct{ p, want string }{{"batch", "3"}, {"normal", "0"}, {"idle", "0"}, {"batch", "3"}, {"", "0"}}
	if os.Geteuid() == 0 && os.Getenv("PORTO_ROOT_TESTS") == "1" {
		steps = append(steps, struct{ p, want string }{"rt", "2"}, struct{ p, want string }{"normal", "0"})
	}
	for _, s := range steps {
		if err := v.Apply("c", Limits{CPUPolicy: s.p}); err != nil {
			t.Fatalf("cpu_policy=%s: %v", s.p, err)
		}
		if got := policy(); got != s.want {
			t.Errorf("cpu_policy=%q: task policy %s, want %s", s.p, got, s.want)
		}
		if want := boolStr(s.p == "idle"); read(t, d+"/cpu.idle") != want {
			t.Errorf("cpu_policy=%q: cpu.idle %s", s.p, read(t, d+"/cpu.idle"))
		}
	}
}

// Each datum from its own v2 file.
func TestV2EachDatum(t *testing.T) {
	for _, tc := range []struct {
		datum string
		file  string
		body  string
		get   func(Stats) uint64
		want  uint64
	}{
		{"cpu_usage", "cpu.stat", "usage_usec 2500\nuser_usec 2000\nsystem_usec 500\n", func(s Stats) uint64 { return s.CPUUsage }, 2500000},
		{"memory_usage", "memory.current", "123456789\n", func(s Stats) uint64 { return s.MemoryUsage }, 123456789},
		{"max_rss", "memory.peak", "987654321\n", func(s Stats) uint64 { return s.MaxRSS }, 987654321},
		{"minor_faults", "memory.stat", "anon 1\npgfault 5000\npgmajfault 40\n", func(s Stats) uint64 { return s.MinorFaults }, 4960},
		{"major_faults", "memory.stat", "anon 1\npgfault 5000\npgmajfault 40\n", func(s Stats) uint64 { return s.MajorFaults }, 40},
		{"io_read", "io.stat", "254:0 rbytes=100 wbytes=7 rios=1 wios=1 dbytes=0 dios=0\n254:16 rbytes=11 wbytes=0 rios=1 wios=0 dbytes=0 dios=0\n", func(s Stats) uint64 { return s.IORead }, 111},
		{"io_write", "io.stat", "254:0 rbytes=100 wbytes=7 rios=1 wios=1 dbytes=0 dios=0\n254:16 rbytes=11 wbytes=0 rios=1 wios=0 dbytes=0 dios=0\n", func(s Stats) uint64 { return s.IOWrite }, 7},
		{"oom_killed (oom_kill count)", "memory.events", "low 0\nhigh 0\nmax 9\noom 1\noom_kill 1\noom_group_kill 0\n", func(s Stats) uint64 { return s.OOMKills }, 1},
		{"thread count (pids.current)", "pids.current", "17\n", func(s Stats) uint64 { return s.ThreadCount }, 17},
		{"process_count", ".self/cgroup.procs", "100\n101\n102\n", func(s Stats) uint64 { return s.ProcessCount }, 3},
	} {
		t.Run(tc.datum, func(t *testing.T) {
			v, mount := newFakeV2(t)
			v.Create("c")
			st0, err := v.Stats("c")
			if err != nil {
				t.Fatal(err)
			}
			if got := tc.get(st0); got != 0 {
				t.Errorf("fresh cgroup: %s = %d", tc.datum, got)
			}
			write(t, mount+"/porto/c/"+tc.file, tc.body)
			st, err := v.Stats("c")
			if err != nil {
				t.Fatal(err)
			}
			if got := tc.get(st); got != tc.want {
				t.Errorf("%s = %d, want %d (stats %+v)", tc.datum, got, tc.want, st)
			}
		})
	}
}

// The subtree's processes count in process_count; without an io
// controller the io data are 0, not an error; a missing counter of a
// controller that must be there is an error.
func TestV2StatsEdges(t *testing.T) {
	v, mount := newFakeV2(t)
	v.Create("p")
	v.Create("p/c")
	p := mount + "/porto/p"
	write(t, p+"/.self/cgroup.procs", "1\n")
	write(t, p+"/c/.self/cgroup.procs", "2\n3\n")
	os.Remove(p + "/io.stat")
	st, err := v.Stats("p")
	if err != nil {
		t.Fatal(err)
	}
	if st.ProcessCount != 3 || st.IORead != 0 || st.IOWrite != 0 {
		t.Errorf("stats %+v: want 3 processes, no io", st)
	}
	os.Remove(p + "/memory.current")
	if _, err := v.Stats("p"); err == nil || !strings.Contains(err.Error(), "memory.current") {
		t.Errorf("without memory.current: %v", err)
	}
}

// io_policy=batch needs a weight that acts: io.weight where iocost is on
// (io.cost.qos), else io.bfq.weight on a disk bfq schedules; else it is
// NotSupported with the reason.
func TestV2IOWeightMustAct(t *testing.T) {
	v, mount := newFakeV2(t)
	if err := v.Create("w"); err != nil {
		t.Fatal(err)
	}
	d := mount + "/porto/w"
	write(t, d+"/io.bfq.weight", "default 100\n")
	write(t, mount+"/io.cost.qos", "254:0 enable=0 ctrl=auto\n")
	err := v.Apply("w", Limits{IOPolicy: "batch"})
	if api.CodeOf(err) != api.NotSupported || !strings.Contains(err.Error(), "vda: none") {
		t.Fatalf("no iocost, no bfq disk: %v", err)
	}
	write(t, filepath.Join(v.opts.BlockRoot, "vda", "queue", "scheduler"), "mq-deadline kyber [bfq] none\n")
	if err := v.Apply("w", Limits{IOPolicy: "batch"}); err != nil {
		t.Fatalf("bfq on vda: %v", err)
	}
	if got := read(t, d+"/io.bfq.weight"); got != "default 10" {
		t.Errorf("io.bfq.weight = %q", got)
	}
	os.Remove(d + "/io.bfq.weight")
	v.Apply("w", Limits{IOPolicy: "normal"})
	err = v.Apply("w", Limits{IOPolicy: "batch"})
	if api.CodeOf(err) != api.NotSupported || !strings.Contains(err.Error(), "io.cost.qos") {
		t.Errorf("io.weight without iocost: %v", err)
	}
}
