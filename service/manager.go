package service

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"sort"
	"sync"
	"syscall"
	"time"

	"github.com/porto-dev/porto/api"
)

// Manager owns the container tree. All methods are safe for concurrent use.
type Manager struct {
	cfg     Config
	spawner Spawner
	cg      Cgroups
	log     *slog.Logger
	store   *store
	host    string

	treeMu sync.RWMutex
	root   *Container
	byName map[string]*Container

	// pids maps a supervisor child's pid to its container. While starting
	// > 0 (starts in flight), the exit of a pid not in pids is parked
	// instead of acknowledged: a start may not have registered it yet
	// (registerPid claims it); parked exits are acknowledged when no start
	// is in flight any more (exit.go).
	pidMu    sync.Mutex
	pids     map[int]*Container
	starting int
	parked   map[int]parkedExit

	// changed is closed and replaced on every state change: Wait's wake-up.
	changeMu sync.Mutex
	changed  chan struct{}

	subMu sync.Mutex
	subs  map[chan Event]struct{}

	net    Network // nil: traffic control off
	netOff string  // why, when porto.conf asked for it
	netIDs netState

	foreignW pidWatcher
	lost     chan struct{} // closed when the spawner's exit stream ends

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// New makes a Manager. Call Restore, then Run, before serving.
func New(cfg Config, sp Spawner, cg Cgroups, log *slog.Logger) (*Manager, error) {
	if log == nil {
		log = slog.Default()
	}
	st, err := newStore(cfg.StateDir)
	if err != nil {
		return nil, err
	}
	host, _ := os.Hostname()
	ctx, cancel := context.WithCancel(context.Background())
	m := &Manager{
		cfg: cfg, spawner: sp, cg: cg, log: log, store: st, host: host,
		byName:  map[string]*Container{},
		pids:    map[int]*Container{},
		changed: make(chan struct{}),
		subs:    map[chan Event]struct{}{},
		ctx:     ctx, cancel: cancel,
		lost: make(chan struct{}),
	}
	m.root = &Container{name: api.RootName, children: map[string]*Container{}}
	m.root.rec = record{Name: api.RootName, State: api.StateMeta}
	return m, nil
}

// Run starts the exit dispatcher. Call it after Restore.
func (m *Manager) Run() {
	if m.spawner == nil {
		return
	}
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		m.dispatchExits()
	}()
}

// Lost is closed when the spawner stops reporting exits (the supervisor
// is gone); the daemon should then exit and be restarted.
func (m *Manager) Lost() <-chan struct{} { return m.lost }

// Close stops background work (not the containers).
func (m *Manager) Close() {
	m.cancel()
}

// Config returns the configuration the manager runs with.
func (m *Manager) Config() Config { return m.cfg }

// ---- lookup and locking -------------------------------------------------

func (m *Manager) lookup(name string) (*Container, error) {
	if name == api.RootName {
		return m.root, nil
	}
	m.treeMu.RLock()
	c := m.byName[name]
	m.treeMu.RUnlock()
	if c == nil {
		if err := api.ValidateName(name); err != nil {
			return nil, api.Errorf(api.ContainerDoesNotExist, "container %q does not exist (%s)", name, api.AsError(err).Message())
		}
		return nil, api.Errorf(api.ContainerDoesNotExist, "container %q does not exist", name)
	}
	return c, nil
}

// opLock records what an operation holds, to release it in reverse.
type opLock struct {
	r []*Container
	w []*Container
}

func (l *opLock) unlock() {
	for i := len(l.w) - 1; i >= 0; i-- {
		l.w[i].op.Unlock()
	}
	for i := len(l.r) - 1; i >= 0; i-- {
		l.r[i].op.RUnlock()
	}
}

// lock takes c for an operation (see Container for the order). With
// subtree, every descendant is write-locked too; the returned slice lists
// c and its descendants in pre-order.
func (m *Manager) lock(c *Container, subtree bool) (*opLock, []*Container) {
	l := &opLock{}
	for _, a := range c.ancestors() {
		a.op.RLock()
		l.r = append(l.r, a)
	}
	c.op.Lock()
	l.w = append(l.w, c)
	nodes := []*Container{c}
	if subtree {
		// With c write-locked, no child can be created or destroyed below it.
		for _, d := range m.descendants(c) {
			d.op.Lock()
			l.w = append(l.w, d)
			nodes = append(nodes, d)
		}
	}
	return l, nodes
}

// descendants lists c's subtree below c in pre-order, children by name.
func (m *Manager) descendants(c *Container) []*Container {
	m.treeMu.RLock()
	defer m.treeMu.RUnlock()
	var out []*Container
	var walk func(*Container)
	walk = func(n *Container) {
		for _, ch := range n.sortedChildren() {
			out = append(out, ch)
			walk(ch)
		}
	}
	walk(c)
	return out
}

// ---- permissions --------------------------------------------------------

func (m *Manager) authorized(ctx context.Context, c Caller, action string) bool {
	if c.UID == 0 {
		return true
	}
	if c.Authorize == nil {
		return false
	}
	ok, err := c.Authorize(ctx, action)
	if err != nil {
		m.log.Warn("authorization check failed", "action", action, "uid", c.UID, "err", err)
		return false
	}
	return ok
}

// managed looks name up and checks that caller may act on it: the
// preamble of every operation that changes a container.
func (m *Manager) managed(ctx context.Context, caller Caller, name string) (*Container, error) {
	c, err := m.lookup(name)
	if err != nil {
		return nil, err
	}
	if err := m.mayManage(ctx, caller, c); err != nil {
		return nil, err
	}
	return c, nil
}

// mayManage: root, the owner, or a caller polkit lets manage anyone's.
func (m *Manager) mayManage(ctx context.Context, caller Caller, c *Container) error {
	if c.isRoot() {
		return api.Errorf(api.Permission, "Permission error")
	}
	c.mu.Lock()
	owner := c.rec.OwnerUID
	c.mu.Unlock()
	if caller.UID == 0 || caller.UID == owner || m.authorized(ctx, caller, api.ActionManageAny) {
		return nil
	}
	return api.Errorf(api.Permission, "Permission error")
}

// ---- events -------------------------------------------------------------

func (m *Manager) notify(ev Event) {
	m.changeMu.Lock()
	close(m.changed)
	m.changed = make(chan struct{})
	m.changeMu.Unlock()
	m.subMu.Lock()
	for ch := range m.subs {
		select {
		case ch <- ev:
		default:
			m.log.Warn("event subscriber is too slow; dropping an event", "container", ev.Name)
		}
	}
	m.subMu.Unlock()
}

func (m *Manager) changedCh() <-chan struct{} {
	m.changeMu.Lock()
	defer m.changeMu.Unlock()
	return m.changed
}

// Subscribe delivers every state change until cancel is called. A slow
// subscriber loses events rather than blocking the daemon.
func (m *Manager) Subscribe() (events <-chan Event, cancel func()) {
	ch := make(chan Event, 4096)
	m.subMu.Lock()
	m.subs[ch] = struct{}{}
	m.subMu.Unlock()
	var once sync.Once
	return ch, func() {
		once.Do(func() {
			m.subMu.Lock()
			delete(m.subs, ch)
			m.subMu.Unlock()
		})
	}
}

// setState changes c's state (caller holds c.op), persists and announces.
func (m *Manager) setState(c *Container, s api.State) {
	c.mu.Lock()
	c.rec.State = s
	c.mu.Unlock()
	m.save(c)
	m.notify(Event{Name: c.name, State: s})
}

func (m *Manager) save(c *Container) {
	c.persist.Lock()
	defer c.persist.Unlock()
	c.mu.Lock()
	if c.destroyed {
		c.mu.Unlock()
		return
	}
	data, err := marshalRecord(&c.rec)
	c.mu.Unlock()
	if err == nil {
		err = m.store.write(c.name, data)
	}
	if err != nil {
		m.log.Error("cannot persist container state", "container", c.name, "err", err)
	}
}

// ---- create / destroy ---------------------------------------------------

func (m *Manager) Create(ctx context.Context, caller Caller, name string) error {
	if err := api.ValidateName(name); err != nil {
		return err
	}
	parentName := api.ParentName(name)
	parent, err := m.lookup(parentName)
	if err != nil {
		return api.Errorf(api.ContainerDoesNotExist, "parent container %q does not exist", parentName)
	}
	if !parent.isRoot() {
		if err := m.mayManage(ctx, caller, parent); err != nil {
			return err
		}
	}
	// Read-lock the parent chain so no ancestor is destroyed meanwhile.
	l := &opLock{}
	if !parent.isRoot() {
		for _, a := range append(parent.ancestors(), parent) {
			a.op.RLock()
			l.r = append(l.r, a)
		}
	}
	defer l.unlock()

	gid := caller.GID
	if g, ok := primaryGID(caller.UID); ok {
		gid = g
	}
	c := &Container{name: name, parent: parent, children: map[string]*Container{}}
	c.rec = record{
		Name: name, OwnerUID: caller.UID, OwnerGID: gid,
		Props: map[string]string{}, State: api.StateStopped,
		CreateTime: time.Now().UnixMilli(),
	}

	m.treeMu.Lock()
	if parent.destroyed {
		m.treeMu.Unlock()
		return api.Errorf(api.ContainerDoesNotExist, "parent container %q does not exist", parentName)
	}
	if _, dup := m.byName[name]; dup {
		m.treeMu.Unlock()
		return api.Errorf(api.ContainerAlreadyExists, "container %q already exists", name)
	}
	if err := m.checkQuota(caller); err != nil {
		m.treeMu.Unlock()
		return err
	}
	m.byName[name] = c
	parent.children[name] = c
	m.treeMu.Unlock()

	m.save(c)
	m.notify(Event{Name: name, State: api.StateStopped})
	return nil
}

// checkQuota runs under treeMu.
func (m *Manager) checkQuota(caller Caller) error {
	if len(m.byName) >= m.cfg.MaxContainers+reservedForRoot(caller) {
		return api.Errorf(api.ResourceNotAvailable, "number of containers reached limit: %d", m.cfg.MaxContainers)
	}
	if caller.UID != 0 {
		n := 0
		for _, c := range m.byName {
			if c.rec.OwnerUID == caller.UID {
				n++
			}
		}
		if n >= m.cfg.MaxPerUser {
			return api.Errorf(api.ResourceNotAvailable, "user %d reached the limit of %d containers", caller.UID, m.cfg.MaxPerUser)
		}
	}
	return nil
}

func reservedForRoot(c Caller) int {
	if c.UID == 0 {
		return 100
	}
	return 0
}

func (m *Manager) Destroy(ctx context.Context, caller Caller, name string) error {
	if name == api.RootName {
		return api.Errorf(api.Permission, "cannot destroy the root container")
	}
	c, err := m.managed(ctx, caller, name)
	if err != nil {
		return err
	}
	l, nodes := m.lock(c, true)
	defer l.unlock()
	if c.destroyed {
		return api.Errorf(api.ContainerDoesNotExist, "container %q does not exist", name)
	}
	if err := pausedAncestor(c); err != nil {
		return err
	}
	m.stopNodes(nodes, m.cfg.StopTimeout)
	// Remove bottom-up.
	for i := len(nodes) - 1; i >= 0; i-- {
		n := nodes[i]
		if err := m.cg.Remove(n.name); err != nil {
			m.log.Warn("cannot remove cgroups", "container", n.name, "err", err)
		}
		m.netRelease(n)
		m.treeMu.Lock()
		delete(m.byName, n.name)
		delete(n.parent.children, n.name)
		m.treeMu.Unlock()
		n.persist.Lock()
		n.mu.Lock()
		n.destroyed = true
		n.timerGen++
		n.mu.Unlock()
		if err := m.store.remove(n.name); err != nil {
			m.log.Warn("cannot remove state file", "container", n.name, "err", err)
		}
		n.persist.Unlock()
		m.notify(Event{Name: n.name, Destroyed: true})
	}
	return nil
}

// ---- start --------------------------------------------------------------

func (m *Manager) Start(ctx context.Context, caller Caller, name string) error {
	c, err := m.lookup(name)
	if err != nil {
		return err
	}
	if c.isRoot() {
		return api.Errorf(api.Permission, "cannot start the root container")
	}
	if err := m.mayManage(ctx, caller, c); err != nil {
		return err
	}
	// Start stopped ancestors first (as meta when they have no command).
	for _, a := range c.ancestors() {
		if a.state() != api.StateStopped {
			continue
		}
		if err := m.startOne(ctx, caller, a, false); err != nil && !errors.Is(err, errAlreadyStarted) {
			return err
		}
	}
	return m.startOne(ctx, caller, c, true)
}

var errAlreadyStarted = errors.New("already started")

func (m *Manager) startOne(ctx context.Context, caller Caller, c *Container, explicit bool) error {
	l, _ := m.lock(c, false)
	defer l.unlock()
	if c.destroyed {
		return api.Errorf(api.ContainerDoesNotExist, "container %q does not exist", c.name)
	}
	switch st := c.state(); st {
	case api.StateStopped:
	case api.StateDead:
		return api.Errorf(api.InvalidState, "container %s is dead, stop it first", c.name)
	default:
		if !explicit {
			return errAlreadyStarted
		}
		return api.Errorf(api.InvalidState, "container %s is already %s", c.name, st)
	}
	if p := c.parent; !p.isRoot() {
		switch ps := p.state(); ps {
		case api.StateRunning, api.StateMeta:
		default:
			return api.Errorf(api.InvalidState, "parent container %s is %s", p.name, ps)
		}
	}
	// A paused grandparent leaves its children running or meta, but
	// every cgroup made below it is born frozen (v1 freezer): the stage
	// would wait, frozen, until start_timeout.
	if err := pausedAncestor(c); err != nil {
		return err
	}
	c.mu.Lock()
	c.rec.Respawns = 0
	c.timerGen++
	c.mu.Unlock()
	return m.doStart(ctx, c)
}

// ---- stop / kill / pause / resume ----------------------------------------

func (m *Manager) Stop(ctx context.Context, caller Caller, name string, timeout time.Duration) error {
	c, err := m.managed(ctx, caller, name)
	if err != nil {
		return err
	}
	if timeout < 0 {
		timeout = m.cfg.StopTimeout
	}
	l, nodes := m.lock(c, true)
	defer l.unlock()
	if c.destroyed {
		return api.Errorf(api.ContainerDoesNotExist, "container %q does not exist", name)
	}
	if err := pausedAncestor(c); err != nil {
		return err
	}
	m.stopNodes(nodes, timeout)
	return nil
}

// pausedAncestor refuses operations under a paused ancestor: its tasks
// cannot die until it is resumed.
func pausedAncestor(c *Container) error {
	for _, a := range c.ancestors() {
		if a.state() == api.StatePaused {
			return api.Errorf(api.InvalidState, "parent container %s is paused", a.name)
		}
	}
	return nil
}

// stopNodes stops a locked subtree (pre-order list), children first.
func (m *Manager) stopNodes(nodes []*Container, timeout time.Duration) {
	// Thaw first, top-down, every frozen cgroup (paused by porto or by
	// someone else): a frozen task cannot die.
	for _, n := range nodes {
		if n.state() == api.StateStopped {
			continue
		}
		if fr, err := m.cg.Frozen(n.name); n.state() == api.StatePaused || (err == nil && fr) {
			if err := m.cg.Thaw(n.name); err != nil {
				m.log.Warn("cannot thaw", "container", n.name, "err", err)
			}
		}
	}
	for i := len(nodes) - 1; i >= 0; i-- {
		m.stopOne(nodes[i], timeout)
	}
}

func (m *Manager) Kill(ctx context.Context, caller Caller, name string, sig int) error {
	if name == api.RootName {
		return api.Errorf(api.Permission, "cannot kill the root container")
	}
	c, err := m.managed(ctx, caller, name)
	if err != nil {
		return err
	}
	if sig <= 0 || sig > 64 {
		return api.Errorf(api.InvalidValue, "invalid signal %d", sig)
	}
	l, _ := m.lock(c, false)
	defer l.unlock()
	c.mu.Lock()
	st, pid := c.rec.State, c.rec.RootPid
	c.mu.Unlock()
	if st != api.StateRunning || pid <= 0 {
		return api.Errorf(api.InvalidState, "container %s is %s, not running", name, st)
	}
	if err := syscall.Kill(pid, syscall.Signal(sig)); err != nil {
		return api.Wrap(api.Unknown, err, "kill: "+err.Error())
	}
	return nil
}

func (m *Manager) Pause(ctx context.Context, caller Caller, name string) error {
	c, err := m.managed(ctx, caller, name)
	if err != nil {
		return err
	}
	l, nodes := m.lock(c, true)
	defer l.unlock()
	if st := c.state(); st != api.StateRunning && st != api.StateMeta {
		return api.Errorf(api.InvalidState, "container %s is %s, not running", name, st)
	}
	if err := m.cg.Freeze(c.name); err != nil {
		return api.Wrap(api.Unknown, err, "freeze: "+err.Error())
	}
	for _, n := range nodes {
		n.mu.Lock()
		st := n.rec.State
		if st == api.StateRunning || st == api.StateMeta {
			n.rec.PausedFrom = st
			n.mu.Unlock()
			m.setState(n, api.StatePaused)
			continue
		}
		n.mu.Unlock()
	}
	return nil
}

func (m *Manager) Resume(ctx context.Context, caller Caller, name string) error {
	c, err := m.managed(ctx, caller, name)
	if err != nil {
		return err
	}
	l, nodes := m.lock(c, true)
	defer l.unlock()
	if st := c.state(); st != api.StatePaused {
		return api.Errorf(api.InvalidState, "container %s is %s, not paused", name, st)
	}
	if p := c.parent; !p.isRoot() && p.state() == api.StatePaused {
		return api.Errorf(api.InvalidState, "parent container %s is paused", p.name)
	}
	// The whole subtree resumes: a descendant paused on its own before
	// (its cgroup frozen by itself, not only through c's) is thawed too,
	// top-down, or it would read running while frozen and every start
	// below it would hang in a frozen cgroup.
	for _, n := range nodes {
		if n != c && n.state() != api.StatePaused {
			continue
		}
		if err := m.cg.Thaw(n.name); err != nil {
			return api.Wrap(api.Unknown, err, "thaw "+n.name+": "+err.Error())
		}
	}
	for _, n := range nodes {
		n.mu.Lock()
		st, from := n.rec.State, n.rec.PausedFrom
		n.mu.Unlock()
		if st != api.StatePaused {
			continue
		}
		if from == "" {
			from = api.StateRunning
		}
		m.setState(n, from)
	}
	// Exits that arrived while frozen are processed now.
	for _, n := range nodes {
		n.mu.Lock()
		pending := n.exitRaw != nil
		pid := n.exitPid
		n.mu.Unlock()
		if pending {
			go m.handleDeath(n, pid)
		}
	}
	return nil
}

// ---- wait / list / get / set ---------------------------------------------

// Wait returns the first of names that is dead or stopped (or a meta
// container without running children), or "" when timeout (< 0: none)
// passes first.
func (m *Manager) Wait(ctx context.Context, caller Caller, names []string, timeout time.Duration) (string, error) {
	if len(names) == 0 {
		return "", api.Errorf(api.InvalidValue, "no containers to wait for")
	}
	var cs []*Container
	for _, n := range names {
		if n == api.RootName {
			return n, nil
		}
		c, err := m.lookup(n)
		if err != nil {
			return "", err
		}
		cs = append(cs, c)
	}
	var timer <-chan time.Time
	if timeout >= 0 {
		t := time.NewTimer(timeout)
		defer t.Stop()
		timer = t.C
	}
	for {
		ch := m.changedCh()
		for _, c := range cs {
			if m.waitDone(c) {
				return c.name, nil
			}
		}
		select {
		case <-ch:
		case <-timer:
			return "", nil
		case <-ctx.Done():
			return "", api.Wrap(api.Unknown, ctx.Err(), "wait cancelled")
		}
	}
}

func (m *Manager) waitDone(c *Container) bool {
	c.mu.Lock()
	st, gone := c.rec.State, c.destroyed
	c.mu.Unlock()
	if gone || st.Terminal() {
		return true
	}
	if st == api.StateMeta {
		for _, d := range m.descendants(c) {
			if s := d.state(); s == api.StateRunning || s == api.StatePaused {
				return false
			}
		}
		return true
	}
	return false
}

func (m *Manager) List(ctx context.Context, caller Caller) ([]string, error) {
	m.treeMu.RLock()
	out := make([]string, 0, len(m.byName))
	for n := range m.byName {
		out = append(out, n)
	}
	m.treeMu.RUnlock()
	sort.Strings(out)
	return out, nil
}

// Get reads one property or datum (raw, not humanized).
func (m *Manager) Get(ctx context.Context, caller Caller, name, key string) (string, error) {
	c, err := m.lookup(name)
	if err != nil {
		return "", err
	}
	return m.getKey(c, key)
}

// GetMulti reads several keys of several containers, with an error per cell.
func (m *Manager) GetMulti(ctx context.Context, caller Caller, names, keys []string) []api.GetResult {
	out := make([]api.GetResult, 0, len(names)*len(keys))
	for _, n := range names {
		c, err := m.lookup(n)
		for _, k := range keys {
			r := api.GetResult{Container: n, Key: k}
			if err != nil {
				r.Err = api.AsError(err)
			} else if v, e := m.getKey(c, k); e != nil {
				r.Err = api.AsError(e)
			} else {
				r.Value = v
			}
			out = append(out, r)
		}
	}
	return out
}

func (m *Manager) Set(ctx context.Context, caller Caller, name, key, value string) error {
	c, err := m.lookup(name)
	if err != nil {
		return err
	}
	if c.isRoot() {
		return api.Errorf(api.Permission, "cannot change the root container")
	}
	p := lookupProp(key)
	if p == nil {
		return api.Errorf(api.InvalidProperty, "unknown property %q", key)
	}
	if p.data || p.validate == nil {
		return api.Errorf(api.InvalidProperty, "%s is read-only", key)
	}
	if err := m.mayManage(ctx, caller, c); err != nil {
		return err
	}
	if p.rootOnly && !m.authorized(ctx, caller, api.ActionSetPrivileged) {
		if canon, err := p.validate(m, c, value); err != nil || !p.harmless(m, c, caller, canon) {
			return api.Errorf(api.Permission, "Only root can change this property")
		}
	}
	l, _ := m.lock(c, false)
	defer l.unlock()
	if c.destroyed {
		return api.Errorf(api.ContainerDoesNotExist, "container %q does not exist", name)
	}
	st := c.state()
	if st != api.StateStopped && !(p.dynamic && (st == api.StateRunning || st == api.StatePaused || st == api.StateMeta)) {
		return api.Errorf(api.InvalidState, "cannot change %s of a %s container", key, st)
	}
	canon, err := p.validate(m, c, value)
	if err != nil {
		return err
	}
	if p.apply != nil && st != api.StateStopped {
		if err := p.apply(m, c, canon); err != nil {
			return err
		}
	}
	c.mu.Lock()
	c.rec.Props[key] = canon
	c.mu.Unlock()
	m.save(c)
	return nil
}

// Properties lists every property and datum with its description.
func (m *Manager) Properties() []api.PropertyInfo {
	out := make([]api.PropertyInfo, 0, len(propList))
	for _, p := range propList {
		out = append(out, api.PropertyInfo{Name: p.name, Description: p.desc, ReadOnly: p.data || p.validate == nil, Dynamic: p.dynamic})
	}
	return out
}

// Info is the typed summary of one container.
func (m *Manager) Info(name string) (Info, error) {
	c, err := m.lookup(name)
	if err != nil {
		return Info{}, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	in := Info{
		Name: c.name, State: c.rec.State, RootPid: int32(c.rec.RootPid), ExitStatus: -1,
		OwnerUser: userName(c.rec.OwnerUID), Command: c.rec.Props["command"],
	}
	if c.parent != nil {
		in.Parent = c.parent.name
	}
	if c.rec.State == api.StateDead {
		in.ExitStatus = int32(c.rec.ExitStatus)
		in.RootPid = 0
	}
	return in, nil
}
