package units

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestV2RealUnified runs the V2 driver on the real cgroup2 hierarchy that
// these hosts mount at /sys/fs/cgroup/unified. It has no cpu, memory,
// pids or io controller (they are bound to v1), so limits and most
// counters cannot be tried; what does run for real is everything that is
// cgroup core on v2: the .self leaf layout, attach, recursive procs,
// cgroup.freeze with cgroup.events, cgroup.kill, the kill of a daemonized
// grandchild, cpu.stat's usage and removal.
func TestV2RealUnified(t *testing.T) {
	requireRoot(t)
	const mount = "/sys/fs/cgroup/unified"
	if !exists(mount + "/cgroup.controllers") {
		t.Skip("no cgroup2 at " + mount)
	}
	root := fmt.Sprintf("porto-test-%d-v2", os.Getpid())
	opts := Options{MountRoot: mount, Root: root, Log: quiet}
	if err := opts.fill(); err != nil {
		t.Fatal(err)
	}
	v := &V2{opts: opts, log: quiet, root: mount + "/" + root, freezeTimeout: freezeTimeout}
	if _, err := claimRoot(v.root); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if pids, _ := v.Procs("/"); len(pids) > 0 {
			writeFile(v.root+"/cgroup.kill", "1")
			time.Sleep(100 * time.Millisecond)
		}
		if err := v.Remove("/"); err != nil {
			t.Errorf("cleanup: %v", err)
		}
		if exists(v.root) {
			t.Errorf("left %s", v.root)
		}
	})
	for _, n := range []string{"a", "a/b", "a/b.c"} {
		if err := v.Create(n); err != nil {
			t.Fatalf("Create(%s): %v", n, err)
		}
	}
	c1 := startIn(t, v, "a", "sleep 1000 & (sleep 1001 &); exec sleep 1002")
	c2 := startIn(t, v, "a/b", `i=0; while [ $i -lt 100000 ]; do i=$((i+1)); done; exec sleep 1003`)
	waitFor(t, "4 processes", 5*time.Second, func() bool {
		p, _ := v.Procs("a")
		return len(p) == 4
	})
	cg, _ := os.ReadFile("/proc/" + strconv.Itoa(c2.Process.Pid) + "/cgroup")
	if !strings.Contains(string(cg), "0::/"+root+"/a/b/.self\n") {
		t.Errorf("a/b's process is not in its leaf:\n%s", cg)
	}
	if p, _ := v.Procs("a/b"); !slices.Equal(p, []int{c2.Process.Pid}) {
		t.Errorf("Procs(a/b) = %v", p)
	}
	waitFor(t, "the loop to finish", 10*time.Second, func() bool { return procState(c2.Process.Pid) == "S" })
	st, err := v.Stats("a/b")
	t.Logf("Stats(a/b) without controllers: %+v (%v)", st, err)
	if st.CPUUsage == 0 || st.ProcessCount != 1 {
		t.Errorf("cpu.stat usage or procs not read: %+v", st)
	}

	if err := v.Freeze("a"); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"a", "a/b"} {
		if fr, err := v.Frozen(n); err != nil || !fr {
			t.Errorf("Frozen(%s) = %v, %v", n, fr, err)
		}
	}
	if s := procState(c1.Process.Pid); s != "D" && s != "T" && s != "S" {
		t.Errorf("frozen process state %s", s)
	}
	if err := v.Thaw("a"); err != nil {
		t.Fatal(err)
	}
	if fr, _ := v.Frozen("a/b"); fr {
		t.Error("still frozen after Thaw")
	}

	// SIGTERM goes through freeze, signal, thaw.
	if err := v.Kill("a/b", syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	c2.Wait()
	if ws := c2.ProcessState.Sys().(syscall.WaitStatus); ws.Signal() != syscall.SIGTERM {
		t.Errorf("a/b ended with %v", c2.ProcessState)
	}
	// A paused container dies of SIGKILL (cgroup.kill) with the daemonized
	// grandchild.
	if err := v.Freeze("a"); err != nil {
		t.Fatal(err)
	}
	if err := v.Kill("a", syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	c1.Wait()
	waitFor(t, "no processes", 5*time.Second, func() bool {
		p, _ := v.Procs("a")
		return len(p) == 0
	})
	v.Thaw("a")
	if err := v.Remove("a"); err != nil {
		t.Fatal(err)
	}
	if v.Exists("a") {
		t.Error("a exists after Remove")
	}
	_ = errors.New
}
