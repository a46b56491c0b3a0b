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
// same one, so scan asks each candidate with waitid(P_PID, pid, WNOWAIT):
// candidates are the pids Spawn returned plus every child listed in
// /proc/self/task/*/children (orphans reparented to us as subreaper).
//
// Ordering: an exit of a pid is never released before the spawn that
// created it has completed, so a spawn's reply always precedes its exit.
// A zombie whose pid is not known is held until every spawn that was in
// flight when it was seen has completed (it is then either a known pid or
// a genuine orphan).
type tracker struct {
	mu       sync.Mutex
	known    map[int]bool          // spawned, not reaped
	pending  map[int]pendingExit   // released, not acknowledged
	held     map[int]heldExit      // seen, waiting for spawns in flight
	inflight map[uint64]bool       // spawn sequence numbers in flight
	seq      uint64                // last spawn sequence number
	order    uint64                // release order of pending exits
	children func() ([]int, error) // listChildren; replaced in tests
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
	return &tracker{
		known:    make(map[int]bool),
		pending:  make(map[int]pendingExit),
		held:     make(map[int]heldExit),
		inflight: make(map[uint64]bool),
		children: listChildren,
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
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.inflight, seq)
	if pid > 0 {
		t.known[pid] = true
	}
	return t.releaseLocked()
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
	kids, _ := t.children() // on error, still check the pids we know

	t.mu.Lock()
	defer t.mu.Unlock()
	cands := make(map[int]bool, len(kids)+len(t.known)+1)
	for _, pid := range kids {
		cands[pid] = true
	}
	for pid := range t.known {
		cands[pid] = true
	}
	if special > 0 {
		cands[special] = true
	}
	for pid := range cands {
		if _, ok := t.pending[pid]; ok {
			continue
		}
		if _, ok := t.held[pid]; ok {
			continue
		}
		status, zombie, err := peekZombie(pid)
		if pid == special {
			switch {
			case err != nil:
				sp = specialGone
			case zombie:
				sp, spStatus = specialDead, status
			}
			continue
		}
		if err != nil {
			delete(t.known, pid) // not our child (any more)
			continue
		}
		if !zombie {
			continue
		}
		t.held[pid] = heldExit{status: status, barrier: t.seq}
	}
	return t.releaseLocked(), sp, spStatus
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
