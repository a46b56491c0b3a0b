package supervise

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"runtime/debug"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/porto-dev/porto/isolation"
)

// LaunchFunc starts "self __isolate" with files as its fds 0..n and returns
// its pid; isolation.Launch is the real one. It must not wait for the child.
type LaunchFunc func(self string, spec isolation.LaunchSpec, files []*os.File) (int, error)

// MasterOptions configures RunMaster.
type MasterOptions struct {
	// Self is the portod binary the worker, the isolation stage and an
	// upgraded master are executed from. Default: os.Executable() resolved
	// at start (a path, so an upgrade picks up a replaced binary).
	Self string
	// WorkerArgs follow "Self __worker --supervisor-fd 3" (e.g. --config).
	WorkerArgs []string
	// Args are the master's own arguments (without argv[0]) given again on
	// the SIGHUP re-exec, which appends --takeover=<token>. Default:
	// os.Args[1:] without --takeover (see ParseMasterArgs).
	Args []string
	// Takeover is the value of --takeover when this master is the result of
	// a SIGHUP re-exec; empty otherwise.
	Takeover string
	// Log receives the master's messages. Default: slog.Default().
	Log *slog.Logger
	// Launch replaces isolation.Launch (tests). Default: isolation.Launch.
	Launch LaunchFunc
	// Stage is the binary of the isolation stage ("Stage __isolate"),
	// porto-stage. Default: Self.
	Stage string
	// StagePool > 0 lets the worker ask for warm isolation stages (see
	// pool.go); 0 refuses them and every spawn starts its stage cold.
	StagePool int
}

// RestartResetEnv names an environment variable, for tests, that
// overrides how long a worker must have run for its death to be followed
// by an immediate restart (a Go duration; default 10s). "0s" turns the
// crash-loop backoff off.
const RestartResetEnv = "PORTO_SUPERVISOR_RESTART_RESET"

// Timing of the master. Variables so tests could shorten them.
var (
	restartMin      = 100 * time.Millisecond
	restartMax      = 5 * time.Second
	restartResetRun = 10 * time.Second
	stopTimeout     = 10 * time.Second // SIGTERM -> SIGKILL of the worker
	orphanTimeout   = 10 * time.Second // worker alive without its socket
	upgradeTimeout  = 10 * time.Second // spawns in flight at SIGHUP
	// scanInterval is the tick: it finds the exit of an orphan no pidfd
	// watches whose SIGCHLD was taken for another exit's (cheap when no
	// zombie exists: one epoll_wait, one waitid). While children exit it
	// ticks every busyScanInterval; idle, every scanInterval.
	scanInterval     = time.Second
	busyScanInterval = 200 * time.Millisecond
	busyFor          = 5 * time.Second // after the last SIGCHLD
)

type evKind int

const (
	evMsg     evKind = iota // a datagram from the worker
	evBad                   // a malformed datagram
	evDown                  // the worker's socket is gone
	evPaused                // the reader stopped for an upgrade
	evSpawned               // a launch finished
	evWarm                  // a warm stage launch finished
)

type event struct {
	kind  evKind
	gen   int
	msg   *message
	files []*os.File
	err   error
	seq   uint64
	id    uint64
	pid   int
	forks bool // evSpawned: the stage forks the command (forksCommand)
	// evWarm
	flags uintptr
	ctl   *os.File
	epoch uint64
}

type worker struct {
	gen     int
	pid     int
	started time.Time
	rawFD   int // master end of the socket as created (handed over on upgrade), -1 if closed
	conn    *net.UnixConn
	q       *outQueue
	up      bool // socket usable
	downAt  time.Time
	paused  bool // reader stopped for an upgrade
	termed  bool // SIGTERM sent during shutdown
	killed  bool // SIGKILL sent
}

type spawnReq struct {
	gen int
	id  uint64
}

type master struct {
	opts         MasterOptions
	log          *slog.Logger
	launch       LaunchFunc
	t            *tracker
	events       chan event
	w            *worker
	gen          int
	reqs         map[uint64]spawnReq // by tracker sequence number
	backoff      time.Duration
	warmInflight int // warm stage launches not finished

	restart   *time.Timer
	stopping  bool
	stopAt    time.Time
	upgrading bool
	upgradeAt time.Time
}

// takeoverState is what a master hands to its re-executed successor.
type takeoverState struct {
	FD        int      `json:"fd"`         // master end of the socket, -1 if none
	WorkerPid int      `json:"worker_pid"` // 0 if none
	Gen       int      `json:"gen"`
	Unsent    [][]byte `json:"unsent,omitempty"` // datagrams not yet written
	Lost      []uint64 `json:"lost,omitempty"`   // spawn ids still in flight
}

// RunMaster runs the supervisor master until SIGTERM or SIGINT (then it
// returns nil after the worker has stopped) or an unrecoverable start-up
// error. Container processes are never killed by it.
func RunMaster(opts MasterOptions) error {
	m := &master{
		opts:    opts,
		log:     opts.Log,
		launch:  opts.Launch,
		t:       newTracker(),
		events:  make(chan event, 256),
		reqs:    make(map[uint64]spawnReq),
		backoff: restartMin,
	}
	defer m.t.close()
	if m.log == nil {
		m.log = slog.Default()
	}
	if m.launch == nil {
		m.launch = isolation.Launch
	}
	if m.opts.Self == "" {
		self, err := os.Executable()
		if err != nil {
			return fmt.Errorf("supervisor: resolve own binary: %w", err)
		}
		m.opts.Self = self
	}
	if m.opts.Args == nil {
		_, m.opts.Args, _ = ParseMasterArgs(os.Args[1:])
	}
	if m.opts.Stage == "" {
		m.opts.Stage = m.opts.Self
	}
	if v := os.Getenv(RestartResetEnv); v != "" {
		// A test knob (the chaos tests kill the worker every second).
		if d, err := time.ParseDuration(v); err == nil && d >= 0 {
			restartResetRun = d
		}
	}
	if err := setSubreaper(); err != nil {
		return fmt.Errorf("supervisor: PR_SET_CHILD_SUBREAPER: %w", err)
	}

	chld := make(chan os.Signal, 1)
	term := make(chan os.Signal, 2)
	hup := make(chan os.Signal, 1)
	signal.Notify(chld, unix.SIGCHLD)
	signal.Notify(term, unix.SIGTERM, unix.SIGINT)
	signal.Notify(hup, unix.SIGHUP)
	defer signal.Stop(chld)
	defer signal.Stop(term)
	defer signal.Stop(hup)

	if opts.Takeover != "" {
		if err := m.adopt(opts.Takeover); err != nil {
			m.log.Error("supervisor: takeover failed, starting a new worker", "err", err)
		}
	}
	if m.w == nil {
		m.startWorker()
	}
	m.log.Info("supervisor: master running", "pid", os.Getpid(), "self", m.opts.Self)
	m.scan()

	tick := time.NewTimer(scanInterval)
	defer tick.Stop()
	var lastChld time.Time
	fast := time.NewTicker(10 * time.Millisecond) // only consulted when needed
	defer fast.Stop()
	for {
		var restartC <-chan time.Time
		if m.restart != nil {
			restartC = m.restart.C
		}
		var fastC <-chan time.Time
		if m.upgrading || m.stopping {
			fastC = fast.C
		}
		var done bool
		m.guard(func() {
			select {
			case <-chld:
				m.check()
				lastChld = time.Now()
			case <-tick.C:
				m.tick()
				m.checkOrphan()
				next := scanInterval
				if time.Since(lastChld) < busyFor {
					next = min(next, busyScanInterval)
				}
				tick.Reset(next)
			case <-fastC:
			case s := <-term:
				m.beginStop(s)
			case <-hup:
				m.beginUpgrade()
			case ev := <-m.events:
				m.handle(ev)
			case <-restartC:
				m.restart = nil
				m.startWorker()
			}
			done = m.afterStep()
		})
		if done {
			m.log.Info("supervisor: master exiting")
			return nil
		}
	}
}

// guard runs one step of the loop; a bug there is logged, not fatal: a
// dead master would orphan every container and lose their exits.
func (m *master) guard(step func()) {
	defer func() {
		if r := recover(); r != nil {
			m.log.Error("supervisor: BUG: master loop panicked", "panic", r, "stack", string(debug.Stack()))
		}
	}()
	step()
}

// afterStep drives the stop and upgrade state machines; it reports
// whether the master is done.
func (m *master) afterStep() bool {
	if m.stopping {
		if m.w == nil {
			return true
		}
		if !m.w.killed && time.Now().After(m.stopAt) {
			m.log.Warn("supervisor: worker ignored SIGTERM, killing it", "pid", m.w.pid)
			unix.Kill(m.w.pid, unix.SIGKILL)
			m.w.killed = true
		}
	}
	if m.upgrading {
		m.tryUpgrade()
	}
	return false
}

// startWorker creates a socket pair and starts a worker generation.
func (m *master) startWorker() {
	if m.stopping || m.w != nil {
		return
	}
	w, err := m.spawnWorker()
	if err != nil {
		m.log.Error("supervisor: cannot start worker", "err", err)
		m.scheduleRestart(time.Now())
		return
	}
	m.log.Info("supervisor: worker started", "pid", w.pid, "gen", w.gen)
	m.attach(w)
	m.deliver(m.t.unacked())
}

func (m *master) spawnWorker() (*worker, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("socketpair: %w", err)
	}
	wend := os.NewFile(uintptr(fds[1]), "supervisor-worker")
	defer wend.Close()
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		unix.Close(fds[0])
		return nil, err
	}
	defer devnull.Close()
	argv := append([]string{m.opts.Self, WorkerCommand, "--" + SupervisorFDFlag, strconv.Itoa(WorkerFD)}, m.opts.WorkerArgs...)
	p, err := os.StartProcess(m.opts.Self, argv, &os.ProcAttr{
		Files: []*os.File{devnull, os.Stdout, os.Stderr, wend},
	})
	if err != nil {
		unix.Close(fds[0])
		return nil, err
	}
	pid := p.Pid
	p.Release()
	m.gen++
	w := &worker{gen: m.gen, pid: pid, started: time.Now(), rawFD: fds[0]}
	if err := m.connect(w); err != nil {
		// The worker finds its socket closed and exits; scan reaps it.
		m.log.Error("supervisor: worker socket", "err", err)
		unix.Close(w.rawFD)
		w.rawFD = -1
	}
	return w, nil
}

// connect wraps w.rawFD into a net connection (of its own duplicate, so
// rawFD keeps its number and flags for a later upgrade).
func (m *master) connect(w *worker) error {
	dup, err := unix.FcntlInt(uintptr(w.rawFD), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("dup supervisor socket: %w", err)
	}
	f := os.NewFile(uintptr(dup), "supervisor-master")
	c, err := net.FileConn(f)
	f.Close()
	if err != nil {
		return err
	}
	uc, ok := c.(*net.UnixConn)
	if !ok {
		c.Close()
		return fmt.Errorf("socket is %T, not unix", c)
	}
	w.conn = uc
	w.q = newOutQueue()
	w.up = true
	return nil
}

// attach makes w the current worker and starts its reader and writer.
func (m *master) attach(w *worker) {
	m.w = w
	if !w.up {
		w.downAt = time.Now()
		return
	}
	go w.q.run(w.conn)
	go m.read(w.gen, w.conn)
}

func (m *master) read(gen int, conn *net.UnixConn) {
	buf := make([]byte, maxMsg)
	oob := make([]byte, oobSize)
	for {
		msg, files, err := readMsg(conn, buf, oob)
		var pe *protoError
		switch {
		case err == nil:
			m.events <- event{kind: evMsg, gen: gen, msg: msg, files: files}
		case errors.As(err, &pe):
			m.events <- event{kind: evBad, gen: gen, msg: pe.msg, err: err}
		case errors.Is(err, os.ErrDeadlineExceeded):
			m.events <- event{kind: evPaused, gen: gen}
			return
		default:
			m.events <- event{kind: evDown, gen: gen, err: err}
			return
		}
	}
}

func (m *master) current(gen int) *worker {
	if m.w != nil && m.w.gen == gen {
		return m.w
	}
	return nil
}

func (m *master) handle(ev event) {
	switch ev.kind {
	case evMsg:
		m.handleMsg(ev)
	case evBad:
		m.log.Warn("supervisor: bad message from worker", "err", ev.err)
		if ev.msg != nil && ev.msg.Op == opSpawn && ev.msg.ID != 0 {
			m.reply(ev.gen, &message{Op: opSpawned, ID: ev.msg.ID, Error: ev.err.Error()})
		}
	case evDown:
		if w := m.current(ev.gen); w != nil && w.up {
			lvl := slog.LevelWarn
			if m.stopping {
				lvl = slog.LevelInfo
			}
			m.log.Log(context.Background(), lvl, "supervisor: worker socket closed", "pid", w.pid, "err", ev.err)
			m.disconnect(w)
		}
	case evPaused:
		if w := m.current(ev.gen); w != nil {
			w.paused = true
		}
	case evSpawned:
		delete(m.reqs, ev.seq)
		released := m.t.endSpawnOf(ev.seq, ev.pid, ev.forks)
		r := &message{Op: opSpawned, ID: ev.id, Pid: ev.pid}
		if ev.err != nil {
			r.Pid = 0
			r.Error = ev.err.Error()
			r.Errno = int(errnoOf(ev.err))
		}
		m.reply(ev.gen, r)
		m.deliver(released)
	case evWarm:
		m.warmLaunched(ev)
	}
}

func (m *master) handleMsg(ev event) {
	w := m.current(ev.gen)
	if w == nil {
		closeFiles(ev.files)
		return
	}
	switch ev.msg.Op {
	case opAck:
		closeFiles(ev.files)
		if err := m.t.ack(ev.msg.Pid); err != nil {
			m.log.Warn("supervisor: reap", "pid", ev.msg.Pid, "err", err)
		}
	case opSpawn:
		files, err := spawnFiles(ev.msg, ev.files)
		if err == nil && ev.msg.Spec == nil {
			closeFiles(files)
			err = errors.New("spawn: no spec")
		}
		if err != nil {
			m.reply(ev.gen, &message{Op: opSpawned, ID: ev.msg.ID, Error: err.Error()})
			return
		}
		spec := *ev.msg.Spec
		seq := m.t.beginSpawn()
		m.reqs[seq] = spawnReq{gen: ev.gen, id: ev.msg.ID}
		go m.doSpawn(seq, ev.gen, ev.msg.ID, spec, files)
	case opWarm:
		closeFiles(ev.files)
		m.askWarm(ev.gen, ev.msg.Flags, ev.msg.N, ev.msg.Epoch)
	default:
		closeFiles(ev.files)
		m.log.Warn("supervisor: unknown message from worker", "op", ev.msg.Op)
	}
}

// doSpawn runs one launch; spawns may block (setns), so each has its own
// goroutine.
func (m *master) doSpawn(seq uint64, gen int, id uint64, spec isolation.LaunchSpec, files []*os.File) {
	ev := event{kind: evSpawned, gen: gen, seq: seq, id: id, forks: forksCommand(spec)}
	defer func() {
		if r := recover(); r != nil {
			m.log.Error("supervisor: launch panicked", "panic", r, "stack", string(debug.Stack()))
			ev.pid, ev.err = 0, fmt.Errorf("launch panicked: %v", r)
		}
		closeFiles(files)
		m.events <- ev
	}()
	ev.pid, ev.err = m.launch(m.opts.Stage, spec, files)
	if ev.err != nil {
		ev.pid = 0
	}
}

func (m *master) reply(gen int, r *message) {
	if w := m.current(gen); w != nil && w.up {
		w.q.push(encode(r))
	}
}

func (m *master) sendExit(e isolation.Exit) {
	if w := m.w; w != nil && w.up {
		w.q.push(encode(&message{Op: opExit, Pid: e.Pid, Status: e.Status}))
	}
}

// disconnect closes w's socket; the process is handled by scan.
func (m *master) disconnect(w *worker) {
	if !w.up {
		return
	}
	w.up = false
	w.downAt = time.Now()
	w.q.close()
	w.conn.Close()
	if w.rawFD >= 0 {
		unix.Close(w.rawFD)
		w.rawFD = -1
	}
}

// scan learns exits of children and of the worker, asking every child
// (at start).
func (m *master) scan() { m.sweep(m.t.scan) }

// check learns exits on SIGCHLD: it asks the children whose pidfd became
// readable and scans in full only when they do not explain the signal
// (see tracker).
func (m *master) check() { m.sweep(m.t.check) }

// tick is the periodic sweep (see tracker.tick).
func (m *master) tick() { m.sweep(m.t.tick) }

func (m *master) sweep(how func(special int) ([]isolation.Exit, specialState, int)) {
	special := 0
	if m.w != nil {
		special = m.w.pid
	}
	released, sp, status := how(special)
	switch sp {
	case specialDead:
		m.workerDied(status, true)
	case specialGone:
		m.workerDied(0, false)
	}
	m.deliver(released)
}

func (m *master) workerDied(status int, zombie bool) {
	w := m.w
	if zombie {
		if _, err := reap(w.pid); err != nil {
			m.log.Warn("supervisor: reap worker", "pid", w.pid, "err", err)
		}
		lvl := slog.LevelWarn
		if m.stopping {
			lvl = slog.LevelInfo
		}
		m.log.Log(context.Background(), lvl, "supervisor: worker exited", "pid", w.pid, "status", describeStatus(status))
	} else {
		m.log.Warn("supervisor: worker is not our child any more", "pid", w.pid)
	}
	m.disconnect(w)
	m.w = nil
	if !m.stopping {
		m.scheduleRestart(w.started)
	}
}

// scheduleRestart arms the start of the next worker: at once after a
// worker that ran restartResetRun or longer (its containers wait for it),
// else after the current delay, doubled for the next quick death.
func (m *master) scheduleRestart(started time.Time) {
	var delay time.Duration
	if time.Since(started) >= restartResetRun {
		m.backoff = restartMin
	} else {
		delay = m.backoff
		m.backoff = min(2*m.backoff, restartMax)
	}
	m.log.Info("supervisor: restarting worker", "in", delay)
	if m.restart != nil {
		m.restart.Stop()
	}
	m.restart = time.NewTimer(delay)
}

// checkOrphan kills a worker that lost its socket but keeps running.
func (m *master) checkOrphan() {
	w := m.w
	if w == nil || w.up || w.killed || m.upgrading || time.Since(w.downAt) < orphanTimeout {
		return
	}
	m.log.Warn("supervisor: worker without its socket, killing it", "pid", w.pid)
	unix.Kill(w.pid, unix.SIGKILL)
	w.killed = true
}

func (m *master) beginStop(s os.Signal) {
	if m.stopping {
		return
	}
	m.log.Info("supervisor: stopping", "signal", s)
	m.stopping = true
	m.stopAt = time.Now().Add(stopTimeout)
	if m.restart != nil {
		m.restart.Stop()
		m.restart = nil
	}
	if m.upgrading {
		m.endUpgrade()
	}
	if m.w != nil {
		unix.Kill(m.w.pid, unix.SIGTERM)
		m.w.termed = true
	}
}

func (m *master) beginUpgrade() {
	if m.stopping || m.upgrading {
		return
	}
	m.log.Info("supervisor: upgrading in place", "self", m.opts.Self)
	m.upgrading = true
	m.upgradeAt = time.Now()
	if w := m.w; w != nil && w.up {
		w.paused = false
		w.conn.SetReadDeadline(time.Unix(1, 0))
	}
}

// endUpgrade resumes normal service after a failed or cancelled upgrade.
func (m *master) endUpgrade() {
	m.upgrading = false
	if w := m.w; w != nil && w.up {
		w.conn.SetReadDeadline(time.Time{})
		if w.paused {
			w.paused = false
			go m.read(w.gen, w.conn)
		}
	}
}

func (m *master) tryUpgrade() {
	w := m.w
	if w != nil && w.up && !w.paused {
		return // the reader has not stopped yet
	}
	if (len(m.reqs) > 0 || m.warmInflight > 0) && time.Since(m.upgradeAt) < upgradeTimeout {
		return // spawns in flight
	}
	st := takeoverState{FD: -1, Gen: m.gen}
	if w != nil {
		st.WorkerPid = w.pid
		if w.up {
			st.FD = w.rawFD
			st.Unsent = w.q.pause(w.conn)
		}
	}
	for _, r := range m.reqs {
		if r.gen == m.gen {
			st.Lost = append(st.Lost, r.id)
		}
	}
	tok, err := json.Marshal(&st)
	if err == nil {
		argv := append([]string{m.opts.Self}, m.opts.Args...)
		argv = append(argv, "--"+TakeoverFlag+"="+base64.RawURLEncoding.EncodeToString(tok))
		if st.FD >= 0 {
			_, err = unix.FcntlInt(uintptr(st.FD), unix.F_SETFD, 0)
		}
		if err == nil {
			// Caught signals revert to their defaults across execve; the
			// successor registers its own at once. Children and zombies
			// stay ours: the pid does not change.
			err = unix.Exec(m.opts.Self, argv, os.Environ())
		}
	}
	m.log.Error("supervisor: upgrade failed, continuing", "err", err)
	if st.FD >= 0 {
		unix.CloseOnExec(st.FD)
	}
	if w != nil && w.up {
		w.q.resume(w.conn)
	}
	m.endUpgrade()
}

// adopt takes over the worker of the master that re-executed us.
func (m *master) adopt(token string) error {
	b, err := base64.RawURLEncoding.DecodeString(token)
	if err != nil {
		return fmt.Errorf("takeover token: %w", err)
	}
	var st takeoverState
	if err := json.Unmarshal(b, &st); err != nil {
		return fmt.Errorf("takeover token: %w", err)
	}
	m.gen = st.Gen
	if st.WorkerPid <= 0 {
		if st.FD >= 0 {
			unix.Close(st.FD)
		}
		return nil
	}
	m.gen++
	w := &worker{gen: m.gen, pid: st.WorkerPid, started: time.Now(), rawFD: st.FD}
	if st.FD >= 0 {
		unix.CloseOnExec(st.FD)
		if err := m.connect(w); err != nil {
			unix.Close(st.FD)
			w.rawFD = -1
			m.log.Error("supervisor: takeover socket", "err", err)
		}
	}
	m.attach(w)
	if w.up {
		for _, d := range st.Unsent {
			w.q.push(d)
		}
		for _, id := range st.Lost {
			w.q.push(encode(&message{Op: opSpawned, ID: id, Error: "supervisor was upgraded while spawning; the process may have been started"}))
		}
	}
	m.log.Info("supervisor: took over worker", "pid", w.pid, "unsent", len(st.Unsent), "lost", len(st.Lost))
	return nil
}

func describeStatus(status int) string {
	ws := syscall.WaitStatus(status)
	switch {
	case ws.Exited():
		return fmt.Sprintf("exited with %d", ws.ExitStatus())
	case ws.Signaled():
		s := fmt.Sprintf("killed by signal %d (%v)", int(ws.Signal()), ws.Signal())
		if ws.CoreDump() {
			s += ", core dumped"
		}
		return s
	}
	return fmt.Sprintf("status %#x", status)
}
