package supervise

import (
	"os"
	"slices"

	"github.com/porto-dev/porto/isolation"
)

// The warm-stage pool of the master (MasterOptions.StagePool).
//
// Starting a container used to begin with fork+exec of "portod __isolate"
// into new namespaces: the clone of the namespaces, the exec and the start
// of a Go runtime, about 2.5 ms, all on the path of the caller's Start. The
// master now keeps, per set of clone flags in recent use, a few stages that
// were started ahead of time and wait for their files
// (isolation.LaunchWarm). A spawn without namespaces to join takes one,
// hands it its files (isolation.Hand), and answers with its pid at once; a
// new warm stage is started behind it.
//
// What a warm stage copied when it was cloned must still be true when it is
// used:
//   - the mount table: every use first polls /proc/self/mountinfo, and any
//     mount or unmount in the master's namespace since the last poll
//     discards every warm stage (a new mount would be missing in it);
//   - the binary: an upgrade discards the pool (the successor reaps the
//     old stages, MasterOptions.Takeover);
//   - everything else a stage needs (config, credentials, cgroups, limits)
//     comes with the request, exactly as for a cold stage.
//
// A warm stage that is never used costs one idle process; it exits when
// its socket closes (pool emptied, master gone). Its exit is the master's
// own business and never reaches the worker.

// maxPoolFlagSets bounds how many sets of clone flags keep warm stages.
const maxPoolFlagSets = 2

type warmStage struct {
	pid int
	ctl *os.File
	gen uint64 // mount generation it was cloned in
}

type stagePool struct {
	size    int
	ready   map[uintptr][]*warmStage
	filling map[uintptr]int
	recent  []uintptr // flag sets wanted, least recent first
	mounts  *isolation.MountsWatch
	gen     uint64 // bumped on every mount change seen
	hits    uint64
	misses  uint64
}

func newStagePool(size int) (*stagePool, error) {
	w, err := isolation.WatchMounts()
	if err != nil {
		return nil, err
	}
	return &stagePool{
		size:    size,
		ready:   make(map[uintptr][]*warmStage),
		filling: make(map[uintptr]int),
		mounts:  w,
	}, nil
}

// inflight is the number of warm launches not yet finished.
func (p *stagePool) inflight() int {
	n := 0
	for _, v := range p.filling {
		n += v
	}
	return n
}

// poolable says whether a spawn may use a warm stage: no namespace to join
// and every file slot present.
func poolable(spec isolation.LaunchSpec, files []*os.File) bool {
	if spec.JoinPid != 0 || len(files) < 4 || len(files) > maxFDs {
		return false
	}
	return !slices.Contains(files, nil)
}

// checkMounts discards every warm stage if the mount table changed.
func (m *master) checkMounts() {
	p := m.pool
	if !p.mounts.Changed() {
		return
	}
	p.gen++
	m.log.Debug("supervisor: mounts changed, discarding warm stages", "gen", p.gen)
	for flags := range p.ready {
		m.discardAll(flags)
	}
}

// takeWarm hands files to a warm stage for spec and returns its pid, or 0
// if there was none to use. It never blocks.
func (m *master) takeWarm(spec isolation.LaunchSpec, files []*os.File) int {
	p := m.pool
	if p == nil || m.stopping || m.upgrading || !poolable(spec, files) {
		return 0
	}
	m.checkMounts()
	flags := spec.Cloneflags
	for len(p.ready[flags]) > 0 {
		ws := p.ready[flags][0]
		p.ready[flags] = p.ready[flags][1:]
		if err := isolation.Hand(ws.ctl, files); err != nil {
			// Gone (its exit is reaped as ours) or unusable: it exits now
			// that its socket is closed.
			m.log.Debug("supervisor: warm stage unusable", "pid", ws.pid, "err", err)
			continue
		}
		delete(m.own, ws.pid) // from now on its exit is the worker's
		p.hits++
		m.log.Debug("supervisor: warm stage used", "pid", ws.pid, "flags", flags)
		return ws.pid
	}
	p.misses++
	return 0
}

// want keeps the pool of flags full, and forgets the least recently wanted
// flag set beyond maxPoolFlagSets.
func (m *master) want(spec isolation.LaunchSpec, files []*os.File) {
	p := m.pool
	if p == nil || m.stopping || m.upgrading || !poolable(spec, files) {
		return
	}
	flags := spec.Cloneflags
	p.recent = append(slices.DeleteFunc(p.recent, func(f uintptr) bool { return f == flags }), flags)
	for len(p.recent) > maxPoolFlagSets {
		m.discardAll(p.recent[0])
		p.recent = p.recent[1:]
	}
	for len(p.ready[flags])+p.filling[flags] < p.size {
		m.launchWarm(flags)
	}
}

func (m *master) launchWarm(flags uintptr) {
	p := m.pool
	p.filling[flags]++
	seq := m.t.beginSpawn()
	gen := p.gen
	go func() {
		ev := event{kind: evWarm, seq: seq, flags: flags, mountGen: gen}
		ev.pid, ev.ctl, ev.err = isolation.LaunchWarm(m.opts.Self, flags)
		m.events <- ev
	}()
}

// warmLaunched files a finished warm launch.
func (m *master) warmLaunched(ev event) {
	p := m.pool
	p.filling[ev.flags]--
	if ev.err != nil {
		m.log.Warn("supervisor: cannot start a warm isolation stage", "err", ev.err)
		m.deliver(m.t.endSpawn(ev.seq, 0))
		return
	}
	m.own[ev.pid] = true
	m.deliver(m.t.endSpawn(ev.seq, ev.pid))
	m.checkMounts()
	if ev.mountGen != p.gen || m.stopping || m.upgrading || !slices.Contains(p.recent, ev.flags) {
		ev.ctl.Close()
		return
	}
	p.ready[ev.flags] = append(p.ready[ev.flags], &warmStage{pid: ev.pid, ctl: ev.ctl, gen: ev.mountGen})
}

// discardAll closes the warm stages of flags; they exit and scan reaps
// them.
func (m *master) discardAll(flags uintptr) {
	p := m.pool
	for _, ws := range p.ready[flags] {
		ws.ctl.Close()
	}
	delete(p.ready, flags)
}

// drainPool discards every warm stage (stop, upgrade).
func (m *master) drainPool() {
	if m.pool == nil {
		return
	}
	for flags := range m.pool.ready {
		m.discardAll(flags)
	}
}

// deliver sends exits to the worker, except those of the master's own
// warm stages, which it reaps itself.
func (m *master) deliver(exits []isolation.Exit) {
	for _, e := range exits {
		if m.own[e.Pid] {
			delete(m.own, e.Pid)
			if err := m.t.ack(e.Pid); err != nil {
				m.log.Warn("supervisor: reap warm stage", "pid", e.Pid, "err", err)
			}
			continue
		}
		m.sendExit(e)
	}
}
