package client

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
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
	path string

	mu     sync.Mutex
	idle   []*vlConn
	closed bool
}

type vlConn struct {
	nc  *net.UnixConn
	r   *bufio.Reader
	buf bytes.Buffer
}

func dialVarlink(ctx context.Context, path string) (*vlConn, error) {
	var d net.Dialer
	nc, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return nil, err
	}
	return &vlConn{nc: nc.(*net.UnixConn), r: bufio.NewReaderSize(nc, 16<<10)}, nil
}

// newVarlinkTransport connects once, so that an unreachable socket is
// known at once; the connection is kept for the first call.
func newVarlinkTransport(ctx context.Context, path string) (*varlinkTransport, error) {
	vc, err := dialVarlink(ctx, path)
	if err != nil {
		return nil, err
	}
	return &varlinkTransport{path: path, idle: []*vlConn{vc}}, nil
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
	vc, err := dialVarlink(ctx, t.path)
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
		vc.nc.Close()
	}
}

func (t *varlinkTransport) close() error {
	t.mu.Lock()
	idle := t.idle
	t.idle, t.closed = nil, true
	t.mu.Unlock()
	for _, vc := range idle {
		vc.nc.Close()
	}
	return nil
}

func varlinkDialError(path string, err error) *api.Error {
	return &api.Error{Code: api.Unknown, Msg: "cannot connect to porto at " + path + ": " + err.Error(), Err: err}
}

// vlCall is a Varlink method call.
type vlCall struct {
	Method     string `json:"method"`
	Parameters any    `json:"parameters,omitempty"`
	More       bool   `json:"more,omitempty"`
}

// vlReply is a Varlink reply.
type vlReply struct {
	Parameters json.RawMessage `json:"parameters"`
	Continues  bool            `json:"continues"`
	Error      string          `json:"error"`
}

// call runs method with params and decodes the reply's parameters into
// out (if not nil).
func (t *varlinkTransport) call(ctx context.Context, method string, params, out any) error {
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
		stop = context.AfterFunc(ctx, func() { vc.nc.SetDeadline(time.Unix(1, 0)) })
	}
	if err := vc.send(method, params, false); err != nil {
		stop()
		vc.nc.Close()
		return transportError(ctx, err)
	}
	rep, err := vc.recv()
	if !stop() || err != nil {
		vc.nc.Close()
		if err == nil {
			err = ctx.Err()
		}
		return transportError(ctx, err)
	}
	t.put(vc)
	return rep.decode(out)
}

func (vc *vlConn) send(method string, params any, more bool) error {
	vc.buf.Reset()
	enc := json.NewEncoder(&vc.buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(vlCall{Method: VarlinkInterface + "." + method, Parameters: params, More: more}); err != nil {
		return err
	}
	b := vc.buf.Bytes()
	b[len(b)-1] = 0 // the terminator instead of Encode's newline
	_, err := vc.nc.Write(b)
	return err
}

func (vc *vlConn) recv() (*vlReply, error) {
	line, err := vc.r.ReadSlice(0)
	if errors.Is(err, bufio.ErrBufferFull) {
		acc := append([]byte(nil), line...)
		for errors.Is(err, bufio.ErrBufferFull) {
			if len(acc) > maxVarlinkReply {
				return nil, fmt.Errorf("reply larger than %d bytes", maxVarlinkReply)
			}
			line, err = vc.r.ReadSlice(0)
			acc = append(acc, line...)
		}
		line = acc
	}
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil, io.ErrUnexpectedEOF
		}
		return nil, err
	}
	var rep vlReply
	if err := json.Unmarshal(line[:len(line)-1], &rep); err != nil {
		return nil, fmt.Errorf("bad reply from porto: %w", err)
	}
	return &rep, nil
}

// decode turns an error reply into an *api.Error, or stores the
// parameters into out.
func (r *vlReply) decode(out any) error {
	if r.Error != "" {
		return varlinkError(r.Error, r.Parameters)
	}
	if out == nil || len(r.Parameters) == 0 {
		return nil
	}
	if err := json.Unmarshal(r.Parameters, out); err != nil {
		return &api.Error{Code: api.Unknown, Msg: "bad reply from porto: " + err.Error(), Err: err}
	}
	return nil
}

// varlinkError is the one place where a Varlink error reply becomes an
// *api.Error: io.porto.Manager.<Code> maps to its Code with the reply's
// message; org.varlink.service errors (a method or parameter this daemon
// does not know) are InvalidMethod; anything else is Unknown.
func varlinkError(name string, params json.RawMessage) *api.Error {
	var p map[string]any
	_ = json.Unmarshal(params, &p)
	msg, _ := p["message"].(string)
	if strings.HasPrefix(name, VarlinkErrorPrefix) {
		if code, ok := api.CodeByName(name[len(VarlinkErrorPrefix):]); ok {
			return &api.Error{Code: code, Msg: msg}
		}
		return &api.Error{Code: api.Unknown, Msg: strings.TrimPrefix(name, VarlinkErrorPrefix) + ": " + msg}
	}
	if strings.HasPrefix(name, "org.varlink.service.") {
		detail := ""
		for _, k := range []string{"method", "parameter", "interface"} {
			if v, ok := p[k].(string); ok {
				detail = " (" + k + " " + v + ")"
			}
		}
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
	vc, err := dialVarlink(ctx, t.path)
	if err != nil {
		return nil, varlinkDialError(t.path, err)
	}
	stop := context.AfterFunc(ctx, func() { vc.nc.Close() })
	fail := func(err error) (<-chan StateChange, error) {
		stop()
		vc.nc.Close()
		return nil, err
	}
	if err := vc.send("Watch", struct{}{}, true); err != nil {
		return fail(transportError(ctx, err))
	}
	// The first reply says the subscription is live.
	rep, err := vc.recv()
	if err != nil {
		return fail(transportError(ctx, err))
	}
	if err := rep.decode(nil); err != nil {
		return fail(err)
	}
	out := make(chan StateChange, 64)
	go func() {
		defer close(out)
		defer stop()
		defer vc.nc.Close()
		for {
			rep, err := vc.recv()
			if err != nil || rep.Error != "" {
				return
			}
			var ev struct {
				Name  string `json:"name"`
				State string `json:"state"`
				Path  string `json:"path"`
			}
			if json.Unmarshal(rep.Parameters, &ev) != nil || ev.Name == "" {
				continue
			}
			sc := StateChange{Name: ev.Name, State: api.State(ev.State), Path: objectPath(ev.Path)}
			sc.Destroyed = sc.State == api.StateDestroyed
			select {
			case out <- sc:
			case <-ctx.Done():
				return
			}
			if !rep.Continues {
				return
			}
		}
	}()
	return out, nil
}
