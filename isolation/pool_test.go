package isolation_test

import (
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/porto-dev/porto/isolation"
)

// warmMode makes launch start a warm stage and hand it the files, instead
// of launching a stage with them.
var warmMode bool

// TestWarmStage runs the stage tests again through a warm stage: after
// Hand, a warm stage must behave exactly like a cold one.
func TestWarmStage(t *testing.T) {
	warmMode = true
	defer func() { warmMode = false }()
	for name, f := range map[string]func(*testing.T){
		"IsolatedCommandIsPid1": TestIsolatedCommandIsPid1,
		"MissingCommand":        TestMissingCommand,
		"CwdEnv":                TestCwdEnv,
		"Credentials":           TestCredentials,
		"Rlimits":               TestRlimits,
		"Hostname":              TestHostname,
		"Root":                  TestRoot,
		"Binds":                 TestBinds,
		"Init":                  TestInit,
		"InitAsUser":            TestInitAsUser,
		"CgroupProcs":           TestCgroupProcs,
		"ExecReplacesStage":     TestExecReplacesStage,
	} {
		t.Run(name, f)
	}
}

// launchWarm starts a warm stage of this test binary with no new
// namespaces.
func launchWarm(t *testing.T) (int, *os.File) {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	pid, ctl, err := isolation.LaunchWarm(self, 0)
	if err != nil {
		t.Fatal(err)
	}
	return pid, ctl
}

// A warm stage that is never used exits 0 as soon as its socket closes.
func TestWarmStageUnused(t *testing.T) {
	pid, ctl := launchWarm(t)
	ctl.Close()
	if st := wait(t, pid); !st.Exited() || st.ExitStatus() != 0 {
		t.Errorf("unused warm stage: status %#x, want exit 0", st)
	}
}

// Hand refuses a file list a stage cannot use, and the stage then exits.
func TestWarmStageBadHand(t *testing.T) {
	pid, ctl := launchWarm(t)
	f, _ := os.Open(os.DevNull)
	defer f.Close()
	if err := isolation.Hand(ctl, []*os.File{f, f, nil, f}); err == nil {
		t.Error("Hand with a missing file succeeded")
	}
	if st := wait(t, pid); !st.Exited() || st.ExitStatus() != 0 {
		t.Errorf("warm stage after a refused hand: status %#x, want exit 0", st)
	}
	// A stage that is gone makes Hand fail.
	pid, ctl = launchWarm(t)
	unix.Kill(pid, unix.SIGKILL)
	wait(t, pid)
	if err := isolation.Hand(ctl, []*os.File{f, f, f, f}); err == nil {
		t.Error("Hand to a dead stage succeeded")
	}
}

// WatchMounts sees a mount and an unmount in the caller's namespace, and
// nothing otherwise.
func TestWatchMounts(t *testing.T) {
	requireRoot(t)
	w, err := isolation.WatchMounts()
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if w.Changed() {
		t.Error("Changed without a mount")
	}
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size=64k"); err != nil {
		t.Fatal(err)
	}
	mounted := w.Changed()
	if err := unix.Unmount(dir, 0); err != nil {
		t.Fatal(err)
	}
	if !mounted {
		t.Error("a mount was not seen")
	}
	if !w.Changed() {
		t.Error("an unmount was not seen")
	}
	if w.Changed() {
		t.Error("a change was reported twice")
	}
}

// BenchmarkWarmStage times what a start pays with a warm stage: Hand,
// Release, the stage's setup up to the exec of true (WaitExec), and the
// exit of true. The launch of the warm stage is not timed.
func BenchmarkWarmStage(b *testing.B) {
	if os.Getenv("PORTO_ROOT_TESTS") != "1" || os.Geteuid() != 0 {
		b.Skip("needs root and PORTO_ROOT_TESTS=1")
	}
	self, err := os.Executable()
	if err != nil {
		b.Fatal(err)
	}
	null, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		b.Fatal(err)
	}
	defer null.Close()
	cfg := isolation.Config{Argv: []string{"true"}, Env: []string{testPath}, Isolate: true}
	flags := isolation.CloneFlags(&cfg)
	var execD, exitD time.Duration
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		pid, ctl, err := isolation.LaunchWarm(self, flags)
		if err != nil {
			b.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond) // let it settle, as in the pool
		parent, child, err := isolation.SyncPair()
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		if err := isolation.Hand(ctl, []*os.File{null, null, null, child}); err != nil {
			b.Fatal(err)
		}
		child.Close()
		if err := isolation.Release(parent, &cfg); err != nil {
			b.Fatal(err)
		}
		t0 := time.Now()
		if _, err := isolation.WaitExec(parent); err != nil {
			b.Fatal(err)
		}
		execD += time.Since(t0)
		parent.Close()
		t1 := time.Now()
		var ws unix.WaitStatus
		if _, err := unix.Wait4(pid, &ws, 0, nil); err != nil {
			b.Fatal(err)
		}
		exitD += time.Since(t1)
	}
	b.ReportMetric(float64(execD.Microseconds())/float64(b.N), "us-to-exec")
	b.ReportMetric(float64(exitD.Microseconds())/float64(b.N), "us-exec-to-exit")
}
