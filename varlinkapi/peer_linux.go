package varlinkapi

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/porto-dev/porto/apiserver"
)

// peer is who is at the other end of a connection, as the kernel recorded
// it when the peer connected.
type peer struct {
	id    apiserver.Identity
	pidfd int // SO_PEERPIDFD, -1 when the kernel has none

	startOnce sync.Once
	start     uint64
	startErr  error
}

// peerOf reads the credentials of c's peer: SO_PEERCRED (pid, uid, gid),
// SO_PEERGROUPS (supplementary groups) and SO_PEERPIDFD. Where the kernel
// lacks SO_PEERGROUPS the groups come from /proc/PID/status, and only if
// that is provably still the connecting process.
func peerOf(c *net.UnixConn) (*peer, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return nil, err
	}
	p := &peer{pidfd: -1}
	var uc *unix.Ucred
	var groups []uint32
	var gerr, cerr error
	err = rc.Control(func(fd uintptr) {
		uc, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
		if cerr != nil {
			return
		}
		groups, gerr = peerGroups(int(fd))
		if pfd, err := unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_PEERPIDFD); err == nil {
			p.pidfd = pfd
			unix.CloseOnExec(pfd)
		}
	})
	if err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("SO_PEERCRED: %w", err)
	}
	p.id = apiserver.Identity{UID: uc.Uid, GID: uc.Gid, Pid: uc.Pid}
	if gerr == nil {
		p.id.Groups = groups
	} else if uc.Pid > 0 {
		if st, err := apiserver.ReadProcStatus(uc.Pid); err == nil &&
			st.EUID == uc.Uid && st.EGID == uc.Gid && p.alive() {
			p.id.Groups = st.Groups
		}
	}
	if p.pidfd < 0 && uc.Pid > 0 {
		// No pidfd to prove later that the pid is still the peer's: read
		// the start time now, while it most likely is.
		p.startOnce.Do(func() { p.start, p.startErr = apiserver.ProcStartTime(uc.Pid) })
	}
	return p, nil
}

// peerGroups is SO_PEERGROUPS: the peer's supplementary groups when it
// connected.
func peerGroups(fd int) ([]uint32, error) {
	n := 32
	for {
		buf := make([]uint32, n)
		size := uint32(4 * n)
		_, _, e := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), unix.SOL_SOCKET, unix.SO_PEERGROUPS,
			uintptr(unsafe.Pointer(&buf[0])), uintptr(unsafe.Pointer(&size)), 0)
		if e == unix.ERANGE && int(size/4) > n {
			n = int(size / 4)
			continue
		}
		if e != 0 {
			return nil, e
		}
		return buf[:size/4], nil
	}
}

// alive reports that the connecting process still runs (so its pid was
// not reused), when the kernel gave a pidfd; true without one.
func (p *peer) alive() bool {
	if p.pidfd < 0 {
		return true
	}
	return unix.PidfdSendSignal(p.pidfd, 0, nil, 0) == nil
}

// errPeerGone is a polkit question about a peer that has exited.
var errPeerGone = errors.New("the calling process has exited")

// startTime is the start time of the peer process for polkit's
// unix-process subject, read once.
func (p *peer) startTime() (uint64, error) {
	p.startOnce.Do(func() {
		p.start, p.startErr = apiserver.ProcStartTime(p.id.Pid)
		if p.startErr == nil && !p.alive() {
			p.startErr = errPeerGone
		}
	})
	return p.start, p.startErr
}

func (p *peer) close() {
	if p.pidfd >= 0 {
		unix.Close(p.pidfd)
		p.pidfd = -1
	}
}
