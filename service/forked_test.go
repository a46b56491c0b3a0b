package service

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/porto-dev/porto/api"
	"github.com/porto-dev/porto/isolation"
)

// forkSpawner plays a supervisor whose stages fork the command into a
// joined pid namespace: the stage reports the command's pid on the sync
// socket and exits 0. script decides the order of the reply and of the
// two exits.
type forkSpawner struct {
	*fakeSpawner
	script func(f *forkSpawner, stage, cmd int, reply func())
}

func (f *forkSpawner) Spawn(spec isolation.LaunchSpec, files []*os.File) (int, error) {
	f.mu.Lock()
	f.next++
	stage := f.next
	f.mu.Unlock()
	cmd := stage + 1<<20
	sync, err := syscall.Dup(int(files[3].Fd()))
	if err != nil {
		return 0, err
	}
	go func() {
		s := os.NewFile(uintptr(sync), "fake-stage")
		defer s.Close()
		var hdr [4]byte
		if _, err := io.ReadFull(s, hdr[:]); err != nil {
			f.exit(stage, 0)
			return
		}
		io.CopyN(io.Discard, s, int64(binary.BigEndian.Uint32(hdr[:])))
		f.script(f, stage, cmd, func() {
			b, _ := json.Marshal(map[string]int{"pid": cmd})
			s.Write(b)
			s.Close()
		})
	}()
	return stage, nil
}

func (f *forkSpawner) isAcked(pid int) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.acked[pid]
}

func newForkEnv(t *testing.T, script func(f *forkSpawner, stage, cmd int, reply func())) (*env, *forkSpawner) {
	t.Helper()
	e := newEnv(t)
	e.cfg.StateDir = t.TempDir() + "/state"
	fs := &forkSpawner{fakeSpawner: newFakeSpawner(), script: script}
	e.sp = fs.fakeSpawner
	m, err := New(e.cfg, fs, e.cg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Restore(t.Context()); err != nil {
		t.Fatal(err)
	}
	m.Run()
	t.Cleanup(m.Close)
	e.m = m
	return e, fs
}

// TestForkedCommand: the stage's own exit (status 0) is acknowledged and
// ignored; the command's pid becomes the root pid and its exit makes the
// container dead.
func TestForkedCommand(t *testing.T) {
	e, fs := newForkEnv(t, func(f *forkSpawner, stage, cmd int, reply func()) {
		reply()
		f.exit(stage, 0)
	})
	pid := e.run(root, "a", "sleep 1000")
	if e.get("a", "state") != string(api.StateRunning) {
		t.Fatalf("state %s", e.get("a", "state"))
	}
	stage := fakePidBase + 1
	if pid != stage+1<<20 {
		t.Fatalf("root_pid %d, want the command's %d", pid, stage+1<<20)
	}
	e.waitAcked(stage)
	time.Sleep(20 * time.Millisecond)
	if e.get("a", "state") != string(api.StateRunning) {
		t.Fatalf("the stage's exit changed the state to %s", e.get("a", "state"))
	}
	fs.exit(pid, 3<<8)
	e.waitState("a", api.StateDead)
	if got := e.get("a", "exit_status"); got != strconv.Itoa(3<<8) {
		t.Errorf("exit_status %s", got)
	}
	e.waitAcked(pid)
}

// TestForkedCommandExitsFirst: the command exits before the stage has
// even replied, so its exit reaches the service before its pid is
// registered: it is parked, claimed by the start, and the container dies
// with the command's status.
func TestForkedCommandExitsFirst(t *testing.T) {
	e, fs := newForkEnv(t, func(f *forkSpawner, stage, cmd int, reply func()) {
		f.exit(cmd, 5<<8)
		time.Sleep(20 * time.Millisecond) // dispatched (and parked) first
		reply()
		f.exit(stage, 0)
	})
	ctx := context.Background()
	e.must(e.m.Create(ctx, root, "a"))
	e.must(e.m.Set(ctx, root, "a", "command", "true"))
	e.must(e.m.Start(ctx, root, "a"))
	stage := fakePidBase + 1
	e.waitState("a", api.StateDead)
	if got := e.get("a", "exit_status"); got != strconv.Itoa(5<<8) {
		t.Errorf("exit_status %s, want the command's", got)
	}
	e.waitAcked(stage)
	e.waitAcked(stage + 1<<20)
	if fs.isAcked(4242) {
		t.Error("acked a pid that never exited")
	}
}

// TestParkedExitsAcked: exits of pids nobody registers are acknowledged
// at once when no start is in flight, and when the last start ends
// otherwise.
func TestParkedExitsAcked(t *testing.T) {
	release, inFlight := make(chan struct{}), make(chan struct{})
	e, fs := newForkEnv(t, func(f *forkSpawner, stage, cmd int, reply func()) {
		close(inFlight)
		<-release
		reply()
		f.exit(stage, 0)
	})
	fs.exit(4242, 0)
	e.waitAcked(4242)

	ctx := context.Background()
	e.must(e.m.Create(ctx, root, "a"))
	e.must(e.m.Set(ctx, root, "a", "command", "sleep 1000"))
	done := make(chan error, 1)
	go func() { done <- e.m.Start(ctx, root, "a") }()
	<-inFlight
	fs.exit(4343, 0) // an orphan's exit while the start is in flight
	time.Sleep(20 * time.Millisecond)
	if fs.isAcked(4343) {
		t.Error("an unknown exit was acknowledged while a start was in flight")
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	e.waitAcked(4343)
	if e.get("a", "state") != string(api.StateRunning) {
		t.Errorf("state %s", e.get("a", "state"))
	}
}
