package supervise

import (
	"log/slog"
	"os"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/porto-dev/porto/isolation"
)

func discardLog() *slog.Logger { return slog.New(slog.DiscardHandler) }

// startSh starts "sh -c script" as a child of the test process and
// registers its cleanup.
func startSh(t *testing.T, script string) int {
	t.Helper()
	p, err := os.StartProcess("/bin/sh", []string{"sh", "-c", script},
		&os.ProcAttr{Files: []*os.File{nil, os.Stderr, os.Stderr}, Sys: &syscall.SysProcAttr{Setpgid: true}})
	if err != nil {
		t.Fatal(err)
	}
	pid := p.Pid
	p.Release()
	t.Cleanup(func() {
		syscall.Kill(-pid, syscall.SIGKILL)
		syscall.Kill(pid, syscall.SIGKILL)
		var ws syscall.WaitStatus
		syscall.Wait4(pid, &ws, 0, nil)
	})
	return pid
}

func TestPeekZombieStatus(t *testing.T) {
	for _, script := range []string{"exit 0", "exit 3", "exit 255", "kill -9 $$", "kill -TERM $$"} {
		pid := startSh(t, script)
		waitState(t, pid, "Z")
		st, zombie, err := peekZombie(pid)
		if err != nil || !zombie {
			t.Fatalf("%q: peek = %v, %v", script, zombie, err)
		}
		// Peeking twice does not reap.
		if st2, zombie, err := peekZombie(pid); err != nil || !zombie || st2 != st {
			t.Fatalf("%q: second peek = %#x %v %v", script, st2, zombie, err)
		}
		var ws syscall.WaitStatus
		if got, err := syscall.Wait4(pid, &ws, syscall.WNOHANG, nil); err != nil || got != pid {
			t.Fatalf("%q: wait4 = %d, %v", script, got, err)
		}
		if st != int(ws) {
			t.Errorf("%q: peek status %#x, wait4 status %#x", script, st, int(ws))
		}
	}
	pid := startSh(t, "exec sleep 100")
	if _, zombie, err := peekZombie(pid); err != nil || zombie {
		t.Errorf("running child: zombie=%v err=%v", zombie, err)
	}
	if _, _, err := peekZombie(1); err == nil {
		t.Error("peek of a non-child succeeded")
	}
}

func TestListChildrenSeesZombies(t *testing.T) {
	a := startSh(t, "exit 1")
	b := startSh(t, "exec sleep 100")
	waitState(t, a, "Z")
	kids, err := listChildren()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(kids, a) || !slices.Contains(kids, b) {
		t.Fatalf("children %v, want %d (zombie) and %d", kids, a, b)
	}
	kids, err = childrenFromStat(os.Getpid())
	if err != nil || !slices.Contains(kids, a) || !slices.Contains(kids, b) {
		t.Fatalf("children from stat %v (%v), want %d (zombie) and %d", kids, err, a, b)
	}
}

// onlyPids restricts a tracker to some children of the test process, so
// unrelated children of the test binary do not interfere.
func onlyPids(pids *[]int) func() ([]int, error) {
	return func() ([]int, error) { return *pids, nil }
}

func TestTrackerSeveralZombiesUntilAck(t *testing.T) {
	tr := newTracker()
	var pids []int
	tr.children = onlyPids(&pids)
	for _, code := range []int{1, 2, 3, 4, 5} {
		pids = append(pids, startSh(t, "exit "+string(rune('0'+code))))
	}
	for _, pid := range pids {
		waitState(t, pid, "Z")
	}
	got, _, _ := tr.scan(0)
	if len(got) != 5 {
		t.Fatalf("scan released %v, want 5 exits", got)
	}
	for _, e := range got {
		i := slices.Index(pids, e.Pid)
		if e.Status != (i+1)<<8 {
			t.Errorf("pid %d: status %#x, want %#x", e.Pid, e.Status, (i+1)<<8)
		}
	}
	// Not reported twice, not reaped before ack.
	if again, _, _ := tr.scan(0); len(again) != 0 {
		t.Errorf("second scan released %v", again)
	}
	if un := tr.unacked(); len(un) != 5 {
		t.Errorf("unacked %v", un)
	}
	for _, pid := range pids {
		if st, _ := procStat(pid); st != "Z" {
			t.Errorf("pid %d reaped before ack (state %q)", pid, st)
		}
	}
	for _, pid := range pids {
		if err := tr.ack(pid); err != nil {
			t.Fatal(err)
		}
		if st, _ := procStat(pid); st != "" {
			t.Errorf("pid %d not reaped after ack (state %q)", pid, st)
		}
		if err := tr.ack(pid); err != nil { // idempotent
			t.Fatal(err)
		}
	}
	if un := tr.unacked(); len(un) != 0 {
		t.Errorf("unacked after acks: %v", un)
	}
}

// An unknown zombie seen while a spawn is in flight is held until that
// spawn completes, so a spawn's reply always precedes its child's exit.
func TestTrackerOrdersSpawnBeforeExit(t *testing.T) {
	tr := newTracker()
	var pids []int
	tr.children = onlyPids(&pids)

	seq := tr.beginSpawn()
	pid := startSh(t, "exit 9") // the "fork" of the spawn in flight
	pids = append(pids, pid)
	waitState(t, pid, "Z")
	if got, _, _ := tr.scan(0); len(got) != 0 {
		t.Fatalf("released %v while its spawn was in flight", got)
	}
	got := tr.endSpawn(seq, pid)
	if len(got) != 1 || got[0] != (isolation.Exit{Pid: pid, Status: 9 << 8}) {
		t.Fatalf("endSpawn released %v", got)
	}
	tr.ack(pid)

	// A zombie seen while spawn A is in flight waits for A only, not for
	// spawns that began after it was seen.
	orphan := startSh(t, "exit 0")
	pids = append(pids, orphan)
	waitState(t, orphan, "Z")
	a := tr.beginSpawn()
	if got, _, _ := tr.scan(0); len(got) != 0 {
		t.Fatalf("released %v while a spawn was in flight", got)
	}
	b := tr.beginSpawn()
	got = tr.endSpawn(a, 0)
	if len(got) != 1 || got[0].Pid != orphan {
		t.Fatalf("after the earlier spawn ended: released %v", got)
	}
	tr.endSpawn(b, 0)
	tr.ack(orphan)
	waitState(t, orphan, "")
}

func TestTrackerSpecial(t *testing.T) {
	tr := newTracker()
	var pids []int
	tr.children = onlyPids(&pids)
	w := startSh(t, "exit 2")
	pids = append(pids, w)
	waitState(t, w, "Z")
	got, sp, st := tr.scan(w)
	if len(got) != 0 || sp != specialDead || st != 2<<8 {
		t.Fatalf("scan = %v %v %#x", got, sp, st)
	}
	if _, sp, _ := tr.scan(1); sp != specialGone {
		t.Errorf("pid 1 as worker: %v, want gone", sp)
	}
	reap(w)
}

func TestLocal(t *testing.T) {
	exe, _ := os.Executable()
	l, err := newLocal(exe, standInLaunch)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if l.SupervisorPid() != os.Getpid() {
		t.Errorf("SupervisorPid %d", l.SupervisorPid())
	}
	spawn := func(cmd string) int {
		t.Helper()
		files, done, err := commandFiles(cmd)
		if err != nil {
			t.Fatal(err)
		}
		defer done()
		pid, err := l.Spawn(isolation.LaunchSpec{}, files)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { syscall.Kill(-pid, syscall.SIGKILL); syscall.Kill(pid, syscall.SIGKILL); reap(pid) })
		return pid
	}
	wantExit := func(pid, status int) {
		t.Helper()
		timeout := time.After(10 * time.Second)
		for {
			select {
			case e := <-l.Exits():
				if e.Pid != pid {
					l.Ack(e.Pid) // something else of the test binary
					continue
				}
				if e.Status != status {
					t.Errorf("pid %d: status %#x, want %#x", pid, e.Status, status)
				}
				return
			case <-timeout:
				t.Fatalf("no exit for %d", pid)
			}
		}
	}
	a := spawn("exit 5")
	wantExit(a, 5<<8)
	if st, _ := procStat(a); st != "Z" {
		t.Errorf("reaped before ack: %q", st)
	}
	if err := l.Ack(a); err != nil {
		t.Fatal(err)
	}
	waitState(t, a, "")

	b := spawn("exec sleep 100")
	syscall.Kill(b, syscall.SIGKILL)
	wantExit(b, 9)
	l.Ack(b)
	waitState(t, b, "")

	if _, err := l.Spawn(isolation.LaunchSpec{JoinPid: -1}, make([]*os.File, 4)); err == nil {
		t.Error("failed launch reported no error")
	}
	l.Close()
	if _, ok := <-l.Exits(); ok {
		// drain what is left; it must close
		for range l.Exits() {
		}
	}
	if _, err := l.Spawn(isolation.LaunchSpec{}, nil); err == nil {
		t.Error("Spawn after Close succeeded")
	}
}
