package isolation

import (
	"errors"
	"io"
	"reflect"
	"testing"

	"golang.org/x/sys/unix"
)

func TestCloneFlags(t *testing.T) {
	tests := []struct {
		cfg     Config
		want    uintptr
		mountNS bool
	}{
		{Config{}, 0, false},
		{Config{Root: "/"}, 0, false},
		{Config{Isolate: true}, unix.CLONE_NEWPID | unix.CLONE_NEWNS | unix.CLONE_NEWIPC, true},
		{Config{Root: "/tmp/r"}, unix.CLONE_NEWNS, true},
		{Config{Binds: []Bind{{"/a", "/b", false}}}, unix.CLONE_NEWNS, true},
		{Config{RootReadonly: true}, unix.CLONE_NEWNS, true},
		{Config{Hostname: "h"}, unix.CLONE_NEWUTS, false},
		{Config{Isolate: true, Hostname: "h", Root: "/r"}, unix.CLONE_NEWPID | unix.CLONE_NEWNS | unix.CLONE_NEWIPC | unix.CLONE_NEWUTS, true},
	}
	for i, tt := range tests {
		cfg := tt.cfg
		if got := CloneFlags(&cfg); got != tt.want {
			t.Errorf("%d: CloneFlags = %#x, want %#x", i, got, tt.want)
		}
		if cfg.NewMountNS != tt.mountNS {
			t.Errorf("%d: NewMountNS = %v", i, cfg.NewMountNS)
		}
	}
}

func TestStartErrorText(t *testing.T) {
	se := NewStartError("execvpe(__invalid_command__)", unix.ENOENT)
	if got := se.Error(); got != "No such file or directory: execvpe(__invalid_command__)" {
		t.Errorf("Error() = %q", got)
	}
	if se.Errno != 2 {
		t.Errorf("Errno = %d", se.Errno)
	}
	se = NewStartError("setrlimit(nofile)", unix.EPERM)
	if got := se.Error(); got != "Operation not permitted: setrlimit(nofile)" {
		t.Errorf("Error() = %q", got)
	}
	if got := (&StartError{Msg: "x"}).Error(); got != "x" {
		t.Errorf("no op: %q", got)
	}
	if Strerror(unix.EACCES) != "Permission denied" {
		t.Errorf("Strerror(EACCES) = %q", Strerror(unix.EACCES))
	}
}

func TestSyncProtocol(t *testing.T) {
	parent, child, err := SyncPair()
	if err != nil {
		t.Fatal(err)
	}
	defer parent.Close()
	cfg := &Config{Name: "a/b", Argv: []string{"ls", "-l"}, Env: []string{"A=1"}, UID: 1, Rlimits: []Rlimit{{7, 1, 2}},
		Binds: []Bind{{"/a", "/b", true}}, Capabilities: []int{}}
	if err := Release(parent, cfg); err != nil {
		t.Fatal(err)
	}
	got, err := readConfig(child)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, cfg) {
		t.Fatalf("config round trip: %#v", got)
	}
	want := &StartError{Errno: 2, Op: "execvpe(ls)", Msg: "No such file or directory"}
	writeError(child, want)
	child.Close()
	pid, err := WaitExec(parent)
	var se *StartError
	if !errors.As(err, &se) || *se != *want || pid != 0 {
		t.Fatalf("WaitExec = %d, %#v", pid, err)
	}
}

// TestSyncForked: a stage that forked the command reports its pid.
func TestSyncForked(t *testing.T) {
	parent, child, err := SyncPair()
	if err != nil {
		t.Fatal(err)
	}
	defer parent.Close()
	if err := writeReply(child, &stageReply{Pid: 4242}); err != nil {
		t.Fatal(err)
	}
	child.Close()
	if pid, err := WaitExec(parent); pid != 4242 || err != nil {
		t.Fatalf("WaitExec = %d, %v", pid, err)
	}
}

func TestSyncExecSucceeded(t *testing.T) {
	parent, child, err := SyncPair()
	if err != nil {
		t.Fatal(err)
	}
	defer parent.Close()
	child.Close() // what a successful execve does to the stage's end
	if pid, err := WaitExec(parent); pid != 0 || err != nil {
		t.Fatalf("WaitExec after bare EOF = %d, %v", pid, err)
	}
}

func TestSyncParentGaveUp(t *testing.T) {
	parent, child, err := SyncPair()
	if err != nil {
		t.Fatal(err)
	}
	defer child.Close()
	parent.Close()
	if _, err := readConfig(child); err != io.EOF {
		t.Fatalf("readConfig = %v, want io.EOF", err)
	}
}

func TestSyncMalformedReply(t *testing.T) {
	parent, child, err := SyncPair()
	if err != nil {
		t.Fatal(err)
	}
	defer parent.Close()
	child.Write([]byte("garbage"))
	child.Close()
	var se *StartError
	if _, err := WaitExec(parent); !errors.As(err, &se) || se.Errno != int(unix.EPROTO) {
		t.Fatalf("WaitExec = %v", err)
	}
	for _, reply := range []string{`{}`, `{"pid":-1}`, `{"pid":5,"errno":2,"op":"x","msg":"y"}`} {
		parent, child, err := SyncPair()
		if err != nil {
			t.Fatal(err)
		}
		child.Write([]byte(reply))
		child.Close()
		pid, err := WaitExec(parent)
		parent.Close()
		if !errors.As(err, &se) || se.Errno != int(unix.EPROTO) || pid != 0 {
			t.Errorf("WaitExec(%s) = %d, %v", reply, pid, err)
		}
	}
}
