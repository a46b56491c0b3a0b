package tests

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// warmStages returns the pids of the master's idle warm isolation stages.
func (e *Env) warmStages() []int {
	e.mu.Lock()
	master := 0
	if e.portod != nil {
		master = e.portod.Process.Pid
	}
	e.mu.Unlock()
	var out []int
	for _, p := range allProcs() {
		if p.ppid == master && p.state != "Z" && strings.HasSuffix(p.cmdline, " __isolate pool") {
			out = append(out, p.pid)
		}
	}
	return out
}

// waitWarm waits until the master has exactly one warm stage and returns
// its pid.
func (e *Env) waitWarm(t *testing.T) int {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		w := e.warmStages()
		if len(w) == 1 {
			return w[0]
		}
		if time.Now().After(deadline) {
			t.Fatalf("want one warm stage, have %v", w)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestWarmStagePool: a start takes the master's warm stage (the
// container's root process is that very process), a new one is made
// behind it, a mount on the host discards it (the container sees the new
// mount), and stage_pool = 0 keeps none.
func TestWarmStagePool(t *testing.T) {
	e := NewEnv(t)
	e.CleanupContainers(t)
	if w := e.warmStages(); len(w) != 0 {
		t.Fatalf("warm stages before the first start: %v", w)
	}
	e.OK(t, rootUser, "run", "first", "command=true")
	e.Out(t, rootUser, "wait", "first")
	warm := e.waitWarm(t)
	if exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", warm)); err != nil || filepath.Base(exe) != "porto-stage" {
		t.Errorf("the warm stage runs %q (%v), want porto-stage (porto_stage in porto.conf)", exe, err)
	}

	// The next start of the same kind uses it.
	e.OK(t, rootUser, "run", "hot", "command=sleep 100")
	if got := e.Out(t, rootUser, "get", "hot", "root_pid"); got != strconv.Itoa(warm) {
		t.Errorf("root_pid of hot = %s, want the warm stage %d", got, warm)
	}
	if got := e.runOut(t, "ps", "command=ps -o pid= -o comm="); !strings.Contains(got, "1 ps") {
		t.Errorf("ps in a warm-started container: %q", got)
	}
	e.OK(t, rootUser, "destroy", "ps")
	e.OK(t, rootUser, "destroy", "hot")

	// A mount made after the warm stage was cloned: the stage is discarded
	// and the container sees the mount.
	warm = e.waitWarm(t)
	e.lateMount(t)
	e.OK(t, rootUser, "destroy", "late")
	deadline := time.Now().Add(5 * time.Second)
	for {
		if st := procState(warm); st == "" {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("the out-of-date warm stage %d is still there (state %s)", warm, st)
		}
		time.Sleep(10 * time.Millisecond)
	}

	// Stopping portod leaves no warm stage behind.
	warm = e.waitWarm(t)
	if err := e.StopPortod(); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(5 * time.Second)
	for procState(warm) != "" && procState(warm) != "Z" {
		if time.Now().After(deadline) {
			t.Fatalf("warm stage %d outlived portod", warm)
		}
		time.Sleep(10 * time.Millisecond)
	}
	e.StartPortod()

	t.Run("off", func(t *testing.T) {
		e := NewEnvWith(t, []string{"stage_pool = 0"})
		e.CleanupContainers(t)
		e.OK(t, rootUser, "run", "a", "command=true")
		e.Out(t, rootUser, "wait", "a")
		e.OK(t, rootUser, "run", "b", "command=true")
		e.Out(t, rootUser, "wait", "b")
		time.Sleep(100 * time.Millisecond)
		if w := e.warmStages(); len(w) != 0 {
			t.Errorf("stage_pool = 0: warm stages %v", w)
		}
		e.lateMount(t)
	})
}

// runOut runs a container as root, waits for it and returns its stdout.
func (e *Env) runOut(t *testing.T, name string, props ...string) string {
	t.Helper()
	e.OK(t, rootUser, append([]string{"run", name}, props...)...)
	e.Out(t, rootUser, "wait", name)
	return strings.TrimSpace(e.Out(t, rootUser, "get", name, "stdout"))
}

// lateMount mounts a tmpfs on the host and checks that a container
// started next sees it.
func (e *Env) lateMount(t *testing.T) {
	t.Helper()
	dir := filepath.Join(e.Dir, "late-mount")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size=64k"); err != nil {
		t.Fatal(err)
	}
	defer unix.Unmount(dir, 0)
	if err := os.WriteFile(filepath.Join(dir, "marker"), []byte("late\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := e.runOut(t, "late", "command=cat "+dir+"/marker"); got != "late" {
		t.Errorf("container started after a host mount: cat = %q, want late; stderr %q, exit %s", got, e.Out(t, rootUser, "get", "late", "stderr"), e.Ctl(rootUser, "dget", "late", "exit_status").Stdout)
	}
}
