package units

import (
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/porto-dev/porto/api"
)

// The whole V2 driver runs here against a directory tree seeded with the
// files of a cgroup v2 hierarchy. fakeMkdirHook and fakeRmdirHook play the
// kernel's part of creating and removing the control files; the tests
// play its part of updating counters and cgroup.events.

// v2Files are the control files of a non-root v2 cgroup with cpu, memory,
// pids and io enabled by its parent, and their initial contents.
var v2Files = map[string]string{
	"cgroup.controllers":     "cpuset cpu io memory pids\n",
	"cgroup.subtree_control": "\n",
	"cgroup.procs":           "",
	"cgroup.threads":         "",
	"cgroup.events":          "populated 0\nfrozen 0\n",
	"cgroup.freeze":          "0\n",
	"cgroup.kill":            "",
	"cgroup.type":            "domain\n",
	"cpu.max":                "max 100000\n",
	"cpu.weight":             "100\n",
	"cpu.idle":               "0\n",
	"cpu.stat":               "usage_usec 0\nuser_usec 0\nsystem_usec 0\nnr_periods 0\nnr_throttled 0\nthrottled_usec 0\n",
	"memory.current":         "0\n",
	"memory.peak":            "0\n",
	"memory.max":             "max\n",
	"memory.low":             "0\n",
	"memory.min":             "0\n",
	"memory.high":            "max\n",
	"memory.stat":            "anon 0\nfile 0\npgfault 0\npgmajfault 0\n",
	"memory.events":          "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\noom_group_kill 0\n",
	"memory.events.local":    "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\noom_group_kill 0\n",
	"pids.max":               "max\n",
	"pids.current":           "0\n",
	"io.max":                 "",
	"io.stat":                "",
	"io.weight":              "default 100\n",
}

// fakeV2 builds a fake unified hierarchy (the root cgroup) and a block
// device root with one disk, and installs the hooks.
func fakeV2(t *testing.T) (mount, block string) {
	t.Helper()
	mount, block = t.TempDir(), t.TempDir()
	for f, c := range map[string]string{
		"cgroup.controllers":     "cpuset cpu io memory hugetlb pids rdma misc\n",
		"cgroup.subtree_control": "\n",
		"cgroup.procs":           "1\n",
		"cgroup.max.depth":       "max\n",
		"cpu.stat":               "usage_usec 1\n",
		"io.cost.qos":            "254:0 enable=1 ctrl=auto rpct=0.00 rlat=250000 wpct=0.00 wlat=250000 min=1.00 max=10000.00\n",
	} {
		write(t, filepath.Join(mount, f), c)
	}
	write(t, filepath.Join(block, "vda", "dev"), "254:0\n")
	write(t, filepath.Join(block, "vda", "size"), "536870912\n")
	write(t, filepath.Join(block, "loop0", "dev"), "7:0\n")
	write(t, filepath.Join(block, "loop0", "size"), "100\n")
	fakeMkdirHook = func(dir string) {
		for f, c := range v2Files {
			write(t, filepath.Join(dir, f), c)
		}
	}
	fakeRmdirHook = func(dir string) error {
		b, _ := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
		if strings.TrimSpace(string(b)) != "" {
			return unix.EBUSY
		}
		ents, _ := os.ReadDir(dir)
		for _, e := range ents {
			if !e.IsDir() {
				os.Remove(filepath.Join(dir, e.Name()))
			}
		}
		return nil
	}
	t.Cleanup(func() { fakeMkdirHook, fakeRmdirHook = nil, nil })
	return mount, block
}

var quiet = slog.New(slog.DiscardHandler)

func write(t testing.TB, p, c string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(c), 0o644); err != nil {
		t.Fatal(err)
	}
}

func read(t testing.TB, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

func newFakeV2(t *testing.T) (*V2, string) {
	mount, block := fakeV2(t)
	d, err := NewCgroupfs(Options{MountRoot: mount, BlockRoot: block, Log: quiet})
	if err != nil {
		t.Fatal(err)
	}
	v, ok := d.(*V2)
	if !ok || d.Version() != CgroupV2 {
		t.Fatalf("NewCgroupfs on a v2 tree = %T", d)
	}
	v.freezeTimeout = 50 * time.Millisecond
	return v, mount
}

func TestV2Setup(t *testing.T) {
	v, mount := newFakeV2(t)
	// The mount root gets porto's controllers (only what is missing), and
	// so does porto's root.
	if got := read(t, mount+"/cgroup.subtree_control"); got != "+cpu +memory +pids +io +cpuset" {
		t.Errorf("root subtree_control = %q", got)
	}
	if got := read(t, mount+"/porto/cgroup.subtree_control"); got != "+cpu +memory +pids +io +cpuset" {
		t.Errorf("porto subtree_control = %q", got)
	}
	if !slices.Equal(v.Controllers(), []string{"cpu", "memory", "pids", "io", "cpuset"}) {
		t.Errorf("controllers %v", v.Controllers())
	}
	if v.Path("/") != mount+"/porto" || v.Path("a.b/c") != mount+"/porto/a%2eb/c" {
		t.Errorf("paths %q %q", v.Path("/"), v.Path("a.b/c"))
	}
}

func TestV2MissingControllers(t *testing.T) {
	mount, _ := fakeV2(t)
	write(t, mount+"/cgroup.controllers", "cpu io\n")
	_, err := NewV2(Options{MountRoot: mount, Log: quiet})
	if api.CodeOf(err) != api.NotSupported || !strings.Contains(err.Error(), "memory, pids") {
		t.Errorf("NewV2 without memory, pids: %v", err)
	}
}

func TestV2Lifecycle(t *testing.T) {
	v, mount := newFakeV2(t)
	for _, n := range []string{"a", "a/b", "a/b.c", "a/tasks"} {
		if err := v.Create(n); err != nil {
			t.Fatalf("Create(%s): %v", n, err)
		}
		if err := v.Create(n); err != nil {
			t.Fatalf("Create(%s) again: %v", n, err)
		}
		if !v.Exists(n) {
			t.Errorf("%s missing", n)
		}
	}
	if err := v.Create("x/y"); err == nil || !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Create without parent: %v", err)
	}
	a := mount + "/porto/a"
	for _, d := range []string{a, a + "/.self", a + "/b", a + "/b/.self", a + "/b%2ec", a + "/%74asks"} {
		if !isDir(d) {
			t.Errorf("missing %s", d)
		}
	}
	if got := read(t, a+"/cgroup.subtree_control"); got != "+cpu +memory +pids +io +cpuset" {
		t.Errorf("a subtree_control = %q", got)
	}

	// Attach writes the leaf's cgroup.procs, once.
	if err := v.Attach("a/b", 4242); err != nil {
		t.Fatal(err)
	}
	if got := read(t, a+"/b/.self/cgroup.procs"); got != "4242" {
		t.Errorf("leaf procs = %q", got)
	}
	write(t, a+"/.self/cgroup.procs", "7\n4242\n")
	if got, err := v.Procs("a"); err != nil || !slices.Equal(got, []int{7, 4242}) {
		t.Errorf("Procs(a) = %v, %v", got, err)
	}
	if got, _ := v.Procs("a/b"); !slices.Equal(got, []int{4242}) {
		t.Errorf("Procs(a/b) = %v", got)
	}

	// Freeze: cgroup.freeze=1, then wait for cgroup.events frozen 1.
	write(t, a+"/cgroup.events", "populated 1\nfrozen 1\n")
	if err := v.Freeze("a"); err != nil {
		t.Fatal(err)
	}
	if read(t, a+"/cgroup.freeze") != "1" {
		t.Error("cgroup.freeze not written")
	}
	if fr, err := v.Frozen("a"); err != nil || !fr {
		t.Errorf("Frozen = %v, %v", fr, err)
	}
	if err := v.Thaw("a"); err != nil || read(t, a+"/cgroup.freeze") != "0" {
		t.Errorf("Thaw: %v", err)
	}
	// A freeze the kernel never completes times out, is undone and is Busy.
	write(t, a+"/b/cgroup.events", "populated 1\nfrozen 0\n")
	if err := v.Freeze("a/b"); api.CodeOf(err) != api.Busy {
		t.Errorf("Freeze timeout: %v", err)
	}
	if read(t, a+"/b/cgroup.freeze") != "0" {
		t.Error("timed-out freeze not undone")
	}

	// SIGKILL goes through cgroup.kill.
	if err := v.Kill("a", syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if read(t, a+"/cgroup.kill") != "1" {
		t.Error("cgroup.kill not written")
	}

	// Remove of a cgroup with processes is Busy and names them.
	err := v.Remove("a")
	if api.CodeOf(err) != api.Busy || !strings.Contains(err.Error(), "4242") {
		t.Errorf("Remove(busy) = %v", err)
	}
	write(t, a+"/.self/cgroup.procs", "")
	write(t, a+"/b/.self/cgroup.procs", "")
	if err := v.Remove("a"); err != nil {
		t.Fatal(err)
	}
	if v.Exists("a") || v.Exists("a/b") {
		t.Error("still exists after Remove")
	}
	if err := v.Remove("a"); err != nil {
		t.Errorf("Remove(missing) = %v", err)
	}
	if err := v.Remove("/"); err != nil || isDir(mount+"/porto") {
		t.Errorf("Remove(/) = %v", err)
	}
}

// Kill with another signal freezes, signals each process and thaws; here
// with a real process listed in the fake cgroup.procs.
func TestV2KillSignal(t *testing.T) {
	v, mount := newFakeV2(t)
	v.Create("k")
	cmd := exec.Command("sleep", "1000")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	k := mount + "/porto/k"
	write(t, k+"/.self/cgroup.procs", strconv.Itoa(cmd.Process.Pid)+"\n")
	write(t, k+"/cgroup.events", "populated 1\nfrozen 1\n")
	if err := v.Kill("k", syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	if ws := cmd.ProcessState.Sys().(syscall.WaitStatus); ws.Signal() != syscall.SIGTERM {
		t.Errorf("sleep ended with %v", cmd.ProcessState)
	}
	if read(t, k+"/cgroup.freeze") != "0" {
		t.Error("left frozen")
	}
	if read(t, k+"/cgroup.kill") != "" {
		t.Error("cgroup.kill used for SIGTERM")
	}
	// A paused container stays paused after a non-fatal signal.
	write(t, k+"/cgroup.freeze", "1\n")
	write(t, k+"/.self/cgroup.procs", "")
	v.Kill("k", syscall.SIGTERM)
	if read(t, k+"/cgroup.freeze") != "1" {
		t.Error("a paused container was thawed by SIGTERM")
	}
	// Without cgroup.kill (before 5.14), SIGKILL freezes, signals, thaws.
	os.Remove(k + "/cgroup.kill")
	if err := v.Kill("k", syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if read(t, k+"/cgroup.freeze") != "0" {
		t.Error("SIGKILL left the container frozen")
	}
}

func TestV2Stats(t *testing.T) {
	v, mount := newFakeV2(t)
	v.Create("s")
	v.Create("s/t")
	s := mount + "/porto/s"
	write(t, s+"/cpu.stat", "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\n")
	write(t, s+"/memory.current", "1048576\n")
	write(t, s+"/memory.peak", "4194304\n")
	write(t, s+"/memory.stat", "anon 4096\npgfault 1000\npgmajfault 10\n")
	write(t, s+"/memory.events", "low 0\nhigh 0\nmax 3\noom 2\noom_kill 2\noom_group_kill 0\n")
	write(t, s+"/io.stat", "254:0 rbytes=4096 wbytes=8192 rios=1 wios=2 dbytes=0 dios=0\n8:0 rbytes=1 wbytes=1 rios=1 wios=1 dbytes=0 dios=0\n")
	write(t, s+"/pids.current", "5\n")
	write(t, s+"/.self/cgroup.procs", "10\n11\n")
	write(t, s+"/t/.self/cgroup.procs", "12\n")
	st, err := v.Stats("s")
	if err != nil {
		t.Fatal(err)
	}
	want := Stats{CPUUsage: 1500000, MemoryUsage: 1048576, MaxRSS: 4194304, MinorFaults: 990, MajorFaults: 10,
		IORead: 4097, IOWrite: 8193, ProcessCount: 3, ThreadCount: 5, OOMKills: 2}
	if st != want {
		t.Errorf("Stats = %+v\nwant    %+v", st, want)
	}
	if k, err := v.OOMKills("s"); err != nil || k != 2 {
		t.Errorf("OOMKills = %d, %v; want 2", k, err)
	}
	if _, err := v.OOMKills("nope"); err == nil {
		t.Error("OOMKills of a missing cgroup succeeded")
	}
	// Before 5.19 there is no memory.peak: MaxRSS stays 0, no error.
	os.Remove(s + "/memory.peak")
	if st, err := v.Stats("s"); err != nil || st.MaxRSS != 0 {
		t.Errorf("without memory.peak: %+v %v", st, err)
	}
	if _, err := v.Stats("nope"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Stats(missing) = %v", err)
	}
}

func TestV2Apply(t *testing.T) {
	v, mount := newFakeV2(t)
	v.Create("l")
	l := mount + "/porto/l"
	write(t, l+"/memory.current", "10485760\n")
	err := v.Apply("l", Limits{MemoryLimit: 64 << 20, MemoryGuarantee: 32 << 20, CPULimit: 1.5, CPUGuarantee: 0.5,
		PidsLimit: 100, IOLimit: 1 << 20, IOPolicy: "batch", CPUPolicy: "idle"})
	if err != nil {
		t.Fatal(err)
	}
	for f, want := range map[string]string{
		"memory.max": "67108864",
		"memory.low": "33554432",
		"cpu.max":    "150000 100000",
		"cpu.weight": "150",
		"cpu.idle":   "1",
		"pids.max":   "100",
		"io.max":     "254:0 rbps=1048576 wbps=1048576",
		"io.weight":  "default 10",
	} {
		if got := read(t, l+"/"+f); got != want {
			t.Errorf("%s = %q, want %q", f, got, want)
		}
	}
	// Unchanged limits are not written again.
	write(t, l+"/memory.max", "sentinel")
	if err := v.Apply("l", Limits{MemoryLimit: 64 << 20, MemoryGuarantee: 32 << 20, CPULimit: 1.5, CPUGuarantee: 0.5,
		PidsLimit: 100, IOLimit: 1 << 20, IOPolicy: "batch", CPUPolicy: "idle"}); err != nil {
		t.Fatal(err)
	}
	if read(t, l+"/memory.max") != "sentinel" {
		t.Error("unchanged memory_limit rewritten")
	}
	// Zero resets every limit.
	if err := v.Apply("l", Limits{}); err != nil {
		t.Fatal(err)
	}
	for f, want := range map[string]string{
		"memory.max": "max",
		"memory.low": "0",
		"cpu.max":    "max 100000",
		"cpu.weight": "100",
		"cpu.idle":   "0",
		"pids.max":   "max",
		"io.max":     "254:0 rbps=max wbps=max",
		"io.weight":  "default 100",
	} {
		if got := read(t, l+"/"+f); got != want {
			t.Errorf("after reset %s = %q, want %q", f, got, want)
		}
	}
	// Below usage.
	if err := v.Apply("l", Limits{MemoryLimit: 1 << 20}); api.CodeOf(err) != api.InvalidValue {
		t.Errorf("limit below usage: %v", err)
	}
	if read(t, l+"/memory.max") != "max" {
		t.Error("refused limit was written")
	}
	// Devices need BPF; recharge_on_pgfault does not exist; nothing is
	// written when something is not supported.
	err = v.Apply("l", Limits{Devices: []string{"c 1:3 rwm"}, RechargeOnPgfault: true, PidsLimit: 5})
	if api.CodeOf(err) != api.NotSupported || !strings.Contains(err.Error(), "BPF") || !strings.Contains(err.Error(), "recharge_on_pgfault") {
		t.Errorf("devices on v2: %v", err)
	}
	if read(t, l+"/pids.max") != "max" {
		t.Error("pids.max written by a refused Apply")
	}
	// No io controller, no cpu.idle, no weights.
	for _, f := range []string{"io.max", "cpu.idle", "io.weight"} {
		os.Remove(l + "/" + f)
	}
	for _, tc := range []struct {
		l    Limits
		want string
	}{
		{Limits{IOLimit: 1}, "io_limit"},
		{Limits{CPUPolicy: "idle"}, "cpu.idle"},
		{Limits{IOPolicy: "batch"}, "io_policy"},
	} {
		if err := v.Apply("l", tc.l); api.CodeOf(err) != api.NotSupported || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Apply(%+v) = %v, want NotSupported about %s", tc.l, err, tc.want)
		}
	}
	for _, bad := range []Limits{{CPUPolicy: "fast"}, {IOPolicy: "x"}, {CPUGuarantee: -1}} {
		if err := v.Apply("l", bad); api.CodeOf(err) != api.InvalidValue {
			t.Errorf("Apply(%+v) = %v, want InvalidValue", bad, err)
		}
	}
	if err := v.Apply("missing", Limits{}); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Apply(missing) = %v", err)
	}
}

// A cgroup porto did not create itself (found after a restart) has unknown
// limits: the first Apply writes every one.
func TestV2ApplyAfterRestart(t *testing.T) {
	v, mount := newFakeV2(t)
	v.Create("r")
	r := mount + "/porto/r"
	write(t, r+"/pids.max", "77\n")
	v2, err := NewV2(Options{MountRoot: mount, BlockRoot: v.opts.BlockRoot, Log: quiet})
	if err != nil {
		t.Skipf("re-opening the fake root: %v (needs trusted xattrs)", err)
	}
	if err := v2.Apply("r", Limits{}); err != nil {
		t.Fatal(err)
	}
	if got := read(t, r+"/pids.max"); got != "max" {
		t.Errorf("pids.max = %q after the first Apply of a recovered cgroup", got)
	}
}
