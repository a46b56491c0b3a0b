package supervise

import (
	"errors"
	"os"
	"runtime"
	"strconv"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// pidWatch keeps a pidfd per watched child in an epoll set, so that a
// SIGCHLD costs the tracker one epoll_wait and one waitid per child that
// exited instead of a waitid per child it knows.
//
// The pidfds live in a file table of their own: the watcher goroutine is
// locked to a thread that unshared its file table (CLONE_FILES) and closed
// its copies of the process's descriptors. Every fork of the master (a
// stage, a warm stage, a worker) copies the forking thread's table and its
// exec closes the copies again, about 50 ns per descriptor: 3000 pidfds in
// the shared table would add 0.15 ms to every spawn. Only the watcher's
// thread touches those descriptors; other goroutines send it requests.
//
// The Go runtime allows a locked thread to have kernel state of its own
// (it creates new threads from a template thread, never from a locked
// one). The thread is never the main one, whose table /proc/self/fd
// shows. The runtime's own descriptors (its netpoll epoll and eventfd,
// which it may use on any thread) are kept in the private table under the
// same numbers; the poller is initialised before the table is copied.
type pidWatch struct {
	reqs chan watchReq
}

type watchOp int

const (
	opWatch   watchOp = iota // open a pidfd for pid
	opUnwatch                // close the pidfd of pid
	opPoll                   // report the pidfds that became readable
	opStop                   // end the watcher (its thread and pidfds)
)

type watchReq struct {
	op    watchOp
	pid   int
	reply chan []watchResult
}

type watchKind int

const (
	watchExited watchKind = iota // a zombie; status is its wait status
	watchGone                    // readable, and not our child (any more)
	watchAlive                   // readable but not a zombie: no longer watched
	watchFailed                  // pidfd_open or epoll_ctl failed: not watched
)

type watchResult struct {
	pid    int
	kind   watchKind
	status int
}

// errNoWatch tells that the environment has no way to watch pidfds.
var errNoWatch = errors.New("pidfd watch unavailable")

// newPidWatch starts the watcher thread; an error means the tracker must
// peek at every child (old kernel, no pidfd_open or no unshare).
func newPidWatch() (*pidWatch, error) {
	// Make sure the runtime's poller exists before the table is copied:
	// a poller created later would have descriptors the private table
	// lacks.
	if r, w, err := os.Pipe(); err == nil {
		r.Close()
		w.Close()
	}
	w := &pidWatch{reqs: make(chan watchReq, 4096)}
	started := make(chan error, 1)
	go w.run(started)
	if err := <-started; err != nil {
		return nil, err
	}
	return w, nil
}

// watch asks for a pidfd of pid; a failure is reported by the next poll.
func (w *pidWatch) watch(pid int) { w.reqs <- watchReq{op: opWatch, pid: pid} }

// unwatch closes the pidfd of pid, if any.
func (w *pidWatch) unwatch(pid int) { w.reqs <- watchReq{op: opUnwatch, pid: pid} }

// poll returns every watched pid whose pidfd became readable (they are no
// longer watched) and every watch that failed since the last poll.
// Requests are served in order: a poll sees every earlier watch.
func (w *pidWatch) poll() []watchResult {
	reply := make(chan []watchResult, 1)
	w.reqs <- watchReq{op: opPoll, reply: reply}
	return <-reply
}

// stop ends the watcher; its pidfds close with its thread.
func (w *pidWatch) stop() { w.reqs <- watchReq{op: opStop} }

func (w *pidWatch) run(started chan<- error) {
	// Never unlocked: the thread, with its private file table, ends with
	// this goroutine.
	runtime.LockOSThread()
	if unix.Gettid() == unix.Getpid() {
		// The main thread: its table is what /proc/self/fd shows to every
		// thread, and it never ends. Hold it while another goroutine,
		// which therefore gets another thread, sets up the watch.
		next := make(chan error, 1)
		go w.run(next)
		err := <-next
		runtime.UnlockOSThread()
		started <- err
		return
	}
	epfd, err := privateFileTable()
	if err != nil {
		started <- err
		return
	}
	// A probe: pidfd_open and waitid(P_PIDFD) must work (Linux 5.4).
	fd, err := unix.PidfdOpen(os.Getpid(), 0)
	if err != nil {
		started <- errors.Join(errNoWatch, err)
		return
	}
	unix.Close(fd)
	started <- nil

	fds := make(map[int]int) // pid -> pidfd
	var failed []watchResult
	evs := make([]unix.EpollEvent, 256)
	for req := range w.reqs {
		switch req.op {
		case opWatch:
			if old, ok := fds[req.pid]; ok {
				unix.Close(old)
				delete(fds, req.pid)
			}
			fd, err := unix.PidfdOpen(req.pid, 0)
			if err == nil {
				ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(req.pid)}
				if err = unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
					unix.Close(fd)
				}
			}
			if err != nil {
				failed = append(failed, watchResult{pid: req.pid, kind: watchFailed})
				continue
			}
			fds[req.pid] = fd
		case opUnwatch:
			if fd, ok := fds[req.pid]; ok {
				unix.Close(fd)
				delete(fds, req.pid)
			}
		case opPoll:
			out := failed
			failed = nil
			for {
				n, err := unix.EpollWait(epfd, evs, 0)
				if err == unix.EINTR {
					continue
				}
				if err != nil {
					break
				}
				for _, ev := range evs[:n] {
					pid := int(ev.Fd)
					fd, ok := fds[pid]
					if !ok {
						continue
					}
					out = append(out, peekPidfd(fd, pid))
					// Closing the last reference removes it from the set.
					unix.Close(fd)
					delete(fds, pid)
				}
				if n < len(evs) {
					break
				}
			}
			req.reply <- out
		case opStop:
			return
		}
	}
}

// peekPidfd looks at the process of a readable pidfd without reaping it.
func peekPidfd(fd, pid int) watchResult {
	var info sigchldInfo
	var err error
	for {
		err = unix.Waitid(unix.P_PIDFD, fd, (*unix.Siginfo)(unsafe.Pointer(&info)),
			unix.WEXITED|unix.WNOHANG|unix.WNOWAIT, nil)
		if err != unix.EINTR {
			break
		}
	}
	switch {
	case err != nil:
		return watchResult{pid: pid, kind: watchGone}
	case info.Pid == 0:
		return watchResult{pid: pid, kind: watchAlive}
	}
	return watchResult{pid: pid, kind: watchExited, status: waitStatus(info.Code, info.Status)}
}

// privateFileTable gives the calling (locked) thread a file table of its
// own holding only stdio and the runtime's poller, and an epoll set in it.
func privateFileTable() (int, error) {
	if err := unix.Unshare(unix.CLONE_FILES); err != nil {
		return -1, errors.Join(errNoWatch, err)
	}
	// The copies would keep the process's files open (a socket closed by
	// another thread would never see its peer get EOF): close them. On an
	// error the goroutine ends and its thread with it, copies included.
	dir := "/proc/self/task/" + strconv.Itoa(unix.Gettid()) + "/fd"
	dfd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	var fds []int
	buf := make([]byte, 8192)
	for {
		n, err := unix.ReadDirent(dfd, buf)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			unix.Close(dfd)
			return -1, err
		}
		if n <= 0 {
			break
		}
		var names []string
		_, _, names = syscall.ParseDirent(buf[:n], -1, names)
		for _, name := range names {
			if fd, err := strconv.Atoi(name); err == nil && fd > 2 && fd != dfd {
				fds = append(fds, fd)
			}
		}
	}
	unix.Close(dfd)
	link := make([]byte, 256)
	for _, fd := range fds {
		n, err := unix.Readlink(dir+"/"+strconv.Itoa(fd), link)
		if err == nil {
			switch string(link[:n]) {
			case "anon_inode:[eventpoll]", "anon_inode:[eventfd]":
				continue // possibly the runtime's poller: keep
			}
		}
		unix.Close(fd)
	}
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return -1, err
	}
	return epfd, nil
}
