package supervise

import (
	"log/slog"
	"os"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

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
	t.Cleanup(func() { killChild(pid) })
	return pid
}

// cpuTime is the CPU time (user and system) of the whole process.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// killChild kills and reaps pid and its process group, only if pid is
// still an unreaped child of the test (a reaped pid may belong to anyone
// by now).
func killChild(pid int) {
	if pid <= 0 {
		panic("killChild: bad pid")
	}
	if _, _, err := peekZombie(pid); err != nil {
		return
	}
	syscall.Kill(-pid, syscall.SIGKILL)
	syscall.Kill(pid, syscall.SIGKILL)
	var ws syscall.WaitStatus
	syscall.Wait4(pid, &ws, 0, nil)
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
	tr := newTestTracker(t)
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
	tr := newTestTracker(t)
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
	tr := newTestTracker(t)
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
		t.Cleanup(func() { killChild(pid) })
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

// newTestTracker is newTracker whose pidfd watcher stops with the test.
func newTestTracker(t *testing.T) *tracker {
	t.Helper()
	tr := newTracker()
	t.Cleanup(tr.close)
	return tr
}

// needWatch skips a test of the pidfd path where there are no pidfds.
func needWatch(t *testing.T, tr *tracker) {
	t.Helper()
	if tr.w == nil {
		t.Skip("no pidfd watch here (pidfd_open or unshare(CLONE_FILES) unavailable)")
	}
}

// spawnKnown starts script as a child the tracker knows, the way a spawn
// does (beginSpawn, fork, endSpawn).
func spawnKnown(t *testing.T, tr *tracker, pids *[]int, script string) int {
	t.Helper()
	seq := tr.beginSpawn()
	pid := startSh(t, script)
	*pids = append(*pids, pid)
	if got := tr.endSpawn(seq, pid); len(got) != 0 {
		t.Fatalf("endSpawn of a new child released %v", got)
	}
	return pid
}

// An exit of a known child is learned from its pidfd alone: no full scan.
func TestTrackerCheckUsesPidfds(t *testing.T) {
	tr := newTestTracker(t)
	needWatch(t, tr)
	var pids []int
	tr.children = onlyPids(&pids)
	var kids []int
	for range 20 {
		kids = append(kids, spawnKnown(t, tr, &pids, "exec sleep 100"))
	}
	tr.scan(0)
	base := tr.fullScans
	for i, pid := range kids[:5] {
		syscall.Kill(pid, syscall.SIGKILL)
		waitState(t, pid, "Z")
		got, _, _ := tr.check(0)
		if len(got) != 1 || got[0] != (isolation.Exit{Pid: pid, Status: 9}) {
			t.Fatalf("exit %d: check released %v, want pid %d killed", i, got, pid)
		}
		if st, _ := procStat(pid); st != "Z" {
			t.Fatalf("pid %d reaped before ack (state %q)", pid, st)
		}
		if err := tr.ack(pid); err != nil {
			t.Fatal(err)
		}
		waitState(t, pid, "")
	}
	if n := tr.fullScans - base; n != 0 {
		t.Errorf("%d full scans for 5 exits of known children, want 0", n)
	}
	// Two at once: learned together (and a full scan looks for orphans).
	syscall.Kill(kids[5], syscall.SIGKILL)
	syscall.Kill(kids[6], syscall.SIGKILL)
	waitState(t, kids[5], "Z")
	waitState(t, kids[6], "Z")
	got, _, _ := tr.check(0)
	if len(got) != 2 {
		t.Fatalf("check released %v, want 2 exits", got)
	}
	if len(tr.unacked()) != 2 {
		t.Errorf("unacked %v", tr.unacked())
	}
	if again, _, _ := tr.check(0); len(again) != 0 {
		t.Errorf("second check released %v", again)
	}
	tr.ack(kids[5])
	tr.ack(kids[6])
}

// A SIGCHLD that no pidfd explains (an orphan reparented to us, never
// seen alive) makes check scan in full; an orphan seen alive by a scan is
// watched from then on.
func TestTrackerCheckFindsOrphans(t *testing.T) {
	tr := newTestTracker(t)
	var pids []int
	tr.children = onlyPids(&pids)
	orphan := startSh(t, "exit 7")
	pids = append(pids, orphan)
	waitState(t, orphan, "Z")
	base := tr.fullScans
	got, _, _ := tr.check(0)
	if len(got) != 1 || got[0] != (isolation.Exit{Pid: orphan, Status: 7 << 8}) {
		t.Fatalf("check released %v, want the orphan %d", got, orphan)
	}
	if tr.fullScans == base {
		t.Error("an unexplained exit did not lead to a full scan")
	}
	tr.ack(orphan)
	waitState(t, orphan, "")

	if tr.w == nil {
		return
	}
	seen := startSh(t, "exec sleep 100")
	pids = append(pids, seen)
	tr.scan(0) // sees it alive: watches it
	if !tr.watched[seen] {
		t.Fatalf("a live orphan seen by a scan is not watched")
	}
	base = tr.fullScans
	syscall.Kill(seen, syscall.SIGKILL)
	waitState(t, seen, "Z")
	got, _, _ = tr.check(0)
	if len(got) != 1 || got[0].Pid != seen {
		t.Fatalf("check released %v, want %d", got, seen)
	}
	if tr.fullScans != base {
		t.Errorf("the exit of a watched orphan led to a full scan")
	}
	tr.ack(seen)
}

// The tick scans in full only if some zombie exists, and every
// scanEvery ticks.
func TestTrackerTick(t *testing.T) {
	tr := newTestTracker(t)
	needWatch(t, tr)
	var pids []int
	tr.children = onlyPids(&pids)
	spawnKnown(t, tr, &pids, "exec sleep 100")
	tr.scan(0)
	if anyZombie() {
		t.Skip("the test process has a zombie child it does not know")
	}
	base := tr.fullScans
	for range scanEvery - 1 {
		tr.tick(0)
	}
	if tr.fullScans != base {
		t.Fatalf("%d full scans in %d ticks without zombies", tr.fullScans-base, scanEvery-1)
	}
	tr.tick(0)
	if tr.fullScans != base+1 {
		t.Fatalf("no full scan at tick %d", scanEvery)
	}
	// An orphan zombie (its SIGCHLD taken for another exit's): the next
	// tick finds it.
	o := startSh(t, "exit 5")
	pids = append(pids, o)
	waitState(t, o, "Z")
	got, _, _ := tr.tick(0)
	if len(got) != 1 || got[0] != (isolation.Exit{Pid: o, Status: 5 << 8}) {
		t.Fatalf("tick released %v, want the orphan %d", got, o)
	}
	tr.ack(o)
}

// A child that exited before its spawn completed is found by endSpawn
// even when its SIGCHLD went to a check explained by another exit.
func TestTrackerEndSpawnOfZombie(t *testing.T) {
	tr := newTestTracker(t)
	var pids []int
	tr.children = onlyPids(&pids)
	other := spawnKnown(t, tr, &pids, "exec sleep 100")
	seq := tr.beginSpawn()
	quick := startSh(t, "exit 3")
	pids = append(pids, quick)
	waitState(t, quick, "Z")
	syscall.Kill(other, syscall.SIGKILL)
	waitState(t, other, "Z")
	got, _, _ := tr.check(0)
	for _, e := range got {
		if e.Pid == quick {
			t.Fatalf("released %v while its spawn was in flight", got)
		}
	}
	got = append(got, tr.endSpawn(seq, quick)...)
	slices.SortFunc(got, func(a, b isolation.Exit) int { return a.Pid - b.Pid })
	want := []isolation.Exit{{Pid: other, Status: 9}, {Pid: quick, Status: 3 << 8}}
	slices.SortFunc(want, func(a, b isolation.Exit) int { return a.Pid - b.Pid })
	if !slices.Equal(got, want) {
		t.Fatalf("released %v, want %v", got, want)
	}
	tr.ack(other)
	tr.ack(quick)
}

// The worker (special pid) is watched too; a known pid whose pidfd cannot
// be had is asked on every check.
func TestTrackerSpecialAndUnwatched(t *testing.T) {
	tr := newTestTracker(t)
	needWatch(t, tr)
	var pids []int
	tr.children = onlyPids(&pids)
	w := startSh(t, "exec sleep 100")
	pids = append(pids, w)
	if _, sp, _ := tr.check(w); sp != specialNone {
		t.Fatalf("live worker: %v", sp)
	}
	if !tr.watched[w] {
		t.Fatal("the worker is not watched")
	}
	base := tr.fullScans
	syscall.Kill(w, syscall.SIGTERM)
	waitState(t, w, "Z")
	if _, sp, st := tr.check(w); sp != specialDead || st != int(syscall.SIGTERM) {
		t.Fatalf("dead worker: %v %#x", sp, st)
	}
	if tr.fullScans != base {
		t.Error("the worker's exit led to a full scan")
	}
	reap(w)

	// A known pid without a pidfd (here: it cannot be opened).
	seq := tr.beginSpawn()
	k := startSh(t, "exec sleep 100")
	pids = append(pids, k)
	tr.endSpawn(seq, k)
	tr.mu.Lock()
	tr.w.unwatch(k)
	delete(tr.watched, k)
	tr.unwatched[k] = true
	tr.mu.Unlock()
	syscall.Kill(k, syscall.SIGKILL)
	waitState(t, k, "Z")
	base = tr.fullScans
	got, _, _ := tr.check(0)
	if len(got) != 1 || got[0].Pid != k {
		t.Fatalf("check released %v, want %d", got, k)
	}
	if tr.fullScans != base {
		t.Error("the exit of an unwatched known pid led to a full scan")
	}
	tr.ack(k)
	if tr.unwatched[k] || tr.known[k] {
		t.Error("ack left the pid behind")
	}
}

// Without pidfds the tracker scans in full, as it always did.
func TestTrackerWithoutWatch(t *testing.T) {
	tr := newTestTracker(t)
	tr.close()
	var pids []int
	tr.children = onlyPids(&pids)
	a := spawnKnown(t, tr, &pids, "exit 1")
	o := startSh(t, "exit 2")
	pids = append(pids, o)
	waitState(t, a, "Z")
	waitState(t, o, "Z")
	got, _, _ := tr.check(0)
	if len(got) != 2 {
		t.Fatalf("check released %v", got)
	}
	tr.ack(a)
	tr.ack(o)
	waitState(t, a, "")
	waitState(t, o, "")
}

// The pidfds live in the watcher's own file table: the process's table
// (which every fork copies) does not grow, and files the process closes
// are not kept open by the watcher's copies.
func TestPidWatchPrivateTable(t *testing.T) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fds[1])
	w, err := newPidWatch()
	if err != nil {
		t.Skip(err)
	}
	defer w.stop()
	unix.Close(fds[0])
	unix.SetNonblock(fds[1], true)
	var b [1]byte
	if n, err := unix.Read(fds[1], b[:]); n != 0 || err != nil {
		t.Errorf("peer of a closed socket: read %d, %v; want EOF (the watcher kept a copy)", n, err)
	}

	count := func() int {
		ents, err := os.ReadDir("/proc/self/fd")
		if err != nil {
			t.Fatal(err)
		}
		return len(ents)
	}
	before := count()
	var kids []int
	for range 30 {
		pid := startSh(t, "exec sleep 100")
		kids = append(kids, pid)
		w.watch(pid)
	}
	if r := w.poll(); len(r) != 0 {
		t.Fatalf("poll of live children: %v", r)
	}
	if after := count(); after > before+2 {
		t.Errorf("the process's table grew from %d to %d descriptors with 30 pidfds", before, after)
	}
	syscall.Kill(kids[3], syscall.SIGKILL)
	waitState(t, kids[3], "Z")
	r := w.poll()
	if len(r) != 1 || r[0] != (watchResult{pid: kids[3], kind: watchExited, status: 9}) {
		t.Fatalf("poll: %v", r)
	}
	if r := w.poll(); len(r) != 0 {
		t.Fatalf("second poll: %v", r)
	}
	w.watch(1 << 30) // no such pid
	if r := w.poll(); len(r) != 1 || r[0].kind != watchFailed {
		t.Fatalf("poll after a failed watch: %v", r)
	}
}

// The watcher never takes the main thread (whose table /proc/self/fd shows
// to every thread), even when it is the one free.
func TestPidWatchNotOnMainThread(t *testing.T) {
	main := "/proc/self/task/" + strconv.Itoa(os.Getpid()) + "/fd/"
	for range 20 {
		w, err := newPidWatch()
		if err != nil {
			t.Skip(err)
		}
		w.watch(startSh(t, "exec sleep 100"))
		w.poll()
		ents, _ := os.ReadDir(main)
		for _, e := range ents {
			if l, _ := os.Readlink(main + e.Name()); l == "anon_inode:[pidfd]" {
				t.Fatalf("a pidfd in the main thread's table (fd %s)", e.Name())
			}
		}
		w.stop()
	}
}

// BenchmarkTrackerExit measures learning one exit (the check a SIGCHLD
// makes) among 1000 running known children, with pidfds and without them
// (every child asked, the cost of every SIGCHLD before pidfds).
//
//	go test -run XXX -bench TrackerExit ./isolation/supervise/
func BenchmarkTrackerExit(b *testing.B) {
	for _, mode := range []string{"pidfd", "nopidfd"} {
		b.Run(mode, func(b *testing.B) {
			const running = 1000
			tr := newTracker()
			defer tr.close()
			if mode == "nopidfd" {
				tr.close() // every check is a full scan, as before pidfds
			} else if tr.w == nil {
				b.Skip("no pidfd watch here")
			}
			live := make(map[int]bool) // our children not yet reaped
			start := func() int {
				seq := tr.beginSpawn()
				p, err := os.StartProcess("/bin/sleep", []string{"sleep", "1000"}, &os.ProcAttr{})
				if err != nil {
					b.Fatal(err)
				}
				pid := p.Pid // before Release, which sets it to -1
				p.Release()
				if pid <= 0 {
					panic("bad pid") // never kill(-1) or kill(0)
				}
				tr.endSpawn(seq, pid)
				live[pid] = true
				return pid
			}
			defer func() {
				for pid := range live {
					if pid > 0 {
						syscall.Kill(pid, syscall.SIGKILL)
						var ws syscall.WaitStatus
						syscall.Wait4(pid, &ws, 0, nil)
					}
				}
			}()
			var pids []int
			for range running {
				pids = append(pids, start())
			}
			tr.children = func() ([]int, error) { return listChildren() }
			tr.scan(0)
			b.ResetTimer()
			var learn, cpu time.Duration
			scans := tr.fullScans
			for i := range b.N {
				b.StopTimer()
				victim := pids[i%running]
				if victim <= 0 || !live[victim] {
					panic("bad victim")
				}
				syscall.Kill(victim, syscall.SIGKILL)
				for {
					if st, _ := procStat(victim); st == "Z" {
						break
					}
					time.Sleep(100 * time.Microsecond)
				}
				b.StartTimer()
				t0, c0 := time.Now(), cpuTime()
				var got []isolation.Exit
				got, _, _ = tr.check(0)
				learn += time.Since(t0)
				cpu += cpuTime() - c0
				for _, e := range got {
					tr.ack(e.Pid)
					delete(live, e.Pid)
				}
				b.StopTimer()
				pids[i%running] = start()
				b.StartTimer()
			}
			b.ReportMetric(float64(learn.Microseconds())/float64(b.N), "µs/learn")
			b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/learn")
			b.ReportMetric(float64(tr.fullScans-scans)/float64(b.N), "fullscans/learn")
		})
	}
}

// The exit of a stage that forked the command into a joined pid namespace
// makes a check scan in full: the command is now an orphan of ours that no
// pidfd covers, and its exit must not wait for a tick (a worker waits for
// it to finish a stop).
func TestTrackerForkerExitScansInFull(t *testing.T) {
	tr := newTestTracker(t)
	needWatch(t, tr)
	var pids []int
	tr.children = onlyPids(&pids)
	seq := tr.beginSpawn()
	forker := startSh(t, "exec sleep 100")
	pids = append(pids, forker)
	if got := tr.endSpawnOf(seq, forker, true); len(got) != 0 {
		t.Fatalf("endSpawnOf released %v", got)
	}
	orphan := startSh(t, "exit 3") // stands for the command it forked
	pids = append(pids, orphan)
	waitState(t, orphan, "Z")
	syscall.Kill(forker, syscall.SIGKILL)
	waitState(t, forker, "Z")
	got, _, _ := tr.check(0)
	if len(got) != 2 {
		t.Fatalf("check released %v, want the forker %d and the orphan %d", got, forker, orphan)
	}
	tr.ack(forker)
	tr.ack(orphan)
}
