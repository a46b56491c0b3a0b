package supervise

import (
	"errors"
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"

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
// thread opens and closes them, on request. The epoll set itself was
// created before the table was unshared, so it is in both tables: poll
// waits on it from the caller's thread, without a round trip to the
// watcher (the set refers to the pidfds' files, not to their numbers).
// Each pidfd is registered EPOLLONESHOT: it is reported once, then closed.
//
// The Go runtime allows a locked thread to have kernel state of its own
// (it creates new threads from a template thread, never from a locked
// one). The thread is never the main one, whose table /proc/self/fd
// shows. The runtime's own descriptors (its netpoll epoll and eventfd,
// which it may use on any thread) are kept in the private table under the
// same numbers; the poller is initialised before the table is copied.
type pidWatch struct {
	epfd        int // in the process's table and in the watcher's
	reqs        chan watchReq
	unconfirmed atomic.Int64 // watch requests the watcher has not served yet
	mu          sync.Mutex
	failed      []int // watches that failed, for the next poll
	evs         []unix.EpollEvent
}

type watchOp int

const (
	opWatch   watchOp = iota // open a pidfd for pid
	opUnwatch                // close the pidfd of pid
	opSync                   // reply once every earlier request is served
	opStop                   // end the watcher (its thread and pidfds)
)

type watchReq struct {
	op    watchOp
	pid   int
	reply chan struct{}
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
	fd, err := unix.PidfdOpen(os.Getpid(), 0) // a probe (Linux 5.3)
	if err != nil {
		return nil, errors.Join(errNoWatch, err)
	}
	unix.Close(fd)
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, err
	}
	w := &pidWatch{epfd: epfd, reqs: make(chan watchReq, 4096), evs: make([]unix.EpollEvent, 256)}
	started := make(chan error, 1)
	go w.run(started)
	if err := <-started; err != nil {
		unix.Close(epfd)
		return nil, err
	}
	return w, nil
}

// watch asks for a pidfd of pid; a failure is reported by a later poll.
func (w *pidWatch) watch(pid int) {
	w.unconfirmed.Add(1)
	w.reqs <- watchReq{op: opWatch, pid: pid}
}

// unwatch closes the pidfd of pid, if any.
func (w *pidWatch) unwatch(pid int) { w.reqs <- watchReq{op: opUnwatch, pid: pid} }

// poll returns every watched pid whose pidfd became readable (they are no
// longer watched) and every watch that failed. It sees every earlier
// watch: if some are not served yet, it waits for the watcher first.
// Not safe for concurrent use (the tracker's lock serialises it).
func (w *pidWatch) poll() []watchResult {
	if w.unconfirmed.Load() > 0 {
		reply := make(chan struct{})
		w.reqs <- watchReq{op: opSync, reply: reply}
		<-reply
	}
	var out []watchResult
	w.mu.Lock()
	for _, pid := range w.failed {
		out = append(out, watchResult{pid: pid, kind: watchFailed})
	}
	w.failed = w.failed[:0]
	w.mu.Unlock()
	for {
		n, err := unix.EpollWait(w.epfd, w.evs, 0)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			break
		}
		for _, ev := range w.evs[:n] {
			pid := int(ev.Fd)
			// The pid is still our child (only the tracker reaps it, after
			// this), so P_PID asks the very process.
			status, zombie, err := peekZombie(pid)
			switch {
			case err != nil:
				out = append(out, watchResult{pid: pid, kind: watchGone})
			case zombie:
				out = append(out, watchResult{pid: pid, kind: watchExited, status: status})
			default:
				out = append(out, watchResult{pid: pid, kind: watchAlive})
			}
			w.unwatch(pid) // reported once (EPOLLONESHOT); close it
		}
		if n < len(w.evs) {
			break
		}
	}
	return out
}

// stop ends the watcher; its pidfds close with its thread.
func (w *pidWatch) stop() {
	w.reqs <- watchReq{op: opStop}
	unix.Close(w.epfd)
}

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
	if err := privateFileTable(w.epfd); err != nil {
		started <- err
		return
	}
	started <- nil

	fds := make(map[int]int) // pid -> pidfd
	for req := range w.reqs {
		switch req.op {
		case opWatch:
			if old, ok := fds[req.pid]; ok {
				unix.Close(old)
				delete(fds, req.pid)
			}
			fd, err := unix.PidfdOpen(req.pid, 0)
			if err == nil {
				ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLONESHOT, Fd: int32(req.pid)}
				if err = unix.EpollCtl(w.epfd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
					unix.Close(fd)
				}
			}
			if err == nil {
				fds[req.pid] = fd
			} else {
				w.mu.Lock()
				w.failed = append(w.failed, req.pid)
				w.mu.Unlock()
			}
			w.unconfirmed.Add(-1)
		case opUnwatch:
			if fd, ok := fds[req.pid]; ok {
				unix.Close(fd) // (the last reference: it leaves the set)
				delete(fds, req.pid)
			}
		case opSync:
			close(req.reply)
		case opStop:
			return
		}
	}
}

// privateFileTable gives the calling (locked) thread a file table of its
// own holding only stdio, the runtime's poller and keep.
func privateFileTable(keep int) error {
	if err := unix.Unshare(unix.CLONE_FILES); err != nil {
		return errors.Join(errNoWatch, err)
	}
	// The copies would keep the process's files open (a socket closed by
	// another thread would never see its peer get EOF): close them. On an
	// error the goroutine ends and its thread with it, copies included.
	dir := "/proc/self/task/" + strconv.Itoa(unix.Gettid()) + "/fd"
	dfd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
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
			return err
		}
		if n <= 0 {
			break
		}
		var names []string
		_, _, names = syscall.ParseDirent(buf[:n], -1, names)
		for _, name := range names {
			if fd, err := strconv.Atoi(name); err == nil && fd > 2 && fd != dfd && fd != keep {
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
	return nil
}
