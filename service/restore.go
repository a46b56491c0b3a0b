package service

import (
	"context"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/porto-dev/porto/api"
	"golang.org/x/sys/unix"
)

// Restore reloads persisted containers (parents first) and reconciles each
// with what really runs: is its root process alive and still the same
// process, is it still our supervisor's child, is its cgroup frozen.
func (m *Manager) Restore(ctx context.Context) error {
	t0 := time.Now()
	recs, bad := m.store.load()
	for _, b := range bad {
		m.log.Error("unreadable container state set aside", "detail", b)
	}
	sort.Slice(recs, func(i, j int) bool {
		di, dj := depth(recs[i].Name), depth(recs[j].Name)
		if di != dj {
			return di < dj
		}
		return recs[i].Name < recs[j].Name
	})
	var restored []*Container
	m.treeMu.Lock()
	for _, r := range recs {
		parent := m.root
		if pn := api.ParentName(r.Name); pn != api.RootName {
			parent = m.byName[pn]
		}
		if parent == nil {
			m.log.Error("container without parent dropped", "container", r.Name)
			continue
		}
		if r.Props == nil {
			r.Props = map[string]string{}
		}
		c := &Container{name: r.Name, parent: parent, children: map[string]*Container{}, rec: r}
		m.byName[r.Name] = c
		parent.children[r.Name] = c
		restored = append(restored, c)
	}
	m.treeMu.Unlock()

	// Reconcile level by level, parents before their children; the
	// containers of one level in parallel. Each one is a few procfs and
	// cgroupfs reads, and 1000 of them in a row were most of the restore.
	var running atomic.Int64
	for lo := 0; lo < len(restored); {
		hi := lo + 1
		for hi < len(restored) && depth(restored[hi].name) == depth(restored[lo].name) {
			hi++
		}
		level := restored[lo:hi]
		var next atomic.Int64
		var wg sync.WaitGroup
		for range min(len(level), restoreWorkers) {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					i := int(next.Add(1)) - 1
					if i >= len(level) {
						return
					}
					if m.reconcile(level[i]) {
						running.Add(1)
					}
				}
			}()
		}
		wg.Wait()
		lo = hi
	}
	m.restoreNetwork(restored)
	m.log.Info("containers restored", "count", len(restored), "with_process", running.Load(), "took", time.Since(t0))
	return nil
}

// reconcile brings one restored container in line with reality; it
// reports whether the container has a live process.
func (m *Manager) reconcile(c *Container) bool {
	r := c.rec
	pid := r.RootPid
	start, ppid := uint64(0), 0
	if pid > 0 {
		start, ppid = procStartPPid(pid)
	}
	same := pid > 0 && start == r.RootStart && r.RootStart != 0
	switch r.State {
	case api.StateStopped:
		// A start may have been cut short at any step before its record
		// said running: cgroups made, working directory made, process
		// spawned (waiting for a config that never came, or already
		// running the command if the kill hit between the release and the
		// record of its start time, so "same" cannot be known). Its
		// process was attached to the cgroups before the record got its
		// pid: kill whatever is in them, then clean up.
		wd := filepath.Join(m.cfg.Place, c.name)
		strayDir := false
		if r.WorkDir == "" && m.value(c, "root") == "/" {
			if _, err := os.Lstat(wd); err == nil {
				strayDir = true
			}
		}
		if pid > 0 || strayDir || m.cg.Exists(c.name) {
			if same {
				syscall.Kill(pid, syscall.SIGKILL)
			}
			if strayDir {
				c.mu.Lock()
				c.rec.WorkDir = wd
				c.mu.Unlock()
			}
			// The cleanup may wait for zombies in the cgroups, which are
			// reaped only once exits are dispatched (after Run): do it in
			// the background, holding c's operation lock so that no
			// operation sees the container half cleaned. The lock is free
			// now unless the death of an ancestor is being handled (that
			// may wait for exits too): then take it in the background.
			l, ok := m.tryLock(c)
			go func() {
				if !ok {
					l, _ = m.lock(c, false)
				}
				defer l.unlock()
				m.cleanupInterrupted(c)
			}()
		}
		return false
	case api.StateDead:
		m.scheduleAfterDeath(c)
		return false
	}
	// running, meta, paused
	if pid == 0 {
		return false // a meta container without a process
	}
	if !same {
		// Gone, or the pid is another process now, and not a zombie of
		// ours: nobody could learn its exit status. A paused container
		// whose process is gone (a stop cut short after the kill) is not
		// paused any more: it dies from the state it was paused in, or
		// handleDeath would leave it paused for a resume.
		if r.State == api.StatePaused {
			from := r.PausedFrom
			if from == "" {
				from = api.StateRunning
			}
			c.mu.Lock()
			c.rec.State, c.rec.PausedFrom = from, ""
			c.mu.Unlock()
		}
		m.registerPid(c, pid)
		m.markDeadRestored(c)
		return false
	}
	m.registerPid(c, pid)
	fr, err := m.cg.Frozen(c.name)
	frozen := err == nil && fr
	switch {
	case frozen && r.State != api.StatePaused:
		// Frozen: a pause (of c or an ancestor) was cut short before the
		// record said so.
		c.mu.Lock()
		c.rec.PausedFrom = r.State
		c.rec.State = api.StatePaused
		c.mu.Unlock()
		m.save(c)
	case !frozen && r.State == api.StatePaused:
		// Thawed, or its cgroups are gone: a resume or a stop was cut
		// short. It is not paused (and its exit, if it comes, must not
		// wait for a resume).
		from := r.PausedFrom
		if from == "" {
			from = api.StateRunning
		}
		c.mu.Lock()
		c.rec.State = from
		c.rec.PausedFrom = ""
		c.mu.Unlock()
		m.save(c)
	case !frozen && err == nil:
		// Not frozen, but perhaps FREEZING: a pause cut short while the
		// kernel was still freezing would end up frozen under a record
		// that says running. Thaw, so that the record holds.
		if err := m.cg.Thaw(c.name); err != nil {
			m.log.Warn("cannot thaw", "container", c.name, "err", err)
		}
	}

	if m.spawner == nil || ppid != m.spawner.SupervisorPid() {
		// Not our supervisor's child (the supervisor itself was restarted):
		// we can watch it die but never learn its status.
		m.watchForeign(c, pid)
	}
	return true
}

// cleanupInterrupted undoes a start that a crash cut short: it kills what
// is in c's cgroups, removes its files and cgroups (retrying while zombies
// wait to be reaped) and records it as stopped with no process. The
// caller holds c's operation lock.
func (m *Manager) cleanupInterrupted(c *Container) {
	deadline := time.Now().Add(m.cfg.KillTimeout + 5*time.Second)
	for {
		// SIGKILL what is there without freezing first: the stage may be in
		// execve, waiting in de_thread for its other threads, and a freeze
		// would stop those threads and stall until the freeze timeout.
		// Freeze and kill (killRest) only if something survives that.
		if pids, err := m.cg.Procs(c.name); err == nil {
			for _, p := range pids {
				syscall.Kill(p, syscall.SIGKILL)
			}
		}
		if !m.waitEmpty(c, 200*time.Millisecond) {
			m.killRest(c)
			m.waitEmpty(c, m.cfg.KillTimeout)
		}
		err := m.cg.Remove(c.name)
		if err == nil || time.Now().After(deadline) {
			if err != nil {
				m.log.Warn("cannot remove cgroups of an interrupted start", "container", c.name, "err", err)
			}
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	m.cleanupRun(c)
	c.mu.Lock()
	c.rec.RootPid, c.rec.RootStart = 0, 0
	c.mu.Unlock()
	m.save(c)
	m.log.Info("cleaned up a start cut short by a crash", "container", c.name)
}

func (m *Manager) markDeadRestored(c *Container) {
	// Dead at once, before the worker serves, so that nothing reports it
	// running; handleDeath then does the rest in the background (whatever
	// is left in its cgroups, its subtree) and records the death again.
	m.markDead(c, -1, true)
	c.mu.Lock()
	pid := c.exitPid
	st := -1
	c.exitRaw = &st
	c.foreign = true
	close(c.exited)
	c.mu.Unlock()
	go m.handleDeath(c, pid)
}

// procStartPPid reads the start time (clock ticks since boot) and the
// parent pid of pid from one read of /proc/PID/stat; zeros if it is gone.
func procStartPPid(pid int) (start uint64, ppid int) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0
	}
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, 0
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 20 {
		return 0, 0
	}
	ppid, _ = strconv.Atoi(f[1])
	start, _ = strconv.ParseUint(f[19], 10, 64)
	return start, ppid
}

// restoreWorkers reconcile the containers of one level at once.
const restoreWorkers = 8

// tryLock takes c for an operation, as lock(c, false) does, if that does
// not have to wait.
func (m *Manager) tryLock(c *Container) (*opLock, bool) {
	l := &opLock{}
	for _, a := range c.ancestors() {
		if !a.op.TryRLock() {
			l.unlock()
			return nil, false
		}
		l.r = append(l.r, a)
	}
	if !c.op.TryLock() {
		l.unlock()
		return nil, false
	}
	l.w = append(l.w, c)
	return l, true
}

// pidWatcher learns the death of processes that are not our children
// through pidfds in one epoll set: one goroutine for all of them.
type pidWatcher struct {
	once sync.Once
	ep   int
	mu   sync.Mutex
	fds  map[int32]int // pidfd -> pid
}

func (m *Manager) watchForeign(c *Container, pid int) {
	w := &m.foreignW
	w.once.Do(func() {
		ep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
		if err != nil {
			m.log.Error("epoll", "err", err)
			w.ep = -1
			return
		}
		w.ep = ep
		w.fds = map[int32]int{}
		go m.foreignLoop()
	})
	if w.ep < 0 {
		return
	}
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		// Gone already.
		m.deliverExit(pid, -1, true)
		return
	}
	w.mu.Lock()
	w.fds[int32(fd)] = pid
	w.mu.Unlock()
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(fd)}
	if err := unix.EpollCtl(w.ep, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
		m.log.Error("epoll add", "err", err)
	}
	m.log.Info("re-attached a container whose process is not our child; its exit status will be unknown", "container", c.name, "pid", pid)
}

func (m *Manager) foreignLoop() {
	w := &m.foreignW
	evs := make([]unix.EpollEvent, 64)
	for {
		n, err := unix.EpollWait(w.ep, evs, -1)
		if err != nil {
			if err == unix.EINTR {
				continue
			}
			m.log.Error("epoll wait", "err", err)
			return
		}
		for _, ev := range evs[:n] {
			w.mu.Lock()
			pid, ok := w.fds[ev.Fd]
			delete(w.fds, ev.Fd)
			w.mu.Unlock()
			unix.EpollCtl(w.ep, unix.EPOLL_CTL_DEL, int(ev.Fd), nil)
			unix.Close(int(ev.Fd))
			if ok {
				m.deliverExit(pid, -1, true)
			}
		}
	}
}
