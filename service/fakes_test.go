package service

import (
	"encoding/binary"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/porto-dev/porto/isolation"
	"github.com/porto-dev/porto/units"
)

// fakePidBase is above any possible pid_max (2^22), so a stray kill(2) of
// a fake pid can only fail with ESRCH.
const fakePidBase = 1 << 23

// fakeSpawner plays the supervisor and the isolation stage: it reads the
// config from the sync socket and either "execs" (closes it) or reports a
// StartError for argv[0] == "__missing__".
type fakeSpawner struct {
	mu      sync.Mutex
	next    int
	configs map[int]*isolation.Config
	exits   chan isolation.Exit
	acked   map[int]bool
}

func newFakeSpawner() *fakeSpawner {
	return &fakeSpawner{next: fakePidBase, configs: map[int]*isolation.Config{},
		exits: make(chan isolation.Exit, 64), acked: map[int]bool{}}
}

func (f *fakeSpawner) Spawn(spec isolation.LaunchSpec, files []*os.File) (int, error) {
	f.mu.Lock()
	f.next++
	pid := f.next
	f.mu.Unlock()
	sync, err := syscall.Dup(int(files[3].Fd()))
	if err != nil {
		return 0, err
	}
	go func() {
		s := os.NewFile(uintptr(sync), "fake-stage")
		defer s.Close()
		var hdr [4]byte
		if _, err := io.ReadFull(s, hdr[:]); err != nil {
			f.exit(pid, 1<<8)
			return
		}
		b := make([]byte, binary.BigEndian.Uint32(hdr[:]))
		io.ReadFull(s, b)
		cfg := new(isolation.Config)
		json.Unmarshal(b, cfg)
		f.mu.Lock()
		f.configs[pid] = cfg
		f.mu.Unlock()
		if len(cfg.Argv) > 0 && cfg.Argv[0] == "__missing__" {
			se, _ := json.Marshal(&isolation.StartError{Errno: 2, Op: "execvpe(__missing__)", Msg: "No such file or directory"})
			s.Write(se)
			s.Close()
			f.exit(pid, 127<<8)
		}
	}()
	return pid, nil
}

func (f *fakeSpawner) exit(pid, status int)         { f.exits <- isolation.Exit{Pid: pid, Status: status} }
func (f *fakeSpawner) Exits() <-chan isolation.Exit { return f.exits }
func (f *fakeSpawner) Ack(pid int) error {
	f.mu.Lock()
	f.acked[pid] = true
	f.mu.Unlock()
	return nil
}
func (f *fakeSpawner) SupervisorPid() int { return os.Getpid() }

func (f *fakeSpawner) config(pid int) *isolation.Config {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.configs[pid]
}

// fakeCgroups records cgroups as a set of names.
type fakeCgroups struct {
	mu      sync.Mutex
	groups  map[string]bool
	frozen  map[string]bool
	oom     map[string]uint64
	classid map[string]uint32 // the last Limits.NetClassID applied
}

func newFakeCgroups() *fakeCgroups {
	return &fakeCgroups{groups: map[string]bool{}, frozen: map[string]bool{}, oom: map[string]uint64{}, classid: map[string]uint32{}}
}

func (f *fakeCgroups) Create(name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.groups[name] = true
	return nil
}
func (f *fakeCgroups) Attach(name string, pid int) error          { return nil }
func (f *fakeCgroups) Procs(name string) ([]int, error)           { return nil, nil }
func (f *fakeCgroups) Kill(name string, sig syscall.Signal) error { return nil }
func (f *fakeCgroups) Freeze(name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.frozen[name] = true
	return nil
}
func (f *fakeCgroups) Thaw(name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.frozen, name)
	return nil
}
func (f *fakeCgroups) Frozen(name string) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.frozen[name], nil
}
func (f *fakeCgroups) Apply(name string, l units.Limits) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.classid[name] = l.NetClassID
	return nil
}
func (f *fakeCgroups) Stats(name string) (units.Stats, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return units.Stats{OOMKills: f.oom[name]}, nil
}
func (f *fakeCgroups) OOMKills(name string) (uint64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.oom[name], nil
}
func (f *fakeCgroups) Remove(name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.groups, name)
	return nil
}
func (f *fakeCgroups) Exists(name string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.groups[name]
}

type env struct {
	t   *testing.T
	m   *Manager
	sp  *fakeSpawner
	cg  *fakeCgroups
	cfg Config
	net Network // nil: traffic control off
}

func newEnv(t *testing.T) *env {
	t.Helper()
	dir := t.TempDir()
	cfg := DefaultConfig()
	cfg.StateDir = dir + "/state"
	cfg.Place = dir + "/place"
	cfg.KillTimeout = 50 * time.Millisecond
	cfg.StopTimeout = 50 * time.Millisecond
	cfg.RespawnDelay = 10 * time.Millisecond
	cfg.InitPath = "/bin/true"
	e := &env{t: t, sp: newFakeSpawner(), cg: newFakeCgroups(), cfg: cfg}
	e.m = e.open()
	return e
}

func (e *env) open() *Manager {
	m, err := New(e.cfg, e.sp, e.cg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		e.t.Fatal(err)
	}
	if e.net != nil {
		m.SetNetwork(e.net)
	}
	if err := m.Restore(e.t.Context()); err != nil {
		e.t.Fatal(err)
	}
	m.Run()
	e.t.Cleanup(m.Close)
	return m
}
