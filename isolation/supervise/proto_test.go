package supervise

import (
	"errors"
	"io"
	"net"
	"os"
	"reflect"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/porto-dev/porto/isolation"
)

// pair returns two connected SOCK_SEQPACKET unix connections.
func pair(t *testing.T) (*net.UnixConn, *net.UnixConn) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	conn := func(fd int) *net.UnixConn {
		f := os.NewFile(uintptr(fd), "pair")
		defer f.Close()
		c, err := net.FileConn(f)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c.(*net.UnixConn)
	}
	return conn(fds[0]), conn(fds[1])
}

func TestMessageRoundTripWithFDs(t *testing.T) {
	a, b := pair(t)
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	null, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer null.Close()

	spec := isolation.LaunchSpec{Cloneflags: unix.CLONE_NEWPID | unix.CLONE_NEWNS, JoinPid: 42, JoinNS: []string{"net", "mnt"}}
	files := []*os.File{null, nil, w, r}
	m, fds, err := spawnRequest(7, spec, files)
	if err != nil {
		t.Fatal(err)
	}
	if err := writeMsg(a, m, fds); err != nil {
		t.Fatal(err)
	}
	buf, oob := make([]byte, maxMsg), make([]byte, oobSize)
	got, gotFiles, err := readMsg(b, buf, oob)
	if err != nil {
		t.Fatal(err)
	}
	if got.Op != opSpawn || got.ID != 7 || !reflect.DeepEqual(*got.Spec, spec) {
		t.Fatalf("got %+v spec %+v", got, got.Spec)
	}
	slots, err := spawnFiles(got, gotFiles)
	if err != nil {
		t.Fatal(err)
	}
	defer closeFiles(slots)
	if len(slots) != 4 || slots[1] != nil || slots[0] == nil || slots[2] == nil || slots[3] == nil {
		t.Fatalf("slots %v", slots)
	}
	for _, f := range []*os.File{slots[0], slots[2], slots[3]} {
		flags, err := unix.FcntlInt(f.Fd(), unix.F_GETFD, 0)
		if err != nil || flags&unix.FD_CLOEXEC == 0 {
			t.Errorf("received fd %d: flags %#x, err %v; want close-on-exec", f.Fd(), flags, err)
		}
	}
	// The received write end and read end are the same pipe.
	if _, err := slots[2].Write([]byte("hi")); err != nil {
		t.Fatal(err)
	}
	p := make([]byte, 2)
	if _, err := io.ReadFull(slots[3], p); err != nil || string(p) != "hi" {
		t.Fatalf("read %q, %v", p, err)
	}

	// Plain messages, in both directions.
	for _, m := range []*message{
		{Op: opExit, Pid: 1234, Status: 3 << 8},
		{Op: opSpawned, ID: 9, Error: "setns: invalid argument", Errno: int(syscall.EINVAL)},
		{Op: opAck, Pid: 1234},
	} {
		if err := writeMsg(b, m, nil); err != nil {
			t.Fatal(err)
		}
		got, fs, err := readMsg(a, buf, oob)
		if err != nil || len(fs) != 0 || !reflect.DeepEqual(got, m) {
			t.Fatalf("got %+v %v %v, want %+v", got, fs, err, m)
		}
	}

	// A malformed datagram does not break the connection.
	if _, err := a.Write([]byte("{not json")); err != nil {
		t.Fatal(err)
	}
	var pe *protoError
	if _, _, err := readMsg(b, buf, oob); !errors.As(err, &pe) {
		t.Fatalf("malformed: %v, want a protoError", err)
	}
	// Closing one end is EOF at the other.
	a.Close()
	if _, _, err := readMsg(b, buf, oob); !errors.Is(err, io.EOF) {
		t.Fatalf("after close: %v, want EOF", err)
	}
}

func TestSpawnFilesRejectsMismatch(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	_, err = spawnFiles(&message{Op: opSpawn, NFiles: 4, Nil: []int{1}}, []*os.File{r})
	if err == nil {
		t.Fatal("3 slots filled by one fd accepted")
	}
	if _, err := r.Stat(); err == nil {
		t.Error("fd of a rejected request not closed")
	}
	if _, _, err := spawnRequest(1, isolation.LaunchSpec{}, make([]*os.File, maxFDs+1)); err == nil {
		t.Error("too many files accepted")
	}
}

// fakeMaster answers spawn requests on conn: pid 1000+id, or EPERM when
// the spec asks to join pid -1. It reports acks on acks.
func fakeMaster(t *testing.T, conn *net.UnixConn, acks chan<- int) {
	buf, oob := make([]byte, maxMsg), make([]byte, oobSize)
	for {
		m, files, err := readMsg(conn, buf, oob)
		if err != nil {
			return
		}
		closeFiles(files)
		switch m.Op {
		case opSpawn:
			r := &message{Op: opSpawned, ID: m.ID, Pid: 1000 + int(m.ID)}
			if m.Spec.JoinPid == -1 {
				r = &message{Op: opSpawned, ID: m.ID, Error: "setns: operation not permitted", Errno: int(syscall.EPERM)}
			}
			if m.Spec.JoinPid == -2 {
				continue // never answer
			}
			writeMsg(conn, &message{Op: opSpawned, ID: 999999}, nil) // stray reply: ignored
			writeMsg(conn, r, nil)
			writeMsg(conn, &message{Op: opExit, Pid: r.Pid, Status: 3 << 8}, nil)
		case opAck:
			acks <- m.Pid
		}
	}
}

func TestClient(t *testing.T) {
	mc, wc := pair(t)
	acks := make(chan int, 10)
	go fakeMaster(t, mc, acks)
	c := newClient(wc, 4242)
	if c.SupervisorPid() != 4242 {
		t.Errorf("SupervisorPid %d", c.SupervisorPid())
	}
	null, _ := os.Open(os.DevNull)
	defer null.Close()
	files := []*os.File{null, null, null, null}

	pid, err := c.Spawn(isolation.LaunchSpec{}, files)
	if err != nil || pid != 1001 {
		t.Fatalf("Spawn = %d, %v", pid, err)
	}
	select {
	case e := <-c.Exits():
		if e != (isolation.Exit{Pid: 1001, Status: 3 << 8}) {
			t.Errorf("exit %+v", e)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no exit")
	}
	if err := c.Ack(1001); err != nil {
		t.Fatal(err)
	}
	if got := <-acks; got != 1001 {
		t.Errorf("ack %d", got)
	}

	_, err = c.Spawn(isolation.LaunchSpec{JoinPid: -1}, files)
	var se *SpawnError
	if !errors.As(err, &se) || !errors.Is(err, syscall.EPERM) {
		t.Fatalf("Spawn error %v (%T), want a SpawnError with EPERM", err, err)
	}

	// Concurrent spawns are matched by id.
	const n = 20
	res := make(chan error, n)
	for range n {
		go func() {
			_, err := c.Spawn(isolation.LaunchSpec{}, files)
			res <- err
		}()
	}
	for range n {
		if err := <-res; err != nil {
			t.Fatal(err)
		}
	}

	// The master goes away while a spawn waits: it fails, Exits closes.
	hung := make(chan error, 1)
	go func() {
		_, err := c.Spawn(isolation.LaunchSpec{JoinPid: -2}, files)
		hung <- err
	}()
	time.Sleep(50 * time.Millisecond)
	mc.Close()
	select {
	case err := <-hung:
		if !errors.Is(err, ErrLost) {
			t.Errorf("Spawn after loss: %v, want ErrLost", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Spawn hangs after the master is gone")
	}
	deadline := time.After(5 * time.Second)
	for open := true; open; {
		select {
		case _, open = <-c.Exits():
		case <-deadline:
			t.Fatal("Exits not closed")
		}
	}
	if _, err := c.Spawn(isolation.LaunchSpec{}, files); !errors.Is(err, ErrLost) {
		t.Errorf("Spawn: %v", err)
	}
	if err := c.Ack(1); !errors.Is(err, ErrLost) {
		t.Errorf("Ack: %v", err)
	}
	c.Close()
}

func TestDial(t *testing.T) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fds[0])
	c, err := Dial(fds[1])
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.SupervisorPid() != os.Getpid() { // we created the pair
		t.Errorf("SupervisorPid %d, want %d", c.SupervisorPid(), os.Getpid())
	}
	if _, err := unix.FcntlInt(uintptr(fds[1]), unix.F_GETFD, 0); err == nil {
		// fd number may have been reused by another fd; only check it is
		// not the socket any more.
		if typ, err := unix.GetsockoptInt(fds[1], unix.SOL_SOCKET, unix.SO_TYPE); err == nil && typ == unix.SOCK_SEQPACKET {
			t.Log("original fd number still a seqpacket socket (reused?)")
		}
	}
	st, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(st[0])
	defer unix.Close(st[1])
	if _, err := Dial(st[1]); err == nil {
		t.Error("Dial accepted a stream socket")
	}
}

func TestParseArgs(t *testing.T) {
	tok, rest, err := ParseMasterArgs([]string{"--config", "x", "--takeover=abc", "-v"})
	if err != nil || tok != "abc" || !reflect.DeepEqual(rest, []string{"--config", "x", "-v"}) {
		t.Errorf("ParseMasterArgs = %q %q %v", tok, rest, err)
	}
	tok, rest, err = ParseMasterArgs([]string{"--takeover", "def", "--", "--takeover=x"})
	if err != nil || tok != "def" || !reflect.DeepEqual(rest, []string{"--", "--takeover=x"}) {
		t.Errorf("ParseMasterArgs = %q %q %v", tok, rest, err)
	}
	if tok, rest, err := ParseMasterArgs(nil); err != nil || tok != "" || len(rest) != 0 {
		t.Errorf("ParseMasterArgs(nil) = %q %q %v", tok, rest, err)
	}
	fd, rest, err := ParseWorkerArgs([]string{"--supervisor-fd", "3", "--config", "/etc/porto.conf"})
	if err != nil || fd != 3 || !reflect.DeepEqual(rest, []string{"--config", "/etc/porto.conf"}) {
		t.Errorf("ParseWorkerArgs = %d %q %v", fd, rest, err)
	}
	if fd, _, err := ParseWorkerArgs([]string{"--supervisor-fd=7"}); err != nil || fd != 7 {
		t.Errorf("ParseWorkerArgs = %d %v", fd, err)
	}
	for _, bad := range [][]string{nil, {"--supervisor-fd"}, {"--supervisor-fd", "x"}} {
		if _, _, err := ParseWorkerArgs(bad); err == nil {
			t.Errorf("ParseWorkerArgs(%q) accepted", bad)
		}
	}
}

func TestRestartBackoff(t *testing.T) {
	m := &master{log: discardLog(), backoff: restartMin}
	now := time.Now()
	var delays []time.Duration
	for range 8 {
		m.scheduleRestart(now) // died at once
		delays = append(delays, m.backoff)
	}
	m.restart.Stop()
	want := []time.Duration{200, 400, 800, 1600, 3200, 5000, 5000, 5000}
	for i := range want {
		want[i] *= time.Millisecond
	}
	if !reflect.DeepEqual(delays, want) {
		t.Errorf("next delays %v, want %v", delays, want)
	}
	m.scheduleRestart(now.Add(-restartResetRun)) // ran long enough: at once
	select {
	case <-m.restart.C:
	case <-time.After(50 * time.Millisecond):
		t.Errorf("a worker that ran long was not restarted at once")
	}
	if m.backoff != restartMin {
		t.Errorf("after a long run the delay was not reset: next %v", m.backoff)
	}
	m.scheduleRestart(now) // then a quick death: the first delay
	m.restart.Stop()
	if m.backoff != 2*restartMin {
		t.Errorf("quick death after a reset: next %v, want %v", m.backoff, 2*restartMin)
	}
}
