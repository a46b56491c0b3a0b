package isolation

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// poolArg, right after StageArg, starts a warm stage: "portod __isolate
// pool". It is created with its clone flags like any stage, but with
// /dev/null as fds 0..2 and, as fd 3, one end of a SOCK_SEQPACKET socket
// pair instead of the sync socket. It waits there for Hand, which sends the
// real files; from then on it is an ordinary stage (RunStage). The exec and
// start-up of the Go runtime, and the clone of the new namespaces, are
// thereby paid before a container asks for them.
const poolArg = "pool"

// MaxHandFiles bounds the files one Hand carries (stdio, sync, porto-init).
const MaxHandFiles = 16

// LaunchWarm starts a warm stage with cloneflags for its new namespaces.
// It returns the stage's pid (the caller becomes its parent and must reap
// it) and the caller's end of the hand-over socket. Closing that end
// without Hand makes the stage exit 0 at once.
func LaunchWarm(self string, cloneflags uintptr) (pid int, ctl *os.File, err error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0, nil, fmt.Errorf("socketpair: %w", err)
	}
	ctl = os.NewFile(uintptr(fds[0]), "porto-warm")
	child := os.NewFile(uintptr(fds[1]), "porto-warm-child")
	defer child.Close()
	devnull, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		ctl.Close()
		return 0, nil, err
	}
	defer devnull.Close()
	pid, err = start(self, cloneflags, []*os.File{devnull, devnull, devnull, child}, poolArg)
	if err != nil {
		ctl.Close()
		return 0, nil, err
	}
	return pid, ctl, nil
}

// Hand gives a warm stage its files: they become its fds 0..len(files)-1,
// exactly as Launch would have passed them (0 stdin, 1 stdout, 2 stderr,
// 3 the sync socket, then Config.InitFD and the like). Every slot must be
// non-nil. Hand closes ctl. An error means the stage never got the files
// (it is gone, or exits once ctl is closed); the caller may launch
// another.
func Hand(ctl *os.File, files []*os.File) error {
	defer ctl.Close()
	if len(files) < 4 || len(files) > MaxHandFiles {
		return fmt.Errorf("hand: %d files, need 4 to %d", len(files), MaxHandFiles)
	}
	fds := make([]int, len(files))
	for i, f := range files {
		if f == nil {
			return fmt.Errorf("hand: file %d is missing", i)
		}
		fds[i] = int(f.Fd())
	}
	rc, err := ctl.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	err = rc.Write(func(fd uintptr) bool {
		serr = unix.Sendmsg(int(fd), []byte{byte(len(fds))}, unix.UnixRights(fds...), nil, unix.MSG_NOSIGNAL)
		return serr != unix.EAGAIN
	})
	if err == nil {
		err = serr
	}
	if err != nil {
		return fmt.Errorf("hand files to the warm stage: %w", err)
	}
	return nil
}

// receiveHand is the warm stage's side of Hand: it waits on fd 3 for the
// files and installs them as fds 0..n-1 (inheritable, as after exec). It
// exits 0 if the socket is closed first.
func receiveHand() {
	warmUp()
	buf := make([]byte, 1)
	oob := make([]byte, unix.CmsgSpace(MaxHandFiles*4))
	var n, oobn int
	var err error
	for {
		n, oobn, _, _, err = unix.Recvmsg(3, buf, oob, unix.MSG_CMSG_CLOEXEC)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil || n == 0 {
		os.Exit(0) // the pool was emptied (or its owner died)
	}
	got, perr := parseRights(oob[:oobn])
	if perr != nil || len(got) != int(buf[0]) || len(got) < 4 {
		for _, fd := range got {
			unix.Close(fd)
		}
		os.Exit(stageExitFailure)
	}
	// Move the received fds out of the way of 0..n-1 first: one of them
	// may already sit on a target number.
	tmp := make([]int, len(got))
	for i, fd := range got {
		t, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 64)
		if err != nil {
			os.Exit(stageExitFailure)
		}
		unix.Close(fd)
		tmp[i] = t
	}
	for i, t := range tmp {
		if err := unix.Dup3(t, i, 0); err != nil {
			os.Exit(stageExitFailure)
		}
		unix.Close(t)
	}
}

func parseRights(oob []byte) ([]int, error) {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil, err
	}
	var fds []int
	for i := range msgs {
		r, err := unix.ParseUnixRights(&msgs[i])
		if err != nil {
			continue
		}
		fds = append(fds, r...)
	}
	if len(fds) == 0 {
		return nil, errors.New("no fds")
	}
	return fds, nil
}

// MountsWatch reports changes of the calling process's mount table: a
// warm stage cloned its mount namespace when it started, and must not be
// used once the mounts it copied are out of date.
type MountsWatch struct{ fd int }

// WatchMounts opens /proc/self/mountinfo for Changed. The fd is a raw one,
// kept out of the Go runtime's poller: polling it consumes the change
// event, and the runtime's epoll would swallow it.
func WatchMounts() (*MountsWatch, error) {
	fd, err := unix.Open("/proc/self/mountinfo", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: "/proc/self/mountinfo", Err: err}
	}
	w := &MountsWatch{fd}
	w.Changed() // start from the current table
	return w, nil
}

// Changed reports whether a mount or unmount happened in the caller's
// mount namespace since the last call. It never blocks.
func (w *MountsWatch) Changed() bool {
	pfd := []unix.PollFd{{Fd: int32(w.fd), Events: unix.POLLPRI}}
	for {
		n, err := unix.Poll(pfd, 0)
		if err == unix.EINTR {
			continue
		}
		// Unknown: treat as changed, which only costs a fresh stage.
		return err != nil || (n > 0 && pfd[0].Revents&(unix.POLLPRI|unix.POLLERR) != 0)
	}
}

// Close releases the watch.
func (w *MountsWatch) Close() error { return unix.Close(w.fd) }

// warmUp does, while the stage waits, the one-time work of the first
// config decode (encoding/json builds its decoders for Config on first
// use): about 0.15 ms taken off the start that uses this stage.
func warmUp() {
	var c Config
	_ = json.Unmarshal([]byte(`{"name":"w","argv":["true"],"env":["A=b"],"uid":0,"gid":0,"groups":[0],"binds":[{"source":"/a","target":"/b","read_only":true}],"rlimits":[{"resource":7,"soft":1,"hard":1}],"stdin_path":"","stdout_path":"/x","cgroup_procs":["/x"],"isolate":true}`), &c)
}
