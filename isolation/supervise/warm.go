package supervise

import (
	"os"
	"slices"
	"time"

	"github.com/porto-dev/porto/isolation"
)

// Warm stages, held by the worker (see pool.go for the master's side).
//
// The master starts warm stages when the worker asks (opWarm) and hands
// each over with its socket (opWarmed); the stage stays the master's
// child, like every container process. A Spawn that may use one hands the
// files to the stage itself (isolation.Hand): no round trip through the
// master on the path of a start. It then asks for a new one.
//
// Exits of warm stages reach the worker like any other: the stage of a
// start is the container's first process, and an unused stage that exits
// (pool discarded, worker gone) is an unknown pid, which the worker
// acknowledges.

// maxPoolFlagSets bounds how many sets of clone flags keep warm stages.
const maxPoolFlagSets = 2

// warmRequestTimeout: stages asked for and not received by then are
// asked for again (a reply lost in an upgrade of the master).
const warmRequestTimeout = 2 * time.Second

type warmStage struct {
	pid int
	ctl *os.File
}

type warmPool struct {
	size    int
	mounts  *isolation.MountsWatch
	ready   map[uintptr][]warmStage
	asked   map[uintptr]int // asked for, not yet received
	askedAt map[uintptr]time.Time
	recent  []uintptr // flag sets wanted, least recent first
	// epoch counts the mount changes seen. A stage is asked for in one
	// epoch and kept only if it arrives in the same: one asked for before
	// a change may have been cloned before it.
	epoch uint64
}

// EnableWarmStages makes Spawn keep n warm stages ready for each set of
// clone flags in recent use (at most two sets). It must be called before
// the first Spawn; n <= 0 leaves the pool off. An error (the mount table
// cannot be watched) leaves it off too.
func (c *Client) EnableWarmStages(n int) error {
	if n <= 0 {
		return nil
	}
	w, err := isolation.WatchMounts()
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.pool = &warmPool{
		size:    n,
		mounts:  w,
		ready:   make(map[uintptr][]warmStage),
		asked:   make(map[uintptr]int),
		askedAt: make(map[uintptr]time.Time),
	}
	return nil
}

// poolable says whether a spawn may use a warm stage: no namespace to join
// and every file slot present.
func poolable(spec isolation.LaunchSpec, files []*os.File) bool {
	if spec.JoinPid != 0 || len(files) < 4 || len(files) > isolation.MaxHandFiles {
		return false
	}
	return !slices.Contains(files, nil)
}

// spawnWarm hands files to a warm stage for spec and returns its pid, or 0
// if none could be used. Either way it asks for the stages the pool lacks.
func (c *Client) spawnWarm(spec isolation.LaunchSpec, files []*os.File) int {
	c.mu.Lock()
	p := c.pool
	if p == nil || c.lost != nil || !poolable(spec, files) {
		c.mu.Unlock()
		return 0
	}
	if p.mounts.Changed() {
		// A mount or unmount since the last look: a stage cloned before it
		// would miss it.
		p.epoch++
		for flags := range p.ready {
			p.discard(flags)
		}
	}
	flags := spec.Cloneflags
	p.recent = append(slices.DeleteFunc(p.recent, func(f uintptr) bool { return f == flags }), flags)
	for len(p.recent) > maxPoolFlagSets {
		p.discard(p.recent[0])
		p.recent = p.recent[1:]
	}
	c.mu.Unlock()

	pid := 0
	for pid == 0 {
		c.mu.Lock()
		r := p.ready[flags]
		if len(r) == 0 {
			c.mu.Unlock()
			break
		}
		ws := r[0]
		p.ready[flags] = r[1:]
		c.mu.Unlock()
		if err := isolation.Hand(ws.ctl, files); err == nil {
			pid = ws.pid
		}
		// else: gone (its exit comes as an unknown pid), or it exits now
	}
	c.mu.Lock()
	c.askWarmLocked(flags)
	c.mu.Unlock()
	return pid
}

// askWarmLocked asks the master for the warm stages of flags that are
// neither ready nor asked for.
func (c *Client) askWarmLocked(flags uintptr) {
	p := c.pool
	if time.Since(p.askedAt[flags]) > warmRequestTimeout {
		p.asked[flags] = 0
	}
	n := p.size - len(p.ready[flags]) - p.asked[flags]
	if n <= 0 {
		return
	}
	p.asked[flags] += n
	p.askedAt[flags] = time.Now()
	epoch := p.epoch
	// Never block a start on this: the socket has room, and if it has not
	// the stage is simply asked for with the next start.
	go func() {
		if err := writeMsg(c.conn, &message{Op: opWarm, Flags: flags, N: n, Epoch: epoch}, nil); err != nil {
			c.mu.Lock()
			p.asked[flags] = max(0, p.asked[flags]-n)
			c.mu.Unlock()
		}
	}()
}

// warmed files a warm stage the master sent (or its failure).
func (c *Client) warmed(m *message, files []*os.File) {
	c.mu.Lock()
	defer c.mu.Unlock()
	p := c.pool
	if p != nil && p.asked[m.Flags] > 0 {
		p.asked[m.Flags]--
	}
	if m.Error != "" || m.Pid <= 0 || len(files) != 1 || p == nil || c.lost != nil || !slices.Contains(p.recent, m.Flags) || m.Epoch != p.epoch {
		closeFiles(files) // an unused stage exits when its socket closes
		return
	}
	p.ready[m.Flags] = append(p.ready[m.Flags], warmStage{pid: m.Pid, ctl: files[0]})
}

// discard closes the warm stages of flags; they exit.
func (p *warmPool) discard(flags uintptr) {
	for _, ws := range p.ready[flags] {
		ws.ctl.Close()
	}
	delete(p.ready, flags)
}

// closePool discards every warm stage.
func (c *Client) closePoolLocked() {
	if p := c.pool; p != nil {
		for flags := range p.ready {
			p.discard(flags)
		}
		p.mounts.Close()
		c.pool = nil
	}
}
