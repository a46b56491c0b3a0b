package supervise

import (
	"bufio"
	"bytes"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/porto-dev/porto/isolation"
)

// harness runs a master (this test binary in "__master" mode) whose fake
// workers connect back to the test over a control socket.
type harness struct {
	t       *testing.T
	dir     string
	ln      *net.UnixListener
	cmd     *exec.Cmd
	logPath string
	workers chan *ctlConn

	mu   sync.Mutex
	pids []int // every process to kill at the end
	cur  *ctlConn
}

func (h *harness) logText() string {
	b, _ := os.ReadFile(h.logPath)
	return string(b)
}

// ctlConn is the test's side of one worker generation.
type ctlConn struct {
	hello  ctlMsg
	conn   net.Conn
	mu     sync.Mutex
	enc    *json.Encoder
	nextID int
	reply  map[int]chan ctlMsg
	exits  chan isolation.Exit
	acked  chan ctlMsg
	closed chan struct{}
	seen   map[int][]int // exits received and not yet asked for
}

func newHarness(t *testing.T, masterArgs ...string) *harness {
	t.Helper()
	dir := t.TempDir()
	sock := filepath.Join(dir, "ctl")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, dir: dir, ln: ln, workers: make(chan *ctlConn, 16)}
	go h.accept()
	h.cmd = exec.Command(os.Args[0], append([]string{"__master", "--ctl", sock}, masterArgs...)...)
	// A file, not a pipe: containers inherit it, and exec.Cmd.Wait would
	// wait for them to close a pipe.
	logf, err := os.Create(filepath.Join(dir, "master.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	h.logPath = logf.Name()
	h.cmd.Stdout = logf
	h.cmd.Stderr = logf
	if err := h.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	h.track(h.cmd.Process.Pid)
	t.Cleanup(h.cleanup)
	return h
}

func (h *harness) track(pid int) {
	h.mu.Lock()
	h.pids = append(h.pids, pid)
	h.mu.Unlock()
}

func (h *harness) cleanup() {
	if h.t.Failed() {
		h.t.Logf("master log:\n%s", h.logText())
	}
	h.ln.Close()
	h.mu.Lock()
	pids := append([]int(nil), h.pids...)
	h.mu.Unlock()
	for _, pid := range pids {
		// Containers run in their own session (setsid): kill the group,
		// so whatever the shell forked goes too.
		syscall.Kill(-pid, syscall.SIGKILL)
		syscall.Kill(pid, syscall.SIGKILL)
	}
	if h.cmd.ProcessState == nil {
		h.cmd.Wait()
	}
	// Processes must be gone: reap what ended up as our child (we may be
	// a subreaper), wait a little for init to reap the rest.
	deadline := time.Now().Add(5 * time.Second)
	for _, pid := range pids {
		for {
			st, _ := procStat(pid)
			if st == "Z" && h.isOurs(pid) {
				var ws syscall.WaitStatus
				syscall.Wait4(pid, &ws, syscall.WNOHANG, nil)
				continue
			}
			if st == "" || st == "Z" {
				break
			}
			if time.Now().After(deadline) {
				h.t.Errorf("process %d still there after cleanup (state %s)", pid, st)
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

func (h *harness) isOurs(pid int) bool {
	_, ppid := procStat(pid)
	return ppid == os.Getpid()
}

func (h *harness) accept() {
	for {
		c, err := h.ln.Accept()
		if err != nil {
			return
		}
		cc := &ctlConn{
			conn:   c,
			enc:    json.NewEncoder(c),
			reply:  make(map[int]chan ctlMsg),
			exits:  make(chan isolation.Exit, 100),
			acked:  make(chan ctlMsg, 100),
			closed: make(chan struct{}),
		}
		sc := bufio.NewScanner(c)
		if !sc.Scan() {
			c.Close()
			continue
		}
		if json.Unmarshal(sc.Bytes(), &cc.hello) != nil {
			c.Close()
			continue
		}
		h.track(cc.hello.Pid)
		go cc.read(sc, h)
		h.workers <- cc
	}
}

func (cc *ctlConn) read(sc *bufio.Scanner, h *harness) {
	defer close(cc.closed)
	for sc.Scan() {
		var m ctlMsg
		if json.Unmarshal(sc.Bytes(), &m) != nil {
			continue
		}
		switch m.T {
		case "spawned":
			if m.Pid > 0 {
				h.track(m.Pid)
			}
			cc.mu.Lock()
			ch := cc.reply[m.ID]
			cc.mu.Unlock()
			if ch != nil {
				ch <- m
			}
		case "exit":
			cc.exits <- isolation.Exit{Pid: m.Pid, Status: m.Status}
		case "acked":
			cc.acked <- m
		}
	}
}

// worker waits for the next worker generation to say hello.
func (h *harness) worker() *ctlConn {
	h.t.Helper()
	select {
	case cc := <-h.workers:
		if cc.hello.Sup != h.cmd.Process.Pid {
			h.t.Errorf("worker %d: SupervisorPid = %d, want the master %d", cc.hello.Pid, cc.hello.Sup, h.cmd.Process.Pid)
		}
		h.cur = cc
		return cc
	case <-time.After(10 * time.Second):
		h.t.Fatalf("no worker connected\nmaster log:\n%s", h.logText())
		return nil
	}
}

// spawn runs cmd through the worker and the master.
func (cc *ctlConn) spawn(t *testing.T, cmd string) int {
	t.Helper()
	m := cc.spawnMsg(t, cmd, 0)
	if m.Err != "" {
		t.Fatalf("spawn %q: %s", cmd, m.Err)
	}
	return m.Pid
}

func (cc *ctlConn) spawnMsg(t *testing.T, cmd string, join int) ctlMsg {
	t.Helper()
	cc.mu.Lock()
	cc.nextID++
	id := cc.nextID
	ch := make(chan ctlMsg, 1)
	cc.reply[id] = ch
	err := cc.enc.Encode(ctlMsg{T: "spawn", ID: id, Cmd: cmd, Join: join})
	cc.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-ch:
		return m
	case <-time.After(10 * time.Second):
		t.Fatalf("spawn %q: no reply", cmd)
		return ctlMsg{}
	}
}

func (cc *ctlConn) ack(t *testing.T, pid int) {
	t.Helper()
	cc.mu.Lock()
	err := cc.enc.Encode(ctlMsg{T: "ack", Pid: pid})
	cc.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-cc.acked:
		if m.Err != "" {
			t.Fatalf("ack %d: %s", pid, m.Err)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("ack %d: no reply", pid)
	}
}

// exit waits for the exit of pid, keeping others for later calls.
func (cc *ctlConn) exit(t *testing.T, pid int) isolation.Exit {
	t.Helper()
	if cc.seen == nil {
		cc.seen = make(map[int][]int)
	}
	if sts := cc.seen[pid]; len(sts) > 0 {
		cc.seen[pid] = sts[1:]
		return isolation.Exit{Pid: pid, Status: sts[0]}
	}
	timeout := time.After(10 * time.Second)
	for {
		select {
		case e := <-cc.exits:
			if e.Pid == pid {
				return e
			}
			cc.seen[e.Pid] = append(cc.seen[e.Pid], e.Status)
		case <-timeout:
			t.Fatalf("no exit reported for %d", pid)
			return isolation.Exit{}
		}
	}
}

// waitState polls until pid has state want ("" = gone).
func waitState(t *testing.T, pid int, want string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		st, _ := procStat(pid)
		if st == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("pid %d: state %q, want %q", pid, st, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestMasterSpawnExitAck(t *testing.T) {
	h := newHarness(t)
	w := h.worker()
	master := h.cmd.Process.Pid

	// Several children exit at about the same time: every one is reported
	// with its own status, and each zombie is kept until it is acked.
	codes := []int{0, 1, 3, 42, 255}
	pids := make([]int, len(codes))
	for i, c := range codes {
		pids[i] = w.spawn(t, "exit "+strconv.Itoa(c))
	}
	got := map[int]int{}
	for len(got) < len(pids) {
		select {
		case e := <-w.exits:
			got[e.Pid] = e.Status
		case <-time.After(10 * time.Second):
			t.Fatalf("got %d of %d exits: %v", len(got), len(pids), got)
		}
	}
	for i, pid := range pids {
		if st, ok := got[pid]; !ok || st != codes[i]<<8 {
			t.Errorf("pid %d: status %#x (reported %v), want %#x", pid, st, ok, codes[i]<<8)
		}
		st, ppid := procStat(pid)
		if st != "Z" || ppid != master {
			t.Errorf("pid %d before ack: state %q ppid %d, want a zombie of %d", pid, st, ppid, master)
		}
	}
	for _, pid := range pids {
		w.ack(t, pid)
		waitState(t, pid, "")
	}

	// A signal: raw status is the signal number.
	pid := w.spawn(t, "kill -9 $$")
	if e := w.exit(t, pid); e.Status != 9 {
		t.Errorf("killed child: status %#x, want 9", e.Status)
	}
	w.ack(t, pid)
	waitState(t, pid, "")

	// An orphan reparented to the master is reported too.
	pid = w.spawn(t, "sleep 0.2 & echo $! >"+filepath.Join(h.dir, "orphan")+"; exit 0")
	w.exit(t, pid)
	w.ack(t, pid)
	var orphan int
	for deadline := time.Now().Add(5 * time.Second); orphan == 0; {
		b, _ := os.ReadFile(filepath.Join(h.dir, "orphan"))
		orphan, _ = strconv.Atoi(strings.TrimSpace(string(b)))
		if time.Now().After(deadline) {
			t.Fatal("no orphan pid")
		}
		time.Sleep(5 * time.Millisecond)
	}
	h.track(orphan)
	if e := w.exit(t, orphan); e.Status != 0 {
		t.Errorf("orphan: status %#x", e.Status)
	}
	if _, ppid := procStat(orphan); ppid != master {
		t.Errorf("orphan's parent is %d, want the master %d", ppid, master)
	}
	w.ack(t, orphan)
	waitState(t, orphan, "")
}

func TestMasterSpawnError(t *testing.T) {
	h := newHarness(t)
	w := h.worker()
	m := w.spawnMsg(t, "true", -1) // the stand-in fails setns with EINVAL
	if m.Err == "" || syscall.Errno(m.Errno) != syscall.EINVAL {
		t.Fatalf("spawn error %q errno %d, want EINVAL", m.Err, m.Errno)
	}
	// The master still works.
	pid := w.spawn(t, "exit 2")
	if e := w.exit(t, pid); e.Status != 2<<8 {
		t.Errorf("status %#x", e.Status)
	}
	w.ack(t, pid)
}

// The key crash-safety property: exits survive a SIGKILL of the worker,
// whether the child exited before (reported, not acked) or while the
// worker was down.
func TestMasterWorkerCrash(t *testing.T) {
	h := newHarness(t)
	w := h.worker()
	master := h.cmd.Process.Pid

	early := w.spawn(t, "exit 5")
	if e := w.exit(t, early); e.Status != 5<<8 {
		t.Fatalf("status %#x", e.Status)
	}
	flag := filepath.Join(h.dir, "go")
	late := w.spawn(t, "while [ ! -e "+flag+" ]; do sleep 0.01; done; exit 7")
	running := w.spawn(t, "exec sleep 100")

	syscall.Kill(w.hello.Pid, syscall.SIGKILL)
	if err := os.WriteFile(flag, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	w2 := h.worker()
	if w2.hello.Pid == w.hello.Pid {
		t.Fatal("same worker pid")
	}
	waitState(t, w.hello.Pid, "") // the master reaped the old worker
	want := map[int]int{early: 5 << 8, late: 7 << 8}
	for pid, st := range want {
		if e := w2.exit(t, pid); e.Status != st {
			t.Errorf("pid %d: new worker got status %#x, want %#x", pid, e.Status, st)
		}
		if st, ppid := procStat(pid); st != "Z" || ppid != master {
			t.Errorf("pid %d: state %q ppid %d, want a zombie of the master", pid, st, ppid)
		}
	}
	for pid := range want {
		w2.ack(t, pid)
		waitState(t, pid, "")
	}
	if st, ppid := procStat(running); st == "" || st == "Z" || ppid != master {
		t.Errorf("running container: state %q ppid %d", st, ppid)
	}
	syscall.Kill(running, syscall.SIGKILL)
	if e := w2.exit(t, running); e.Status != 9 {
		t.Errorf("status %#x", e.Status)
	}
	w2.ack(t, running)
}

// SIGHUP: the master re-executes itself, keeps its pid, its children and
// its worker, and re-reports what was not acknowledged.
func TestMasterUpgrade(t *testing.T) {
	h := newHarness(t)
	w := h.worker()
	master := h.cmd.Process.Pid

	zombie := w.spawn(t, "exit 4")
	w.exit(t, zombie)
	running := w.spawn(t, "exec sleep 100")

	syscall.Kill(master, syscall.SIGHUP)
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, _ := os.ReadFile("/proc/" + strconv.Itoa(master) + "/cmdline")
		if bytes.Contains(b, []byte("--"+TakeoverFlag+"=")) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("master did not re-execute; cmdline %q", b)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// The same worker is served: its unacked exit comes again, spawns work.
	if e := w.exit(t, zombie); e.Status != 4<<8 {
		t.Errorf("re-reported status %#x", e.Status)
	}
	pid := w.spawn(t, "exit 6")
	if e := w.exit(t, pid); e.Status != 6<<8 {
		t.Errorf("status %#x", e.Status)
	}
	syscall.Kill(running, syscall.SIGTERM)
	if e := w.exit(t, running); e.Status != int(syscall.SIGTERM) {
		t.Errorf("status %#x", e.Status)
	}
	for _, p := range []int{zombie, pid, running} {
		if _, ppid := procStat(p); ppid != master {
			t.Errorf("pid %d: parent %d, want %d", p, ppid, master)
		}
		w.ack(t, p)
		waitState(t, p, "")
	}
	select {
	case cc := <-h.workers:
		t.Errorf("a new worker %d started during the upgrade", cc.hello.Pid)
	default:
	}
	// A second upgrade works as well.
	syscall.Kill(master, syscall.SIGHUP)
	time.Sleep(200 * time.Millisecond)
	pid = w.spawn(t, "exit 1")
	if e := w.exit(t, pid); e.Status != 1<<8 {
		t.Errorf("status %#x", e.Status)
	}
	w.ack(t, pid)
}

// SIGTERM stops the worker and the master, never the containers.
func TestMasterStop(t *testing.T) {
	h := newHarness(t)
	w := h.worker()
	running := w.spawn(t, "exec sleep 100")
	h.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- h.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("master exit: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("master did not exit")
	}
	waitState(t, w.hello.Pid, "")
	if st, _ := procStat(running); st == "" || st == "Z" {
		t.Errorf("container was stopped with the master (state %q)", st)
	}
}

// A worker that ignores SIGTERM is killed after the stop timeout.
func TestMasterStopKillsStubbornWorker(t *testing.T) {
	h := newHarness(t, "--worker-ignore-term", "--stop-timeout=300ms")
	w := h.worker()
	start := time.Now()
	h.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- h.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("master exit: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("master did not exit")
	}
	if d := time.Since(start); d < 300*time.Millisecond {
		t.Errorf("master exited after %v, before the stop timeout", d)
	}
	waitState(t, w.hello.Pid, "")
	if !strings.Contains(h.logText(), "killing it") {
		t.Errorf("no SIGKILL logged:\n%s", h.logText())
	}
}

// A worker that dropped its socket but keeps running is killed and
// replaced; it gets the exits the old one did not acknowledge.
func TestMasterKillsWorkerWithoutSocket(t *testing.T) {
	h := newHarness(t, "--orphan-timeout=300ms")
	w := h.worker()
	pid := w.spawn(t, "exit 8")
	w.exit(t, pid)
	w.mu.Lock()
	w.enc.Encode(ctlMsg{T: "close"})
	w.mu.Unlock()
	w2 := h.worker()
	waitState(t, w.hello.Pid, "")
	if !strings.Contains(h.logText(), "without its socket") {
		t.Errorf("the worker was not killed by the master:\n%s", h.logText())
	}
	if e := w2.exit(t, pid); e.Status != 8<<8 {
		t.Errorf("status %#x", e.Status)
	}
	w2.ack(t, pid)
	waitState(t, pid, "")
}

// waitReexec waits until the master's command line shows the n-th
// takeover (each re-exec appends one --takeover and strips the previous).
func (h *harness) waitReexec(t *testing.T, old string) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, _ := os.ReadFile("/proc/" + strconv.Itoa(h.cmd.Process.Pid) + "/cmdline")
		if s := string(b); strings.Contains(s, "--"+TakeoverFlag+"=") && s != old {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("master did not re-execute; cmdline %q\n%s", b, h.logText())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A failed re-exec leaves the master serving; a later one succeeds.
func TestMasterUpgradeExecFails(t *testing.T) {
	dir := t.TempDir()
	self := filepath.Join(dir, "portod")
	if err := os.Symlink(os.Args[0], self); err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, "--self", self)
	w := h.worker()
	os.Remove(self)
	syscall.Kill(h.cmd.Process.Pid, syscall.SIGHUP)
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(h.logText(), "upgrade failed") {
		if time.Now().After(deadline) {
			t.Fatalf("no failed upgrade logged:\n%s", h.logText())
		}
		time.Sleep(10 * time.Millisecond)
	}
	pid := w.spawn(t, "exit 3")
	if e := w.exit(t, pid); e.Status != 3<<8 {
		t.Errorf("status %#x", e.Status)
	}
	if err := os.Symlink(os.Args[0], self); err != nil {
		t.Fatal(err)
	}
	syscall.Kill(h.cmd.Process.Pid, syscall.SIGHUP)
	h.waitReexec(t, "")
	if e := w.exit(t, pid); e.Status != 3<<8 { // re-reported
		t.Errorf("status %#x", e.Status)
	}
	w.ack(t, pid)
	waitState(t, pid, "")
}

// Spawns in flight at SIGHUP: waited for (their reply comes, from the new
// master), or, past the timeout, answered with an error: never a hang.
func TestMasterUpgradeSpawnInFlight(t *testing.T) {
	for _, tc := range []struct {
		name    string
		args    []string
		wantErr bool
	}{
		{"waited", nil, false},
		{"timeout", []string{"--upgrade-timeout=100ms"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, tc.args...)
			w := h.worker()
			res := make(chan ctlMsg, 1)
			go func() { res <- w.spawnMsg(t, "exit 0", -3) }()
			time.Sleep(200 * time.Millisecond) // the launch is under way
			syscall.Kill(h.cmd.Process.Pid, syscall.SIGHUP)
			var m ctlMsg
			select {
			case m = <-res:
			case <-time.After(15 * time.Second):
				t.Fatal("spawn in flight at the upgrade never returned")
			}
			h.waitReexec(t, "")
			if tc.wantErr {
				if m.Err == "" || !strings.Contains(m.Err, "upgraded") {
					t.Errorf("spawn past the timeout: %+v, want an upgrade error", m)
				}
			} else {
				if m.Err != "" {
					t.Fatalf("spawn: %s", m.Err)
				}
				w.exit(t, m.Pid)
				w.ack(t, m.Pid)
			}
			// Still served.
			pid := w.spawn(t, "exit 0")
			w.exit(t, pid)
			w.ack(t, pid)
		})
	}
}
