package supervise

import (
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/porto-dev/porto/isolation"
)

// Client is the worker's end of the supervisor socket. It is safe for
// concurrent use.
type Client struct {
	conn  *net.UnixConn
	peer  int
	exits chan isolation.Exit
	queue *exitQueue

	mu      sync.Mutex
	nextID  uint64
	waiting map[uint64]chan *message
	lost    error // set once the connection is gone
	done    chan struct{}
	pool    *warmPool // nil: no warm stages (EnableWarmStages)
}

// Dial wraps fd, the worker's end of the socket its master created (fd 3,
// the value of --supervisor-fd). The fd is owned by the Client from then on
// (it is closed on exec and by Close).
func Dial(fd int) (*Client, error) {
	typ, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TYPE)
	if err != nil {
		return nil, fmt.Errorf("supervisor fd %d: %w", fd, err)
	}
	if typ != unix.SOCK_SEQPACKET {
		return nil, fmt.Errorf("supervisor fd %d: not a SOCK_SEQPACKET socket", fd)
	}
	peer := os.Getppid()
	// For a socketpair the peer credentials are those of its creator: the
	// master. Its pid survives an in-place upgrade.
	if cred, err := unix.GetsockoptUcred(fd, unix.SOL_SOCKET, unix.SO_PEERCRED); err == nil && cred.Pid > 0 {
		peer = int(cred.Pid)
	}
	f := os.NewFile(uintptr(fd), "supervisor")
	c, err := net.FileConn(f) // a close-on-exec duplicate
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("supervisor fd %d: %w", fd, err)
	}
	uc, ok := c.(*net.UnixConn)
	if !ok {
		c.Close()
		return nil, fmt.Errorf("supervisor fd %d: %T is not a unix socket", fd, c)
	}
	return newClient(uc, peer), nil
}

func newClient(uc *net.UnixConn, peer int) *Client {
	c := &Client{
		conn:    uc,
		peer:    peer,
		exits:   make(chan isolation.Exit, 64),
		queue:   newExitQueue(),
		waiting: make(map[uint64]chan *message),
		done:    make(chan struct{}),
	}
	go c.read()
	go c.forward()
	return c
}

// Spawn asks the master to launch "self __isolate" with files as fds
// 0..len(files)-1 (nil entries stay closed) and returns the pid. The
// master's copies of the fds are closed once the process is started; the
// caller keeps and closes its own. The returned error is a *SpawnError
// when the launch failed, or wraps ErrLost when the master is gone.
func (c *Client) Spawn(spec isolation.LaunchSpec, files []*os.File) (int, error) {
	if pid := c.spawnWarm(spec, files); pid > 0 {
		return pid, nil
	}
	ch := make(chan *message, 1)
	c.mu.Lock()
	if c.lost != nil {
		err := c.lost
		c.mu.Unlock()
		return 0, err
	}
	c.nextID++
	id := c.nextID
	c.waiting[id] = ch
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.waiting, id)
		c.mu.Unlock()
	}()

	m, fds, err := spawnRequest(id, spec, files)
	if err != nil {
		return 0, err
	}
	err = writeMsg(c.conn, m, fds)
	runtime.KeepAlive(files) // their fds were in use until now
	var pe *protoError
	if errors.As(err, &pe) {
		return 0, &SpawnError{Msg: err.Error()}
	}
	if err != nil {
		return 0, c.fail(err)
	}
	select {
	case r := <-ch:
		if r.Error != "" {
			return 0, &SpawnError{Msg: r.Error, Errno: unixErrno(r.Errno)}
		}
		if r.Pid <= 0 {
			return 0, &SpawnError{Msg: "supervisor returned no pid"}
		}
		return r.Pid, nil
	case <-c.done:
		// A reply may have raced with the loss.
		select {
		case r := <-ch:
			if r.Error == "" && r.Pid > 0 {
				return r.Pid, nil
			}
		default:
		}
		return 0, c.lostErr()
	}
}

// Exits delivers every exit the master reports: children this worker
// spawned, orphans reparented to the master, and exits reported to a
// previous worker that were never acknowledged. The same exit may come
// more than once (after a restart or an upgrade). The channel is closed
// when the connection to the master is lost or the Client is closed.
func (c *Client) Exits() <-chan isolation.Exit { return c.exits }

// Ack tells the master that the exit of pid is recorded durably, so it may
// reap the zombie. Every delivered exit must be acknowledged, unknown pids
// included, or the zombie stays. Acknowledging twice is harmless.
func (c *Client) Ack(pid int) error {
	if err := c.lostErr(); err != nil {
		return err
	}
	if err := writeMsg(c.conn, &message{Op: opAck, Pid: pid}, nil); err != nil {
		return c.fail(err)
	}
	return nil
}

// SupervisorPid is the pid of the master: container processes are its
// children.
func (c *Client) SupervisorPid() int { return c.peer }

// Close closes the connection. Spawns in progress fail and Exits is
// closed. The master notices and, unless it is stopping, starts a new
// worker once this process exits.
func (c *Client) Close() error {
	c.fail(errors.New("client closed"))
	return nil
}

func (c *Client) lostErr() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lost
}

// fail marks the connection lost (once) and returns the resulting error.
func (c *Client) fail(cause error) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.lost == nil {
		c.lost = fmt.Errorf("%w: %v", ErrLost, cause)
		close(c.done)
		c.conn.Close()
		c.closePoolLocked()
	}
	return c.lost
}

func (c *Client) read() {
	buf := make([]byte, maxMsg)
	oob := make([]byte, oobSize)
	for {
		m, files, err := readMsg(c.conn, buf, oob)
		if err == nil && m.Op == opWarmed {
			c.warmed(m, files)
			continue
		}
		closeFiles(files) // only warm stages come with an fd
		if err != nil {
			var pe *protoError
			if errors.As(err, &pe) {
				continue
			}
			c.fail(err)
			return
		}
		switch m.Op {
		case opSpawned:
			c.mu.Lock()
			ch := c.waiting[m.ID]
			c.mu.Unlock()
			if ch != nil {
				select {
				case ch <- m:
				default: // a duplicate reply
				}
			}
		case opExit:
			c.queue.push(isolation.Exit{Pid: m.Pid, Status: m.Status})
		}
	}
}

// forward moves exits from the unbounded queue to the channel, so the
// reader never blocks on a slow consumer.
func (c *Client) forward() {
	defer close(c.exits)
	for {
		e, ok := c.queue.pop(c.done)
		if !ok {
			return
		}
		select {
		case c.exits <- e:
		case <-c.done:
			return
		}
	}
}

func unixErrno(n int) unix.Errno { return unix.Errno(n) }

// exitQueue is an unbounded FIFO of exits.
type exitQueue struct {
	mu    sync.Mutex
	items []isolation.Exit
	wake  chan struct{}
}

func newExitQueue() *exitQueue { return &exitQueue{wake: make(chan struct{}, 1)} }

func (q *exitQueue) push(e isolation.Exit) {
	q.mu.Lock()
	q.items = append(q.items, e)
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// pop waits for an exit; it returns false once done is closed.
func (q *exitQueue) pop(done <-chan struct{}) (isolation.Exit, bool) {
	for {
		q.mu.Lock()
		if len(q.items) > 0 {
			e := q.items[0]
			q.items = q.items[1:]
			q.mu.Unlock()
			return e, true
		}
		q.mu.Unlock()
		select {
		case <-q.wake:
		case <-done:
			return isolation.Exit{}, false
		}
	}
}
