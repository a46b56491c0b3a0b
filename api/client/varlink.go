package client

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/porto-dev/porto/api"
)

// The Varlink endpoint (varlinkapi serves it).
const (
	// VarlinkInterface is porto's Varlink interface, the twin of
	// api.ManagerInterface on D-Bus.
	VarlinkInterface = "io.porto.Manager"
	// VarlinkErrorPrefix precedes an EError name in a Varlink error.
	VarlinkErrorPrefix = VarlinkInterface + "."
	// DefaultVarlinkSocket is where portod serves it by default.
	DefaultVarlinkSocket = "/run/porto/" + VarlinkInterface
	// VarlinkSocketEnv overrides DefaultVarlinkSocket.
	VarlinkSocketEnv = "PORTO_VARLINK_SOCKET"
)

// maxVarlinkReply caps one reply read from the socket.
const maxVarlinkReply = 64 << 20

// varlinkIdle is how many idle connections a Client keeps.
const varlinkIdle = 4

// varlinkTransport calls porto over its Varlink socket. Varlink answers
// the calls of one connection in order, so a call holds a connection for
// its duration; concurrent calls (and a long Wait) use more connections,
// kept in a small pool.
type varlinkTransport struct {
	path   string
	direct bool // see WithDirectIO

	mu     sync.Mutex
	idle   []*vlConn
	closed bool
}

// vlConn is one connection: a *net.UnixConn on Go's network poller, or
// with WithDirectIO a blocking socket read and written with plain system
// calls (an *os.File on a blocking descriptor bypasses the poller).
type vlConn struct {
	nc  *net.UnixConn // on the poller
	f   *os.File      // direct
	buf []byte        // the call being sent
	// in holds what was read: in[off:] is not consumed yet. It grows to
	// the largest reply, so that one is read in few large reads.
	in  []byte
	off int
}

func dialVarlink(ctx context.Context, path string, direct bool) (*vlConn, error) {
	if !direct {
		var d net.Dialer
		nc, err := d.DialContext(ctx, "unix", path)
		if err != nil {
			return nil, err
		}
		return &vlConn{nc: nc.(*net.UnixConn)}, nil
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	fd, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC|syscall.SOCK_NONBLOCK, 0)
	if err != nil {
		return nil, dialError(path, os.NewSyscallError("socket", err))
	}
	// Non-blocking, as net.Dial does: a connect to a socket whose backlog
	// is full fails at once (EAGAIN) instead of blocking beyond ctx.
	err = syscall.Connect(fd, &syscall.SockaddrUnix{Name: path})
	if err == nil {
		err = syscall.SetNonblock(fd, false)
	}
	if err != nil {
		syscall.Close(fd)
		return nil, dialError(path, os.NewSyscallError("connect", err))
	}
	return &vlConn{f: os.NewFile(uintptr(fd), path)}, nil
}

// dialError is the error net.Dial returns.
func dialError(path string, err error) error {
	return &net.OpError{Op: "dial", Net: "unix", Addr: &net.UnixAddr{Name: path, Net: "unix"}, Err: err}
}

func (vc *vlConn) read(b []byte) (int, error) {
	if vc.f != nil {
		return vc.f.Read(b)
	}
	return vc.nc.Read(b)
}

func (vc *vlConn) write(b []byte) error {
	var err error
	if vc.f != nil {
		_, err = vc.f.Write(b)
	} else {
		_, err = vc.nc.Write(b)
	}
	return err
}

// abort makes a read or write in progress on vc return at once; vc is
// then unusable. A blocking descriptor has no deadline: it is shut down.
func (vc *vlConn) abort() {
	if vc.f == nil {
		vc.nc.SetDeadline(time.Unix(1, 0))
		return
	}
	if rc, err := vc.f.SyscallConn(); err == nil {
		rc.Control(func(fd uintptr) { syscall.Shutdown(int(fd), syscall.SHUT_RDWR) })
	}
}

func (vc *vlConn) close() {
	if vc.f != nil {
		vc.f.Close()
	} else {
		vc.nc.Close()
	}
}

// newVarlinkTransport connects once, so that an unreachable socket is
// known at once; the connection is kept for the first call.
func newVarlinkTransport(ctx context.Context, path string, direct bool) (*varlinkTransport, error) {
	vc, err := dialVarlink(ctx, path, direct)
	if err != nil {
		return nil, err
	}
	return &varlinkTransport{path: path, direct: direct, idle: []*vlConn{vc}}, nil
}

func (t *varlinkTransport) get(ctx context.Context) (*vlConn, error) {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil, &api.Error{Code: api.Unknown, Msg: "the client is closed"}
	}
	if n := len(t.idle); n > 0 {
		vc := t.idle[n-1]
		t.idle = t.idle[:n-1]
		t.mu.Unlock()
		return vc, nil
	}
	t.mu.Unlock()
	vc, err := dialVarlink(ctx, t.path, t.direct)
	if err != nil {
		return nil, varlinkDialError(t.path, err)
	}
	return vc, nil
}

func (t *varlinkTransport) put(vc *vlConn) {
	t.mu.Lock()
	if !t.closed && len(t.idle) < varlinkIdle {
		t.idle = append(t.idle, vc)
		vc = nil
	}
	t.mu.Unlock()
	if vc != nil {
		vc.close()
	}
}

func (t *varlinkTransport) close() error {
	t.mu.Lock()
	idle := t.idle
	t.idle, t.closed = nil, true
	t.mu.Unlock()
	for _, vc := range idle {
		vc.close()
	}
	return nil
}

func varlinkDialError(path string, err error) *api.Error {
	return &api.Error{Code: api.Unknown, Msg: "cannot connect to porto at " + path + ": " + err.Error(), Err: err}
}

// call runs method with the parameters params writes (nil: none) and
// lets dec (if not nil) read the reply's parameters.
func (t *varlinkTransport) call(ctx context.Context, method string, params func(*jwriter), dec func(*jreader)) error {
	if err := ctx.Err(); err != nil {
		return toAPIError(err)
	}
	vc, err := t.get(ctx)
	if err != nil {
		return err
	}
	// A cancelled context aborts the call by expiring the connection's
	// deadline; such a connection is never reused.
	stop := func() bool { return true }
	if ctx.Done() != nil {
		stop = context.AfterFunc(ctx, vc.abort)
	}
	if err := vc.send(method, params, false); err != nil {
		stop()
		vc.close()
		return transportError(ctx, err)
	}
	rep, err := vc.recv(dec)
	if !stop() || err != nil {
		vc.close()
		if err == nil {
			err = ctx.Err()
		}
		return transportError(ctx, err)
	}
	t.put(vc)
	if rep.err != nil {
		return rep.err
	}
	return nil
}

// send writes one call, {"method":...,"parameters":{...}[,"more":true]},
// and its NUL terminator.
func (vc *vlConn) send(method string, params func(*jwriter), more bool) error {
	w := jwriter{b: append(vc.buf[:0], '{')}
	w.str("method", VarlinkInterface+"."+method)
	w.key("parameters")
	pw := jwriter{b: append(w.b, '{')}
	if params != nil {
		params(&pw)
	}
	w.b = append(pw.b, '}')
	if more {
		w.b = append(w.b, `,"more":true`...)
	}
	w.b = append(w.b, '}', 0)
	vc.buf = w.b
	return vc.write(w.b)
}

// vlReply is what recv keeps of a reply.
type vlReply struct {
	continues bool
	err       *api.Error // the reply is an error
}

// recv reads one reply. dec, if not nil, reads its parameters (of an
// error reply too: it must skip what it does not know).
func (vc *vlConn) recv(dec func(*jreader)) (vlReply, error) {
	line, err := vc.readMsg()
	if err != nil {
		return vlReply{}, err
	}
	rep, err := parseReply(line, dec)
	if err != nil {
		return vlReply{}, fmt.Errorf("bad reply from porto: %w", err)
	}
	return rep, nil
}

// readMsg returns the next NUL-terminated message, without its NUL; it is
// valid until the next read.
func (vc *vlConn) readMsg() ([]byte, error) {
	scanned := vc.off // in[off:scanned] has no NUL
	for {
		if i := bytes.IndexByte(vc.in[scanned:], 0); i >= 0 {
			msg := vc.in[vc.off : scanned+i]
			vc.off = scanned + i + 1
			return msg, nil
		}
		scanned = len(vc.in)
		if scanned-vc.off > maxVarlinkReply {
			return nil, fmt.Errorf("reply larger than %d bytes", maxVarlinkReply)
		}
		if vc.off == len(vc.in) {
			// Nothing pending: start again at the beginning.
			vc.in, vc.off, scanned = vc.in[:0], 0, 0
		}
		if cap(vc.in)-len(vc.in) < 4<<10 {
			// Grow (moving the pending bytes to the front), by 4: a large
			// reply is read in few reads and copied little. Only the
			// pages read into are touched, so a fresh buffer larger than
			// a small reply costs little.
			n := max(64<<10, 4*(len(vc.in)-vc.off))
			in := make([]byte, len(vc.in)-vc.off, len(vc.in)-vc.off+n)
			copy(in, vc.in[vc.off:])
			scanned -= vc.off
			vc.in, vc.off = in, 0
		}
		n, err := vc.read(vc.in[len(vc.in):cap(vc.in)])
		vc.in = vc.in[:len(vc.in)+n]
		if n == 0 && err != nil {
			if errors.Is(err, io.EOF) {
				return nil, io.ErrUnexpectedEOF
			}
			return nil, err
		}
	}
}

// parseReply reads a reply, {"parameters":{...},"continues":B,"error":S},
// in one pass: dec reads the parameters where they are.
func parseReply(b []byte, dec func(*jreader)) (vlReply, error) {
	var rep vlReply
	var errName string
	var params []byte
	r := jreader{b: b}
	if r.peek() != '{' {
		return rep, errBadJSON
	}
	r.object(func(key []byte) {
		switch string(key) {
		case "parameters":
			start := r.i
			if dec != nil && r.peek() == '{' {
				dec(&r)
			} else {
				r.skip()
			}
			params = b[start:r.i]
		case "continues":
			rep.continues = r.boolean()
		case "error":
			errName = r.str()
		default:
			r.skip()
		}
	})
	r.end()
	if r.err != nil {
		return rep, r.err
	}
	if errName != "" {
		rep.err = varlinkError(errName, params)
	}
	return rep, nil
}

// varlinkError is the one place where a Varlink error reply becomes an
// *api.Error: io.porto.Manager.<Code> maps to its Code with the reply's
// message; org.varlink.service errors (a method or parameter this daemon
// does not know) are InvalidMethod; anything else is Unknown.
func varlinkError(name string, params []byte) *api.Error {
	var msg string
	var details [3]string // method, parameter, interface
	var has [3]bool
	r := jreader{b: params}
	if r.peek() == '{' {
		r.object(func(key []byte) {
			k := string(key)
			if r.peek() != '"' {
				r.skip()
				return
			}
			v := r.str()
			switch k {
			case "message":
				msg = v
			case "method":
				details[0], has[0] = v, true
			case "parameter":
				details[1], has[1] = v, true
			case "interface":
				details[2], has[2] = v, true
			}
		})
	}
	detail := ""
	for i, k := range []string{"method", "parameter", "interface"} {
		if has[i] {
			detail = " (" + k + " " + details[i] + ")"
		}
	}
	return varlinkErrorMsg(name, msg, detail)
}

// varlinkErrorMsg is varlinkError with the parameters read: the message
// and, for org.varlink.service errors, the detail " (method M)".
func varlinkErrorMsg(name, msg, detail string) *api.Error {
	if strings.HasPrefix(name, VarlinkErrorPrefix) {
		if code, ok := api.CodeByName(name[len(VarlinkErrorPrefix):]); ok {
			return &api.Error{Code: code, Msg: msg}
		}
		return &api.Error{Code: api.Unknown, Msg: strings.TrimPrefix(name, VarlinkErrorPrefix) + ": " + msg}
	}
	if strings.HasPrefix(name, "org.varlink.service.") {
		return &api.Error{Code: api.InvalidMethod, Msg: strings.TrimPrefix(name, "org.varlink.service.") + detail}
	}
	if msg == "" {
		msg = name
	}
	return &api.Error{Code: api.Unknown, Msg: msg}
}

// transportError classifies a failure of the connection itself.
func transportError(ctx context.Context, err error) *api.Error {
	if ctx.Err() != nil {
		return toAPIError(ctx.Err())
	}
	msg := "lost the connection to porto's varlink socket: " + err.Error()
	if errors.Is(err, io.ErrUnexpectedEOF) {
		msg = "porto closed the connection (it exited, or refused the call)"
	}
	return &api.Error{Code: api.Unknown, Msg: msg, Err: err}
}

// watch streams Watch's replies on a connection of its own.
func (t *varlinkTransport) watch(ctx context.Context) (<-chan StateChange, error) {
	vc, err := dialVarlink(ctx, t.path, t.direct)
	if err != nil {
		return nil, varlinkDialError(t.path, err)
	}
	stop := context.AfterFunc(ctx, func() { vc.abort(); vc.close() })
	fail := func(err error) (<-chan StateChange, error) {
		stop()
		vc.close()
		return nil, err
	}
	if err := vc.send("Watch", nil, true); err != nil {
		return fail(transportError(ctx, err))
	}
	// The first reply says the subscription is live.
	rep, err := vc.recv(nil)
	if err != nil {
		return fail(transportError(ctx, err))
	}
	if rep.err != nil {
		return fail(rep.err)
	}
	out := make(chan StateChange, 64)
	go func() {
		defer close(out)
		defer stop()
		defer vc.close()
		for {
			var name, state, path string
			rep, err := vc.recv(func(r *jreader) {
				r.object(func(key []byte) {
					switch string(key) {
					case "name":
						name = r.str()
					case "state":
						state = r.str()
					case "path":
						path = r.str()
					default:
						r.skip()
					}
				})
			})
			if err != nil || rep.err != nil {
				return
			}
			if name != "" {
				sc := StateChange{Name: name, State: api.State(state), Path: objectPath(path)}
				sc.Destroyed = sc.State == api.StateDestroyed
				select {
				case out <- sc:
				case <-ctx.Done():
					return
				}
			}
			if !rep.continues {
				return
			}
		}
	}()
	return out, nil
}
