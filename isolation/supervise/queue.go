package supervise

import (
	"errors"
	"net"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// outQueue is the master's unbounded queue of datagrams to one worker,
// drained by a writer goroutine, so the master loop never blocks on a slow
// worker. It can be paused (for an upgrade): the write in progress is
// interrupted with a deadline and what was not sent is handed over.
type outQueue struct {
	mu      sync.Mutex
	cond    *sync.Cond
	items   []outItem
	paused  bool
	closed  bool
	writing bool
}

// outItem is one datagram, and the file it carries (SCM_RIGHTS) if any;
// the queue closes the file once it is sent or dropped.
type outItem struct {
	b []byte
	f *os.File
}

func dropItems(items []outItem) {
	for _, it := range items {
		if it.f != nil {
			it.f.Close()
		}
	}
}

func newOutQueue() *outQueue {
	q := &outQueue{}
	q.cond = sync.NewCond(&q.mu)
	return q
}

func (q *outQueue) push(b []byte) { q.pushFile(b, nil) }

// pushFile queues b with f attached; the queue owns f from now on.
func (q *outQueue) pushFile(b []byte, f *os.File) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		if f != nil {
			f.Close()
		}
		return
	}
	q.items = append(q.items, outItem{b, f})
	q.cond.Broadcast()
}

// close drops everything; the writer exits.
func (q *outQueue) close() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.closed = true
	dropItems(q.items)
	q.items = nil
	q.cond.Broadcast()
}

// run is the writer goroutine.
func (q *outQueue) run(conn *net.UnixConn) {
	for {
		q.mu.Lock()
		for !q.closed && (q.paused || len(q.items) == 0) {
			q.cond.Wait()
		}
		if q.closed {
			q.mu.Unlock()
			return
		}
		it := q.items[0]
		q.writing = true
		q.mu.Unlock()

		var err error
		if it.f != nil {
			_, _, err = conn.WriteMsgUnix(it.b, unix.UnixRights(int(it.f.Fd())), nil)
		} else {
			_, err = conn.Write(it.b)
		}

		q.mu.Lock()
		q.writing = false
		switch {
		case err == nil:
			if it.f != nil {
				it.f.Close()
			}
			if len(q.items) > 0 && !q.closed {
				q.items[0] = outItem{}
				q.items = q.items[1:]
			}
		case q.paused && errors.Is(err, os.ErrDeadlineExceeded):
			// Not sent (a datagram goes whole or not at all): keep it.
		default:
			// The connection is broken; the reader reports it.
			q.closed = true
			dropItems(q.items)
			q.items = nil
		}
		q.cond.Broadcast()
		q.mu.Unlock()
	}
}

// pause stops the writer (interrupting a blocked write) and returns what
// is still unsent. resume undoes it. Datagrams that carry a file cannot be
// handed over (a warm stage for the worker): they are dropped, and their
// files closed.
func (q *outQueue) pause(conn *net.UnixConn) [][]byte {
	q.mu.Lock()
	q.paused = true
	q.mu.Unlock()
	conn.SetWriteDeadline(time.Unix(1, 0))
	q.mu.Lock()
	defer q.mu.Unlock()
	for q.writing {
		q.cond.Wait()
	}
	var out [][]byte
	kept := q.items[:0]
	for _, it := range q.items {
		if it.f != nil {
			it.f.Close()
			continue
		}
		out = append(out, it.b)
		kept = append(kept, it)
	}
	q.items = kept
	return out
}

func (q *outQueue) resume(conn *net.UnixConn) {
	conn.SetWriteDeadline(time.Time{})
	q.mu.Lock()
	defer q.mu.Unlock()
	q.paused = false
	q.cond.Broadcast()
}
