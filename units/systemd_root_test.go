package units

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// These tests need a real systemd on the system bus: run them inside the
// sandbox of docs/sandbox.md with PORTO_SYSTEMD_TESTS=1.
func requireSystemd(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 || os.Getenv("PORTO_SYSTEMD_TESTS") != "1" {
		t.Skip("needs root, a real systemd and PORTO_SYSTEMD_TESTS=1")
	}
	if !SystemdAvailable() {
		t.Skip("systemd is not on the system bus")
	}
}

func systemctl(args ...string) string {
	out, _ := exec.Command("systemctl", args...).CombinedOutput()
	return strings.TrimSpace(string(out))
}

func TestSystemdScope(t *testing.T) {
	requireSystemd(t)
	root := fmt.Sprintf("pt-%d", os.Getpid())
	s, err := NewSystemd(SystemdOptions{Options: Options{Root: root}, JobTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	scope := s.ScopeName("a")
	t.Cleanup(s.Close) // runs last
	t.Cleanup(func() {
		if p, _ := s.Procs("a"); len(p) > 0 {
			s.Kill("a", syscall.SIGKILL)
			time.Sleep(200 * time.Millisecond)
		}
		s.Remove("a")
		if err := s.Remove("/"); err != nil {
			t.Errorf("Remove(/): %v", err)
		}
		for _, c := range v1Controllers {
			if p := "/sys/fs/cgroup/" + c + "/" + sliceName(root) + "/" + scope; exists(p) {
				t.Errorf("left %s", p)
			}
		}
	})

	// Before the scope exists: create, nest, set limits.
	for _, n := range []string{"a", "a/b", "a/b.c"} {
		if err := s.Create(n); err != nil {
			t.Fatalf("Create(%s): %v", n, err)
		}
	}
	if err := s.Apply("a", Limits{MemoryLimit: 64 << 20, PidsLimit: 50, CPULimit: 0.5}); err != nil {
		t.Fatalf("Apply(a) before start: %v", err)
	}
	if err := s.Apply("a/b", Limits{PidsLimit: 20}); err != nil {
		t.Fatalf("Apply(a/b) before start: %v", err)
	}

	c1 := startIn(t, s, "a", "exec sleep 1000")
	cg, _ := os.ReadFile("/proc/" + strconv.Itoa(c1.Process.Pid) + "/cgroup")
	t.Logf("cgroups of the first process:\n%s", cg)
	for _, c := range []string{"memory", "freezer", "cpuacct", "pids", "name=systemd"} {
		want := ":/" + sliceName(root) + "/" + scope + "\n"
		found := false
		for _, l := range strings.Split(string(cg), "\n") {
			if strings.Contains(l, c) && strings.HasSuffix(l+"\n", want) {
				found = true
			}
		}
		if !found {
			t.Errorf("%s: first process not in %s", c, want)
		}
	}
	if got := systemctl("show", "-p", "Delegate", "-p", "ActiveState", "-p", "Slice", scope); got != "Delegate=yes\nActiveState=active\nSlice="+sliceName(root) && !strings.Contains(got, "Delegate=yes") {
		t.Errorf("systemctl show: %q", got)
	}
	t.Logf("systemctl show: %s", systemctl("show", "-p", "Delegate", "-p", "ActiveState", "-p", "Slice", "-p", "MemoryLimit", "-p", "TasksMax", scope))
	if got := readTrim(t, s.Path("a", "memory")+"/memory.limit_in_bytes"); got != "67108864" {
		t.Errorf("scope memory.limit_in_bytes = %s (from MemoryLimit=)", got)
	}
	if got := readTrim(t, s.Path("a", "pids")+"/pids.max"); got != "50" {
		t.Errorf("scope pids.max = %s", got)
	}
	if got := readTrim(t, s.Path("a", "cpu")+"/cpu.cfs_quota_us"); got != "50000" {
		t.Errorf("scope cfs_quota_us = %s", got)
	}
	if got := readTrim(t, s.Path("a/b", "pids")+"/pids.max"); got != "20" {
		t.Errorf("a/b pids.max = %s (pending limit)", got)
	}

	c2 := startIn(t, s, "a/b", "exec sleep 1001")
	if p, err := s.Procs("a"); err != nil || len(p) != 2 {
		t.Errorf("Procs(a) = %v, %v", p, err)
	}
	if err := s.Freeze("a"); err != nil {
		t.Fatal(err)
	}
	if fr, _ := s.Frozen("a/b"); !fr {
		t.Error("a/b not frozen")
	}
	s.Thaw("a")

	// Dynamic change through SetUnitProperties.
	if err := s.Apply("a", Limits{MemoryLimit: 128 << 20}); err != nil {
		t.Fatal(err)
	}
	if got := readTrim(t, s.Path("a", "memory")+"/memory.limit_in_bytes"); got != "134217728" {
		t.Errorf("after SetUnitProperties memory.limit_in_bytes = %s", got)
	}
	if err := s.Apply("a", Limits{Devices: []string{"c 1:3 rwm"}}); err == nil {
		t.Error("devices on a first-level scope accepted")
	}
	if err := s.Apply("a/b", Limits{MemoryLimit: 32 << 20}); err != nil {
		t.Fatal(err)
	}
	st, err := s.Stats("a")
	if err != nil || st.ProcessCount != 2 {
		t.Errorf("Stats(a) = %+v, %v", st, err)
	}

	if err := s.Kill("a", syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	c1.Wait()
	c2.Wait()
	if err := s.Remove("a"); err != nil {
		t.Fatal(err)
	}
	if got := systemctl("is-active", scope); got == "active" {
		t.Errorf("scope still active after Remove")
	}
	if s.Exists("a") || s.Exists("a/b") {
		t.Error("exists after Remove")
	}

	// Again: the scope name is reusable.
	if err := s.Create("a"); err != nil {
		t.Fatal(err)
	}
	c3 := startIn(t, s, "a", "exec sleep 1002")
	if got := systemctl("is-active", scope); got != "active" {
		t.Errorf("second scope: %s", got)
	}
	s.Kill("a", syscall.SIGKILL)
	c3.Wait()
	if err := s.Remove("a"); err != nil {
		t.Fatal(err)
	}
}

// TestSystemdAttachLatency measures the start of a scope with the first
// process (StartTransientUnit + job + porto's own hierarchies).
func TestSystemdAttachLatency(t *testing.T) {
	requireSystemd(t)
	root := fmt.Sprintf("portol%d", os.Getpid())
	s, err := NewSystemd(SystemdOptions{Options: Options{Root: root}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	var d []time.Duration
	for i := range 30 {
		name := "l" + strconv.Itoa(i)
		if err := s.Create(name); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command("sleep", "100")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t0 := time.Now()
		if err := s.Attach(name, cmd.Process.Pid); err != nil {
			t.Fatal(err)
		}
		d = append(d, time.Since(t0))
		s.Kill(name, syscall.SIGKILL)
		cmd.Wait()
		if err := s.Remove(name); err != nil {
			t.Fatal(err)
		}
	}
	s.Remove("/")
	sorted := append([]time.Duration(nil), d...)
	for i := range sorted {
		for j := i + 1; j < len(sorted); j++ {
			if sorted[j] < sorted[i] {
				sorted[i], sorted[j] = sorted[j], sorted[i]
			}
		}
	}
	t.Logf("scope start with the first process: median %v, p90 %v", sorted[len(sorted)/2], sorted[len(sorted)*9/10])
}
