package supervise

import (
	"errors"
	"net"
	"os"
	"sync"
	"time"
)

// outQueue is the master's unbounded queue of datagrams to one worker,
// drained by a writer goroutine, so the master loop never blocks on a slow
// worker. It can be paused (for an upgrade): the write in progress is
// interrupted with a deadline and what was not sent is handed over.
type outQueue struct {
	mu      sync.Mutex
	cond    *sync.Cond
	items   [][]byte
	paused  bool
	closed  bool
	writing bool
}

func newOutQueue() *outQueue {
	q := &outQueue{}
	q.cond = sync.NewCond(&q.mu)
	return q
}

func (q *outQueue) push(b []byte) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return
	}
	q.items = append(q.items, b)
	q.cond.Broadcast()
}

// close drops everything; the writer exits.
func (q *outQueue) close() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.closed = true
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
		b := q.items[0]
		q.writing = true
		q.mu.Unlock()

		_, err := conn.Write(b)

		q.mu.Lock()
		q.writing = false
		switch {
		case err == nil:
			if len(q.items) > 0 && !q.closed {
				q.items[0] = nil
				q.items = q.items[1:]
			}
		case q.paused && errors.Is(err, os.ErrDeadlineExceeded):
			// Not sent (a datagram goes whole or not at all): keep it.
		default:
			// The connection is broken; the reader reports it.
			q.closed = true
			q.items = nil
		}
		q.cond.Broadcast()
		q.mu.Unlock()
	}
}

// pause stops the writer (interrupting a blocked write) and returns what
// is still unsent. resume undoes it.
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
	return append([][]byte(nil), q.items...)
}

func (q *outQueue) resume(conn *net.UnixConn) {
	conn.SetWriteDeadline(time.Time{})
	q.mu.Lock()
	defer q.mu.Unlock()
	q.paused = false
	q.cond.Broadcast()
}
