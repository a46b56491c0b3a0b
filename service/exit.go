package service

import (
	"io"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/porto-dev/porto/api"
)

// registerPid makes pid's exit find c. The caller holds c's op lock and
// is between beginStart and endStart. An exit of pid that came before is
// delivered now.
func (m *Manager) registerPid(c *Container, pid int) {
	c.mu.Lock()
	c.exitPid = pid
	c.exitRaw = nil
	c.exited = make(chan struct{})
	c.foreign = false
	c.mu.Unlock()
	m.pidMu.Lock()
	m.pids[pid] = c
	ex, early := m.parked[pid]
	delete(m.parked, pid)
	m.pidMu.Unlock()
	if early {
		m.deliverExit(pid, ex.status, ex.lost)
	}
}

// parkedExit is an exit of a pid nobody had registered while a start was
// in flight.
type parkedExit struct {
	status int
	lost   bool
}

// beginStart marks a start in flight, from before its Spawn until its
// process is registered for good (a stage that forks the command into a
// joined pid namespace reports the command's pid, whose exit may come
// before the start registers it).
func (m *Manager) beginStart() {
	m.pidMu.Lock()
	m.starting++
	m.pidMu.Unlock()
}

// endStart ends what beginStart began; the last start in flight
// acknowledges the exits no start claimed.
func (m *Manager) endStart() {
	var acks []int
	m.pidMu.Lock()
	m.starting--
	if m.starting == 0 {
		for pid, ex := range m.parked {
			if !ex.lost {
				acks = append(acks, pid)
			}
		}
		m.parked = nil
	}
	m.pidMu.Unlock()
	for _, pid := range acks {
		m.ack(pid)
	}
}

func (m *Manager) unregisterPid(pid int) {
	m.pidMu.Lock()
	delete(m.pids, pid)
	m.pidMu.Unlock()
}

func (m *Manager) lookupPid(pid int) *Container {
	m.pidMu.Lock()
	defer m.pidMu.Unlock()
	return m.pids[pid]
}

// dispatchExits turns the supervisor's exit reports into container deaths.
// It never blocks on a container's operation lock: it records the status
// and hands the rest to handleDeath (or to the operation that is waiting).
func (m *Manager) dispatchExits() {
	for {
		select {
		case <-m.ctx.Done():
			return
		case ex, ok := <-m.spawner.Exits():
			if !ok {
				m.log.Error("supervisor connection lost; exits are no longer reported")
				close(m.lost)
				return
			}
			m.deliverExit(ex.Pid, ex.Status, false)
		}
	}
}

func (m *Manager) deliverExit(pid, status int, lost bool) {
	m.pidMu.Lock()
	c := m.pids[pid]
	if c == nil && m.starting > 0 {
		// A start in flight may not have registered this pid yet.
		if m.parked == nil {
			m.parked = map[int]parkedExit{}
		}
		m.parked[pid] = parkedExit{status, lost}
		m.pidMu.Unlock()
		m.log.Debug("exit of a pid not known yet, parked until the starts in flight end", "pid", pid)
		return
	}
	m.pidMu.Unlock()
	if c == nil {
		if !lost {
			m.ack(pid)
		}
		return
	}
	c.mu.Lock()
	if c.exitPid != pid || c.exitRaw != nil {
		c.mu.Unlock()
		if !lost {
			m.ack(pid)
		}
		return
	}
	st := status
	c.exitRaw = &st
	if lost {
		c.foreign = true
	}
	close(c.exited)
	c.mu.Unlock()
	m.log.Debug("root process exited", "container", c.name, "pid", pid, "status", status, "lost", lost)
	go m.handleDeath(c, pid)
}

func (m *Manager) ack(pid int) {
	if err := m.spawner.Ack(pid); err != nil {
		m.log.Warn("cannot acknowledge exit", "pid", pid, "err", err)
	}
}

// reapRoot waits up to d for the exit of c's root process and consumes it:
// it returns the raw status and whether the exit was seen. The ack is the
// caller's job (after persisting), unless ackNow.
func (m *Manager) reapRoot(c *Container, d time.Duration, ackNow bool) (status int, lost, ok bool) {
	c.mu.Lock()
	ch, pid := c.exited, c.exitPid
	c.mu.Unlock()
	if ch == nil || pid == 0 {
		return 0, false, false
	}
	select {
	case <-ch:
	default:
		t := time.NewTimer(d)
		select {
		case <-ch:
			t.Stop()
		case <-t.C:
			return 0, false, false
		}
	}
	c.mu.Lock()
	if c.exitRaw == nil || c.exitPid != pid {
		c.mu.Unlock()
		return 0, false, false
	}
	status, lost = *c.exitRaw, c.foreign
	c.exitRaw, c.exitPid, c.exited, c.foreign = nil, 0, nil, false
	c.mu.Unlock()
	m.unregisterPid(pid)
	if ackNow && !lost {
		m.ack(pid)
	}
	return status, lost, true
}

// handleDeath makes c dead after its root process exited, with its whole
// subtree: their processes are killed and they become dead too.
func (m *Manager) handleDeath(c *Container, pid int) {
	t0 := time.Now()
	l, nodes := m.lock(c, true)
	defer l.unlock()
	if w := time.Since(t0); w > 100*time.Millisecond {
		m.log.Debug("death waited for the container's lock", "container", c.name, "waited", w)
	}
	c.mu.Lock()
	pending := !c.destroyed && c.exitPid == pid && c.exitRaw != nil
	st := c.rec.State
	c.mu.Unlock()
	if !pending || st == api.StatePaused {
		return // consumed by a stop/start, or processed on resume
	}
	status, lost, _ := m.reapRoot(c, 0, false)
	m.killRest(c)
	m.markDead(c, status, lost)
	if !lost {
		m.ack(pid) // its exit is on disk
	}
	// Descendants deepest first, each exit acknowledged (reaped) as soon
	// as it is on disk: the init of a pid namespace finishes exiting only
	// once every process of its namespace is reaped, so a nested
	// container's root waits for the zombies of its own descendants.
	for i := len(nodes) - 1; i >= 1; i-- {
		d := nodes[i]
		switch d.state() {
		case api.StateRunning, api.StateMeta, api.StatePaused, api.StateStarting:
		default:
			continue
		}
		d.mu.Lock()
		dpid := d.exitPid
		d.mu.Unlock()
		m.killRest(d)
		dst, dlost, ok := m.reapRoot(d, m.cfg.KillTimeout, false)
		if !ok && dpid > 0 {
			m.log.Warn("no exit of a killed descendant's root process", "container", d.name, "pid", dpid, "waited", m.cfg.KillTimeout)
		}
		if !ok {
			dst, dlost = status, lost
		}
		m.markDead(d, dst, dlost)
		if ok && !dlost {
			m.ack(dpid)
		}
	}
	for _, n := range nodes {
		if n.state() == api.StateDead {
			m.scheduleAfterDeath(n)
		}
	}
}

// killRest kills every process left in c's cgroups (daemons of a
// non-isolated container, the rest of a pid namespace).
func (m *Manager) killRest(c *Container) {
	pids, err := m.cg.Procs(c.name)
	if err != nil || len(pids) == 0 {
		return
	}
	if err := m.cg.Kill(c.name, syscall.SIGKILL); err != nil {
		m.log.Warn("cannot kill container processes", "container", c.name, "err", err)
	}
}

// waitEmpty waits until only zombies (if anything) are left in c's cgroups.
func (m *Manager) waitEmpty(c *Container, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for {
		pids, err := m.cg.Procs(c.name)
		if err != nil {
			return true
		}
		alive := 0
		for _, p := range pids {
			if s := procState(p); s != "" && s != "Z" {
				alive++
			}
		}
		if alive == 0 {
			return true
		}
		if time.Now().After(deadline) {
			m.log.Warn("processes survive SIGKILL", "container", c.name, "count", alive)
			return false
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func (m *Manager) markDead(c *Container, status int, lost bool) {
	oom := false
	if k, err := m.cg.OOMKills(c.name); err == nil && k > 0 {
		oom = true
	}
	c.mu.Lock()
	c.rec.ExitStatus = status
	c.rec.ExitLost = lost
	c.rec.OOMKilled = oom
	c.rec.DeathTime = time.Now().UnixMilli()
	c.rec.RootPid = 0
	c.rec.RootStart = 0
	c.rec.PausedFrom = ""
	c.mu.Unlock()
	m.setState(c, api.StateDead)
}

// stopOne brings one locked container to stopped: its root process gets
// SIGTERM (when that can work) and SIGKILL after timeout, everything left
// in its cgroups is killed, its cgroups and files are removed.
func (m *Manager) stopOne(c *Container, timeout time.Duration) {
	c.mu.Lock()
	st, pid := c.rec.State, c.exitPid
	c.mu.Unlock()
	if st == api.StateStopped {
		return
	}
	// The exit is acknowledged (and the zombie reaped) only once the
	// record says stopped, so a crash in between cannot turn a stop into
	// a lost exit.
	ackPid := 0
	if pid > 0 {
		reaped := false
		var lost bool
		if m.sigtermWorks(c, pid) && timeout > 0 {
			syscall.Kill(pid, syscall.SIGTERM)
			_, lost, reaped = m.reapRoot(c, timeout, false)
		}
		if !reaped {
			syscall.Kill(pid, syscall.SIGKILL)
			if _, lost, reaped = m.reapRoot(c, m.cfg.KillTimeout, false); !reaped {
				m.log.Warn("root process did not exit after SIGKILL", "container", c.name, "pid", pid)
				m.unregisterPid(pid)
			}
		}
		if reaped && !lost {
			ackPid = pid
		}
	}
	m.killRest(c)
	m.waitEmpty(c, m.cfg.KillTimeout)
	m.removeCgroups(c)
	m.cleanupRun(c)
	c.mu.Lock()
	c.rec.RootPid, c.rec.RootStart = 0, 0
	c.rec.ExitStatus, c.rec.ExitLost, c.rec.OOMKilled = 0, false, false
	c.rec.StartTime, c.rec.DeathTime = 0, 0
	c.rec.PausedFrom = ""
	c.exitPid, c.exitRaw, c.exited = 0, nil, nil
	c.timerGen++
	c.mu.Unlock()
	m.setState(c, api.StateStopped)
	if ackPid > 0 {
		m.ack(ackPid)
	}
}

// sigtermWorks: SIGTERM kills a normal process, but the init of a pid
// namespace ignores it unless it installed a handler; then only SIGKILL
// helps and waiting would be pointless.
func (m *Manager) sigtermWorks(c *Container, pid int) bool {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return false
	}
	var nspid, sigcgt string
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "NSpid:"); ok {
			nspid = strings.TrimSpace(v)
		} else if v, ok := strings.CutPrefix(line, "SigCgt:"); ok {
			sigcgt = strings.TrimSpace(v)
		}
	}
	f := strings.Fields(nspid)
	if len(f) < 2 || f[len(f)-1] != "1" {
		return true // not a namespace init
	}
	mask, err := strconv.ParseUint(sigcgt, 16, 64)
	return err == nil && mask&(1<<(uint(syscall.SIGTERM)-1)) != 0
}

// scheduleAfterDeath arms respawn and aging for a dead container.
func (m *Manager) scheduleAfterDeath(c *Container) {
	c.mu.Lock()
	gen := c.timerGen
	respawns := c.rec.Respawns
	c.mu.Unlock()
	if m.boolValue(c, "respawn") {
		max, _ := strconv.Atoi(m.value(c, "max_respawn"))
		if max < 0 || respawns < max {
			time.AfterFunc(m.cfg.RespawnDelay, func() { m.respawn(c, gen) })
			return
		}
	}
	aging, _ := strconv.ParseInt(m.value(c, "aging_time"), 10, 64)
	time.AfterFunc(time.Duration(aging)*time.Second, func() {
		c.mu.Lock()
		ok := c.timerGen == gen && !c.destroyed && c.rec.State == api.StateDead
		c.mu.Unlock()
		if ok {
			if err := m.Destroy(m.ctx, Root, c.name); err != nil {
				m.log.Warn("aging: cannot destroy dead container", "container", c.name, "err", err)
			}
		}
	})
}

func (m *Manager) respawn(c *Container, gen int) {
	l, _ := m.lock(c, false)
	defer l.unlock()
	c.mu.Lock()
	ok := c.timerGen == gen && !c.destroyed && c.rec.State == api.StateDead
	c.mu.Unlock()
	if !ok {
		return
	}
	if pausedAncestor(c) != nil {
		// Its cgroups would be born frozen: try again once resumed.
		time.AfterFunc(m.cfg.RespawnDelay, func() { m.respawn(c, gen) })
		return
	}
	if p := c.parent; !p.isRoot() {
		if s := p.state(); s != api.StateRunning && s != api.StateMeta {
			return
		}
	}
	m.removeCgroups(c)
	m.cleanupRun(c)
	c.mu.Lock()
	c.rec.Respawns++
	c.rec.State = api.StateStopped
	c.mu.Unlock()
	if err := m.doStart(m.ctx, c); err != nil {
		m.log.Warn("respawn failed", "container", c.name, "err", err)
		c.mu.Lock()
		c.rec.State = api.StateDead
		c.mu.Unlock()
		m.save(c)
		m.notify(Event{Name: c.name, State: api.StateDead})
	}
}

// readStd returns the tail of the container's stdout or stderr, refusing a
// file that is not the one the container was given.
func (m *Manager) readStd(c *Container, which string) (string, error) {
	r, err := needState(c, which, started...)
	if err != nil {
		return "", err
	}
	f := r.Stdout
	if which == "stderr" {
		f = r.Stderr
	}
	if f.Path == "" {
		return "", nil
	}
	var fd *os.File
	open := func() (err error) {
		fd, err = os.OpenFile(f.Path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
		return err
	}
	if uid, gid, groups, asUser, lerr := m.pathCreds(c); lerr != nil {
		return "", lerr
	} else if asUser {
		// A non-root owner reads only what the user could read.
		err = runAs(uid, gid, groups, open)
	} else {
		err = open()
	}
	if err != nil {
		if os.IsNotExist(err) {
			return "", nil
		}
		return "", api.Errorf(api.Unknown, "%s: %v", which, err)
	}
	defer fd.Close()
	var st syscall.Stat_t
	if err := syscall.Fstat(int(fd.Fd()), &st); err != nil {
		return "", api.Errorf(api.Unknown, "%s: %v", which, err)
	}
	if st.Mode&syscall.S_IFMT != syscall.S_IFREG || (f.Ino != 0 && (st.Ino != f.Ino || st.Dev != f.Dev)) {
		return "", api.Errorf(api.Permission, "%s: %s is not the file the container was given", which, f.Path)
	}
	limit, _ := strconv.ParseInt(m.value(c, "stdout_limit"), 10, 64)
	if limit <= 0 {
		limit = int64(m.cfg.StdoutLimit)
	}
	if st.Size > limit {
		if _, err := fd.Seek(st.Size-limit, io.SeekStart); err != nil {
			return "", api.Errorf(api.Unknown, "%s: %v", which, err)
		}
	}
	data, err := io.ReadAll(io.LimitReader(fd, limit))
	if err != nil {
		return "", api.Errorf(api.Unknown, "%s: %v", which, err)
	}
	return string(data), nil
}
