package supervise

import (
	"errors"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/porto-dev/porto/isolation"
)

// si_code values of SIGCHLD (not in x/sys).
const (
	cldExited = 1
	cldKilled = 2
	cldDumped = 3
)

// sigchldInfo is siginfo_t as waitid fills it for a child. The union
// starts at 16 on 64-bit targets and at 12 on 32-bit ones.
type sigchldInfo struct {
	Signo  int32
	Errno  int32
	Code   int32
	_      [unsafe.Sizeof(uintptr(0)) / 8 * 4]byte
	Pid    int32
	UID    uint32
	Status int32
	_      [100]byte
}

// peekZombie looks at child pid without reaping it. It returns the raw
// wait(2) status and true if pid is a zombie, false if it is still
// running, and an error (unix.ECHILD) if pid is not our child.
func peekZombie(pid int) (status int, zombie bool, err error) {
	var info sigchldInfo
	for {
		err = unix.Waitid(unix.P_PID, pid, (*unix.Siginfo)(unsafe.Pointer(&info)),
			unix.WEXITED|unix.WNOHANG|unix.WNOWAIT, nil)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		return 0, false, err
	}
	if info.Pid == 0 {
		return 0, false, nil
	}
	return waitStatus(info.Code, info.Status), true, nil
}

// waitStatus converts waitid's si_code/si_status into the status word
// wait(2) returns.
func waitStatus(code, st int32) int {
	switch code {
	case cldExited:
		return int(st&0xff) << 8
	case cldKilled:
		return int(st & 0x7f)
	case cldDumped:
		return int(st&0x7f) | 0x80
	}
	return int(st&0xff) << 8
}

// reap collects zombie pid. A pid that is not (or no longer) our child
// counts as reaped.
func reap(pid int) (bool, error) {
	var ws unix.WaitStatus
	for {
		got, err := unix.Wait4(pid, &ws, unix.WNOHANG, nil)
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.ECHILD:
			return true, nil
		case err != nil:
			return false, err
		}
		return got == pid, nil
	}
}

// listChildren returns the pids of every child of this process, zombies
// included, from /proc/self/task/*/children, or, on kernels without
// CONFIG_PROC_CHILDREN, from the ppid field of every /proc/<pid>/stat.
func listChildren() ([]int, error) {
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return nil, err
	}
	var pids []int
	read := 0
	for _, t := range tasks {
		b, err := os.ReadFile("/proc/self/task/" + t.Name() + "/children")
		if err != nil {
			if errors.Is(err, os.ErrNotExist) || errors.Is(err, unix.ESRCH) {
				continue // the thread is gone (or the file does not exist)
			}
			return pids, err
		}
		read++
		for _, f := range strings.Fields(string(b)) {
			if pid, err := strconv.Atoi(f); err == nil && pid > 0 {
				pids = append(pids, pid)
			}
		}
	}
	if read == 0 {
		return childrenFromStat(os.Getpid())
	}
	return pids, nil
}

// childrenFromStat finds the children of parent by scanning /proc.
func childrenFromStat(parent int) ([]int, error) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) > 1 && f[1] == strconv.Itoa(parent) {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

// tracker knows which children have exited, reported and not yet
// acknowledged. It never reaps a child before it was acknowledged.
//
// Several zombies at once: waitid(P_ALL, WNOWAIT) would keep returning the
// same one, so each candidate is asked with waitid(P_PID or P_PIDFD, pid,
// WNOWAIT): candidates are the pids Spawn returned plus every child listed
// in /proc/self/task/*/children (orphans reparented to us as subreaper).
//
// Cost: every child seen alive (known or not, the special pid too) gets a
// pidfd in the pidWatch's epoll set. check, on SIGCHLD, asks only the
// pidfds that became readable: O(1) per exit. It falls back to the full
// scan (listing every child and asking each child without a pidfd) when
// the SIGCHLD is not explained by a readable pidfd and some zombie exists
// (an orphan reparented since the last scan, the child of a spawn in
// flight), or when several children exited at once (a signal of an orphan
// may have merged with theirs). scan, at start, is always full: it
// watches every child (an upgraded master inherits its children without
// pidfds). tick, every second, is a check that scans in full if any
// zombie exists at all (waitid(P_ALL, WNOWAIT), which walks the children
// in the kernel at a tenth of the cost of a full scan): it catches an
// orphan whose SIGCHLD merged with another exit's; every tenth tick is a
// full scan, which watches the orphans reparented to us meanwhile. Without pidfds
// (old kernel) every check is a full scan; a child whose pidfd could not
// be opened (EMFILE) is asked on every check.
//
// Ordering: an exit of a pid is never released before the spawn that
// created it has completed, so a spawn's reply always precedes its exit.
// A zombie whose pid is not known is held until every spawn that was in
// flight when it was seen has completed (it is then either a known pid or
// a genuine orphan).
type tracker struct {
	mu        sync.Mutex
	known     map[int]bool          // spawned, not reaped
	pending   map[int]pendingExit   // released, not acknowledged
	held      map[int]heldExit      // seen, waiting for spawns in flight
	inflight  map[uint64]bool       // spawn sequence numbers in flight
	seq       uint64                // last spawn sequence number
	order     uint64                // release order of pending exits
	children  func() ([]int, error) // listChildren; replaced in tests
	w         *pidWatch             // nil: no pidfds, every check is a full scan
	watched   map[int]bool          // a pidfd was asked for (and not yet reported)
	unwatched map[int]bool          // known or special pids whose pidfd failed: asked on every check
	special   int                   // the special pid of the last check or scan
	fullScans uint64                // full scans done (tests, debugging)
	ticks     uint64
	// forkers are launched stages that fork the container's command into
	// a joined pid namespace and exit: the command then becomes our child
	// (an orphan no pidfd covers), so their exit triggers a full scan.
	forkers map[int]bool
}

type pendingExit struct {
	status int
	order  uint64
}

type heldExit struct {
	status  int
	barrier uint64 // every spawn <= barrier must complete first
}

func newTracker() *tracker {
	t := &tracker{
		known:     make(map[int]bool),
		pending:   make(map[int]pendingExit),
		held:      make(map[int]heldExit),
		inflight:  make(map[uint64]bool),
		children:  listChildren,
		watched:   make(map[int]bool),
		unwatched: make(map[int]bool),
		forkers:   make(map[int]bool),
	}
	if w, err := newPidWatch(); err == nil {
		t.w = w
	}
	return t
}

// close stops the pidfd watcher; the tracker goes on with full scans.
func (t *tracker) close() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.w != nil {
		t.w.stop()
		t.w = nil
		clear(t.watched)
	}
}

// beginSpawn must be called before forking; endSpawn after, with the pid
// (0 on failure). endSpawn returns exits it released.
func (t *tracker) beginSpawn() uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.seq++
	t.inflight[t.seq] = true
	return t.seq
}

func (t *tracker) endSpawn(seq uint64, pid int) []isolation.Exit {
	return t.endSpawnOf(seq, pid, false)
}

// endSpawnOf is endSpawn; forker says that the stage forks the command
// into a joined pid namespace and exits (see forksCommand).
func (t *tracker) endSpawnOf(seq uint64, pid int, forker bool) []isolation.Exit {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.inflight, seq)
	if pid > 0 {
		t.known[pid] = true
		if forker {
			t.forkers[pid] = true
		}
		t.watchNewLocked(pid)
	}
	return t.releaseLocked()
}

// forksCommand says whether the stage of spec forks the container's
// command into a joined pid namespace and exits (isolation.Launch).
func forksCommand(spec isolation.LaunchSpec) bool {
	return spec.JoinPid > 0 && slices.Contains(spec.JoinNS, "pid")
}

// watchNewLocked sets up the pidfd of a new known child. The child may
// already be a zombie whose SIGCHLD a check took for another exit's:
// look once.
func (t *tracker) watchNewLocked(pid int) {
	if t.w == nil || t.watched[pid] || t.isAccountedLocked(pid) {
		return
	}
	status, zombie, err := peekZombie(pid)
	switch {
	case err != nil:
		t.unwatched[pid] = true // the next check finds it gone
	case zombie:
		t.held[pid] = heldExit{status: status, barrier: t.seq}
	default:
		t.w.watch(pid)
		t.watched[pid] = true
	}
}

func (t *tracker) isAccountedLocked(pid int) bool {
	if _, ok := t.pending[pid]; ok {
		return true
	}
	_, ok := t.held[pid]
	return ok
}

// SpecialDead etc. describe the special pid (the worker) in a scan.
type specialState int

const (
	specialNone specialState = iota // not asked, or alive
	specialDead                     // a zombie: status is valid
	specialGone                     // not our child at all
)

// scan checks every candidate child. special (if > 0) is the worker: its
// zombie is returned separately and never recorded as pending.
func (t *tracker) scan(special int) (released []isolation.Exit, sp specialState, spStatus int) {
	return t.sweep(special, sweepFull)
}

// tick is the periodic sweep: a check that scans in full if any zombie
// exists at all (an orphan whose SIGCHLD merged with another exit's), and
// a full scan every scanEvery ticks (it watches the orphans reparented to
// us meanwhile, and retries the pidfds that failed).
func (t *tracker) tick(special int) (released []isolation.Exit, sp specialState, spStatus int) {
	t.mu.Lock()
	t.ticks++
	mode := sweepTick
	if t.ticks%scanEvery == 0 {
		mode = sweepFull
	}
	t.mu.Unlock()
	return t.sweep(special, mode)
}

// scanEvery is how many ticks make a full scan.
const scanEvery = 10

// check is scan for a SIGCHLD: it asks only the children whose pidfd
// became readable (and those without a pidfd), and scans in full only
// when they do not explain the signal (see tracker).
func (t *tracker) check(special int) (released []isolation.Exit, sp specialState, spStatus int) {
	return t.sweep(special, sweepCheck)
}

// sweep modes: what makes a sweep scan in full.
const (
	sweepCheck = iota // a SIGCHLD: only when the pidfds do not explain it
	sweepTick         // the periodic tick: whenever some zombie exists
	sweepFull         // always
)

type sweepState struct {
	special  int
	sp       specialState
	spStatus int
	found    int  // exits (or disappearances) learned
	forked   bool // a forker exited: its command is an orphan of ours now
}

func (t *tracker) sweep(special int, mode int) ([]isolation.Exit, specialState, int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	full := mode == sweepFull
	st := sweepState{special: special}
	t.setSpecialLocked(special)
	if t.w == nil {
		full = true
	} else {
		for _, r := range t.w.poll() {
			delete(t.watched, r.pid)
			switch r.kind {
			case watchExited:
				t.zombieLocked(&st, r.pid, r.status)
			case watchGone:
				t.goneLocked(&st, r.pid)
			default: // no pidfd: ask it on every check
				if t.known[r.pid] || r.pid == special {
					t.unwatched[r.pid] = true
				}
			}
		}
	}
	if !full {
		for pid := range t.unwatched {
			if t.isAccountedLocked(pid) {
				continue
			}
			status, zombie, err := peekZombie(pid)
			switch {
			case err != nil:
				t.goneLocked(&st, pid)
			case zombie:
				t.zombieLocked(&st, pid, status)
			}
		}
		full = st.found > 1 || st.forked || ((st.found == 0 || mode == sweepTick) && anyZombie())
	}
	for full {
		st.forked = false
		t.fullLocked(&st)
		// A forker this scan found exited may have had its command
		// reparented to us after the scan listed our children: again.
		full = st.forked
	}
	return t.releaseLocked(), st.sp, st.spStatus
}

// setSpecialLocked moves the pidfd watch to a new special pid.
func (t *tracker) setSpecialLocked(special int) {
	if special == t.special {
		return
	}
	if old := t.special; old > 0 && !t.known[old] {
		if t.watched[old] {
			t.w.unwatch(old)
			delete(t.watched, old)
		}
		delete(t.unwatched, old)
	}
	t.special = special
	if special > 0 && t.w != nil && !t.watched[special] {
		t.w.watch(special)
		t.watched[special] = true
	}
}

// zombieLocked records that pid is a zombie with status.
func (t *tracker) zombieLocked(st *sweepState, pid, status int) {
	st.found++
	delete(t.unwatched, pid)
	if t.forkers[pid] {
		delete(t.forkers, pid)
		st.forked = true
	}
	if pid == st.special {
		st.sp, st.spStatus = specialDead, status
		return
	}
	if t.isAccountedLocked(pid) {
		return
	}
	t.held[pid] = heldExit{status: status, barrier: t.seq}
}

// goneLocked records that pid is not (or no longer) our child.
func (t *tracker) goneLocked(st *sweepState, pid int) {
	st.found++
	delete(t.unwatched, pid)
	delete(t.forkers, pid)
	if pid == st.special {
		st.sp = specialGone
		return
	}
	delete(t.known, pid)
}

// fullLocked asks every child that has no pidfd, and watches those alive.
func (t *tracker) fullLocked(st *sweepState) {
	t.fullScans++
	kids, _ := t.children() // on error, still check the pids we know
	cands := make(map[int]bool, len(kids)+len(t.known)+1)
	for _, pid := range kids {
		cands[pid] = true
	}
	for pid := range t.known {
		cands[pid] = true
	}
	if st.special > 0 {
		cands[st.special] = true
	}
	for pid := range cands {
		if t.isAccountedLocked(pid) || (t.watched[pid] && pid != st.special) {
			continue // (the special pid comes from outside: it may not be a child)
		}
		status, zombie, err := peekZombie(pid)
		switch {
		case err != nil:
			t.goneLocked(st, pid)
		case zombie:
			t.zombieLocked(st, pid, status)
		case t.w != nil && !t.watched[pid]:
			// Alive: from now on its pidfd tells (a failure makes it
			// unwatched again at the next poll).
			t.w.watch(pid)
			t.watched[pid] = true
			delete(t.unwatched, pid)
		}
	}
}

// anyZombie says whether this process has a zombie child at all.
func anyZombie() bool {
	var info sigchldInfo
	for {
		err := unix.Waitid(unix.P_ALL, 0, (*unix.Siginfo)(unsafe.Pointer(&info)),
			unix.WEXITED|unix.WNOHANG|unix.WNOWAIT, nil)
		if err == unix.EINTR {
			continue
		}
		return err == nil && info.Pid != 0
	}
}

// releaseLocked moves held exits whose barrier has passed to pending.
func (t *tracker) releaseLocked() []isolation.Exit {
	if len(t.held) == 0 {
		return nil
	}
	minInflight := ^uint64(0)
	for s := range t.inflight {
		minInflight = min(minInflight, s)
	}
	var out []isolation.Exit
	for pid, h := range t.held {
		if !t.known[pid] && h.barrier >= minInflight {
			continue // may still be the child of a spawn in flight
		}
		delete(t.held, pid)
		if !t.known[pid] {
			// An orphan: make sure nobody reaped it meanwhile (os.StartProcess
			// reaps a child whose exec failed).
			if _, zombie, err := peekZombie(pid); err != nil || !zombie {
				continue
			}
		}
		t.order++
		t.pending[pid] = pendingExit{status: h.status, order: t.order}
		out = append(out, isolation.Exit{Pid: pid, Status: h.status})
	}
	slices.SortFunc(out, func(a, b isolation.Exit) int { return a.Pid - b.Pid })
	return out
}

// ack reaps pid if it is a pending exit. Acknowledging anything else is a
// no-op, so acks are idempotent.
func (t *tracker) ack(pid int) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.pending[pid]; !ok {
		return nil
	}
	done, err := reap(pid)
	if err != nil {
		return err
	}
	if done {
		delete(t.pending, pid)
		delete(t.known, pid)
		delete(t.unwatched, pid)
		if t.watched[pid] {
			t.w.unwatch(pid)
			delete(t.watched, pid)
		}
	}
	return nil
}

// unacked returns every released, unacknowledged exit in release order.
func (t *tracker) unacked() []isolation.Exit {
	t.mu.Lock()
	defer t.mu.Unlock()
	type ordered struct {
		e isolation.Exit
		o uint64
	}
	all := make([]ordered, 0, len(t.pending))
	for pid, p := range t.pending {
		all = append(all, ordered{isolation.Exit{Pid: pid, Status: p.status}, p.order})
	}
	slices.SortFunc(all, func(a, b ordered) int {
		if a.o < b.o {
			return -1
		}
		if a.o > b.o {
			return 1
		}
		return 0
	})
	out := make([]isolation.Exit, len(all))
	for i, a := range all {
		out[i] = a.e
	}
	return out
}

// setSubreaper makes this process the reaper of its orphaned descendants.
func setSubreaper() error {
	return unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
}
