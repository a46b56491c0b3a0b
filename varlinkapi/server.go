package varlinkapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/porto-dev/porto/api"
	"github.com/porto-dev/porto/apiserver"
	"github.com/porto-dev/porto/service"
)

// Defaults of Options.
const (
	DefaultMaxConnections   = 2000
	DefaultMaxInFlight      = 32
	DefaultMaxBufferedBytes = 256 << 20
	DefaultMessageTimeout   = 30 * time.Second
	DefaultWriteTimeout     = 30 * time.Second
	DefaultMaxWatchers      = 128
	// DefaultMaxConnectionsPerUser is the system bus's default
	// max_connections_per_user.
	DefaultMaxConnectionsPerUser = 256
)

// Authorizer asks polkit about a local process (a unix-process subject).
// *dbusapi.Polkit implements it. An Authorizer that has no authority to
// ask returns false and no error.
type Authorizer interface {
	AuthorizeProcess(ctx context.Context, p apiserver.Process, action string, interactive bool) (bool, error)
}

// Options configure a Server. The zero value is usable.
type Options struct {
	// Logger receives internal errors and panics; nil means slog.Default().
	Logger *slog.Logger
	// Authorizer answers polkit questions; nil means there is no
	// authority: only uid 0 may do privileged things (as on D-Bus
	// without polkitd).
	Authorizer Authorizer
	// Limits of the API (apiserver's, shared with D-Bus); zero fields mean
	// the defaults.
	Limits apiserver.Limits
	// MaxMessageSize is the largest call read (DefaultMaxMessageSize).
	MaxMessageSize int
	// MaxConnections caps open connections; more are answered with
	// ResourceNotAvailable and closed (DefaultMaxConnections).
	MaxConnections int
	// MaxConnectionsPerUser caps the connections of one uid other than 0,
	// so that one user cannot take them all (DefaultMaxConnectionsPerUser).
	MaxConnectionsPerUser int
	// MaxInFlight caps the calls queued on one connection (a client may
	// send calls without waiting for replies); one more is answered with
	// ResourceNotAvailable and the connection is closed after the replies
	// (DefaultMaxInFlight).
	MaxInFlight int
	// MaxBufferedBytes caps the bytes of calls read and not yet answered,
	// over all connections (DefaultMaxBufferedBytes).
	MaxBufferedBytes int64
	// MessageTimeout is how long a client may take to finish sending a
	// message it has begun (DefaultMessageTimeout).
	MessageTimeout time.Duration
	// WriteTimeout is how long a reply may wait for the client to read it;
	// then the connection is closed (DefaultWriteTimeout).
	WriteTimeout time.Duration
	// MaxWatchers caps concurrent Watch streams (each holds a service
	// subscription and its buffer); more get ResourceNotAvailable
	// (DefaultMaxWatchers).
	MaxWatchers int
}

// Server serves the API on Varlink connections.
type Server struct {
	api  *apiserver.API
	b    apiserver.Backend
	opts Options
	log  *slog.Logger

	ctx    context.Context // cancelled by Close
	cancel context.CancelFunc

	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	conns     map[*conn]struct{}
	perUID    map[uint32]int // connections of each uid but 0
	closed    bool
	wg        sync.WaitGroup

	buffered atomic.Int64 // bytes of calls read and not yet answered
	watchers atomic.Int32 // Watch streams

	// adjustPeer, set by tests only, may change the identity the kernel
	// gave (tests cannot connect as another uid without root).
	adjustPeer func(c *net.UnixConn, p *peer)
}

// New makes a Server for m. Call Serve with a listener (Listen).
func New(m *service.Manager, opts Options) *Server {
	return newServer(m, opts)
}

func newServer(b apiserver.Backend, opts Options) *Server {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.MaxMessageSize <= 0 {
		opts.MaxMessageSize = DefaultMaxMessageSize
	}
	if opts.MaxConnections <= 0 {
		opts.MaxConnections = DefaultMaxConnections
	}
	if opts.MaxInFlight <= 0 {
		opts.MaxInFlight = DefaultMaxInFlight
	}
	if opts.MaxBufferedBytes <= 0 {
		opts.MaxBufferedBytes = DefaultMaxBufferedBytes
	}
	if opts.MessageTimeout <= 0 {
		opts.MessageTimeout = DefaultMessageTimeout
	}
	if opts.WriteTimeout <= 0 {
		opts.WriteTimeout = DefaultWriteTimeout
	}
	if opts.MaxConnectionsPerUser <= 0 {
		opts.MaxConnectionsPerUser = DefaultMaxConnectionsPerUser
	}
	if opts.MaxWatchers <= 0 {
		opts.MaxWatchers = DefaultMaxWatchers
	}
	opts.Limits = opts.Limits.WithDefaults()
	ctx, cancel := context.WithCancel(context.Background())
	return &Server{
		api:       apiserver.New(b, opts.Limits, opts.Logger),
		b:         b,
		opts:      opts,
		log:       opts.Logger,
		ctx:       ctx,
		cancel:    cancel,
		listeners: map[net.Listener]struct{}{},
		conns:     map[*conn]struct{}{},
		perUID:    map[uint32]int{},
	}
}

// ErrServerClosed is what Serve returns after Close.
var ErrServerClosed = errors.New("varlinkapi: server closed")

// Serve accepts connections on l until Close (it returns ErrServerClosed)
// or l fails. Serve closes l when it returns.
func (s *Server) Serve(l net.Listener) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		l.Close()
		return ErrServerClosed
	}
	s.listeners[l] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, l)
		s.mu.Unlock()
		l.Close()
	}()
	var backoff time.Duration
	for {
		nc, err := l.Accept()
		if err != nil {
			s.mu.Lock()
			closed := s.closed
			s.mu.Unlock()
			if closed {
				return ErrServerClosed
			}
			if transientAcceptError(err) {
				// Out of fds or memory: wait for some to be released.
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				s.log.Warn("varlink accept failed; retrying", "err", err, "in", backoff)
				select {
				case <-time.After(backoff):
				case <-s.ctx.Done():
				}
				continue
			}
			return err
		}
		backoff = 0
		uc, ok := nc.(*net.UnixConn)
		if !ok {
			nc.Close()
			continue
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			uc.Close()
			return ErrServerClosed
		}
		if len(s.conns) >= s.opts.MaxConnections {
			s.mu.Unlock()
			go s.reject(uc, "too many connections to porto's varlink socket")
			continue
		}
		c := &conn{s: s, nc: uc}
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go c.serve()
	}
}

func transientAcceptError(err error) bool {
	for _, e := range []error{syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM, syscall.ECONNABORTED, syscall.EINTR} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// reject answers a connection the server will not serve with one error
// and closes it.
func (s *Server) reject(uc *net.UnixConn, msg string) {
	defer uc.Close()
	var buf bytes.Buffer
	_ = encodeReply(&buf, &reply{Error: ErrorName(api.ResourceNotAvailable), Parameters: map[string]string{"message": msg}})
	uc.SetWriteDeadline(time.Now().Add(time.Second))
	uc.Write(buf.Bytes())
}

// Close stops accepting, cancels in-flight calls, closes every connection
// and waits (a few seconds at most) for their goroutines.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	for l := range s.listeners {
		l.Close()
	}
	conns := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	s.cancel()
	for _, c := range conns {
		c.nc.Close()
	}
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		s.log.Warn("varlink connections still busy after close")
	}
	return nil
}

// Connections is the number of open connections.
func (s *Server) Connections() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// conn is one client connection. A reader goroutine (serve) decodes calls
// and queues them; an executor runs them one at a time and writes the
// replies in order, as Varlink requires.
type conn struct {
	s    *Server
	nc   *net.UnixConn
	peer *peer

	ctx    context.Context // cancelled when the peer is gone or the server closes
	cancel context.CancelFunc

	wbuf bytes.Buffer

	pending atomic.Int32 // calls queued or running
}

// pending is a queued call, or a protocol error to reply with in order.
type pending struct {
	call *call
	size int64
	err  error
}

func (c *conn) serve() {
	s := c.s
	defer s.wg.Done()
	defer func() {
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
	}()
	p, err := peerOf(c.nc)
	if err != nil {
		s.log.Warn("varlink peer credentials", "err", err)
		c.nc.Close()
		return
	}
	if s.adjustPeer != nil {
		s.adjustPeer(c.nc, p)
	}
	c.peer = p
	defer p.close()
	if uid := p.id.UID; uid != 0 {
		s.mu.Lock()
		if s.perUID[uid] >= s.opts.MaxConnectionsPerUser {
			s.mu.Unlock()
			s.reject(c.nc, "too many connections of uid "+strconv.FormatUint(uint64(uid), 10)+" to porto's varlink socket")
			return
		}
		s.perUID[uid]++
		s.mu.Unlock()
		defer func() {
			s.mu.Lock()
			if s.perUID[uid]--; s.perUID[uid] <= 0 {
				delete(s.perUID, uid)
			}
			s.mu.Unlock()
		}()
	}
	c.ctx, c.cancel = context.WithCancel(s.ctx)
	defer c.cancel()

	queue := make(chan pending, s.opts.MaxInFlight+1)
	execDone := make(chan struct{})
	go func() {
		defer close(execDone)
		c.execLoop(queue)
	}()

	hard := c.readLoop(queue)
	close(queue)
	if hard {
		c.cancel()
	} else if c.pending.Load() > 0 {
		// The peer stopped sending (or we stopped reading): answer what
		// is queued, unless it hangs up meanwhile.
		if wake, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK); err == nil {
			watched := make(chan struct{})
			go func() {
				defer close(watched)
				c.watchHangup(wake)
			}()
			<-execDone
			unix.Write(wake, []byte{1, 0, 0, 0, 0, 0, 0, 0})
			<-watched
			unix.Close(wake)
		}
	}
	<-execDone
	c.nc.Close()
}

// readLoop reads and queues calls until the peer stops or breaks the
// protocol. It returns hard when the connection is unusable (nothing
// queued should be answered).
func (c *conn) readLoop(queue chan<- pending) (hard bool) {
	s := c.s
	dec := NewDecoder(c.nc, s.opts.MaxMessageSize)
	dec.partial = func(on bool) {
		if on {
			c.nc.SetReadDeadline(time.Now().Add(s.opts.MessageTimeout))
		} else {
			c.nc.SetReadDeadline(time.Time{})
		}
	}
	enqueue := func(p pending) {
		c.pending.Add(1)
		queue <- p
	}
	protoErr := func(msg string) {
		enqueue(pending{err: api.Errorf(api.InvalidData, "%s", msg)})
	}
	for {
		msg, err := dec.Next()
		if err != nil {
			var ne net.Error
			switch {
			case errors.Is(err, io.EOF):
				return false
			case errors.Is(err, ErrMessageTooLarge):
				protoErr("message larger than " + strconv.Itoa(s.opts.MaxMessageSize) + " bytes")
				return false
			case errors.Is(err, io.ErrUnexpectedEOF):
				protoErr("connection closed in the middle of a message (no NUL terminator)")
				return false
			case errors.As(err, &ne) && ne.Timeout():
				protoErr("incomplete message: the rest did not come within " + s.opts.MessageTimeout.String())
				return false
			}
			return true
		}
		cl, err := parseCall(msg)
		if err != nil {
			protoErr(err.Error())
			return false
		}
		size := int64(len(msg))
		if s.buffered.Add(size) > s.opts.MaxBufferedBytes {
			s.buffered.Add(-size)
			enqueue(pending{err: api.Errorf(api.ResourceNotAvailable, "porto is busy: too much unanswered input")})
			return false
		}
		if len(queue) >= s.opts.MaxInFlight {
			s.buffered.Add(-size)
			enqueue(pending{err: api.Errorf(api.ResourceNotAvailable,
				"more than %d calls in flight on one connection", s.opts.MaxInFlight)})
			return false
		}
		if c.pending.Load() == 0 && !dec.Buffered() && inline(cl) {
			// Nothing queued or running: answer right here, saving the
			// hand-off to the executor (the common case of one call at
			// a time). Only the reader queues, so nothing can start
			// meanwhile.
			c.handle(cl)
			s.buffered.Add(-size)
			continue
		}
		enqueue(pending{call: cl, size: size})
	}
}

// inline reports whether a call may run on the reader goroutine: all but
// those that can wait on the client's behalf for long (Wait, Watch), which
// must leave the reader free to see the client go away.
func inline(cl *call) bool {
	switch cl.Method {
	case Interface + "." + api.MethodWait, Interface + "." + methodWatch:
		return false
	}
	return true
}

// watchHangup cancels the connection's context when the peer closes its
// end entirely (POLLHUP), until wake is signalled. It is used once the
// reader has stopped, so that a long call (Wait, Watch) of a vanished
// client ends.
func (c *conn) watchHangup(wake int) {
	rc, err := c.nc.SyscallConn()
	if err != nil {
		return
	}
	for c.ctx.Err() == nil {
		hup, woken := false, false
		cerr := rc.Control(func(fd uintptr) {
			fds := []unix.PollFd{{Fd: int32(fd)}, {Fd: int32(wake), Events: unix.POLLIN}}
			n, err := unix.Poll(fds, 1000)
			if err != nil || n == 0 {
				return
			}
			hup = fds[0].Revents&(unix.POLLHUP|unix.POLLERR|unix.POLLNVAL) != 0
			woken = fds[1].Revents != 0
		})
		if cerr != nil || hup {
			c.cancel()
			return
		}
		if woken {
			return
		}
	}
}

func (c *conn) execLoop(queue <-chan pending) {
	for p := range queue {
		if c.ctx.Err() == nil {
			if p.err != nil {
				c.replyError(p.err)
			} else {
				c.handle(p.call)
			}
		}
		c.s.buffered.Add(-p.size)
		c.pending.Add(-1)
	}
}

// write sends one reply; a failed or timed-out write ends the connection.
func (c *conn) write(r *reply) {
	if c.ctx.Err() != nil {
		return
	}
	c.wbuf.Reset()
	if err := encodeReply(&c.wbuf, r); err != nil {
		c.s.log.Error("encode varlink reply", "err", err)
		c.wbuf.Reset()
		_ = encodeReply(&c.wbuf, &reply{Error: ErrorName(api.Unknown),
			Parameters: map[string]string{"message": "cannot encode the reply: " + err.Error()}})
	}
	c.nc.SetWriteDeadline(time.Now().Add(c.s.opts.WriteTimeout))
	if _, err := c.nc.Write(c.wbuf.Bytes()); err != nil {
		c.s.log.Debug("varlink write failed; closing", "err", err)
		c.cancel()
		c.nc.Close()
	}
	if c.wbuf.Cap() > 1<<20 {
		c.wbuf = bytes.Buffer{}
	}
}

// replyError sends err as an error reply: org.varlink.service's errors
// as they are, anything else through apiserver.Classify as
// io.porto.Manager.<Code> {message}.
func (c *conn) replyError(err error) {
	var ce *callError
	if errors.As(err, &ce) {
		params := ce.params
		if params == nil {
			params = empty{}
		}
		c.write(&reply{Error: ce.name, Parameters: params})
		return
	}
	code, msg := apiserver.Classify(c.s.log, "varlink", err)
	c.write(&reply{Error: ErrorName(code), Parameters: map[string]string{"message": msg}})
}

// handle runs one call and writes its replies (none if oneway).
func (c *conn) handle(cl *call) {
	dot := strings.LastIndexByte(cl.Method, '.')
	iface, method := "", cl.Method
	if dot >= 0 {
		iface, method = cl.Method[:dot], cl.Method[dot+1:]
	}
	var (
		out any
		err error
	)
	switch {
	case cl.Upgrade:
		err = invalidParameter("upgrade")
	case iface == ServiceInterface:
		out, err = c.serviceMethod(method, cl)
	case iface == Interface && method == methodWatch:
		if !cl.More {
			err = &callError{name: errExpectedMore}
		} else if !cl.Oneway {
			c.watch(cl)
			return
		}
	case iface == Interface:
		h := methods[method]
		if h == nil {
			err = &callError{errMethodNotFound, map[string]string{"method": cl.Method}}
			break
		}
		out, err = c.run(method, h, cl.Parameters)
	default:
		err = &callError{errInterfaceNotFound, map[string]string{"interface": iface}}
	}
	if cl.Oneway {
		return
	}
	if err != nil {
		c.replyError(err)
		return
	}
	c.write(&reply{Parameters: out})
}

// run calls h, turning a panic into an Unknown error.
func (c *conn) run(method string, h handler, p json.RawMessage) (out any, err error) {
	defer func() {
		if r := recover(); r != nil {
			out, err = nil, apiserver.Recovered(c.s.log, method, r)
		}
	}()
	return h(c.ctx, c.s.api, &connCaller{c}, p)
}

// caller is the service.Caller of a call on this connection.
func (c *conn) caller(interactive bool) service.Caller {
	var auth apiserver.AuthorizeFunc
	if a := c.s.opts.Authorizer; a != nil && c.peer.id.Pid > 0 {
		p := c.peer
		auth = func(ctx context.Context, action string) (bool, error) {
			start, err := p.startTime()
			if err != nil {
				return false, err
			}
			return a.AuthorizeProcess(ctx, apiserver.Process{Pid: p.id.Pid, StartTime: start, UID: p.id.UID, Pidfd: p.pidfd}, action, interactive)
		}
	}
	return apiserver.NewCaller(c.peer.id, auth)
}

func (c *conn) serviceMethod(method string, cl *call) (any, error) {
	switch method {
	case "GetInfo":
		if err := decode(cl.Parameters, &struct{}{}); err != nil {
			return nil, err
		}
		return struct {
			Vendor     string   `json:"vendor"`
			Product    string   `json:"product"`
			Version    string   `json:"version"`
			URL        string   `json:"url"`
			Interfaces []string `json:"interfaces"`
		}{"porto", "portod", api.Version, "https://github.com/porto-dev/porto", []string{ServiceInterface, Interface}}, nil
	case "GetInterfaceDescription":
		var in struct {
			Interface *string `json:"interface"`
		}
		if err := decode(cl.Parameters, &in); err != nil {
			return nil, err
		}
		if err := required("interface", in.Interface != nil); err != nil {
			return nil, err
		}
		var d string
		switch *in.Interface {
		case Interface:
			d = Description
		case ServiceInterface:
			d = serviceDescription
		default:
			return nil, &callError{errInterfaceNotFound, map[string]string{"interface": *in.Interface}}
		}
		return struct {
			Description string `json:"description"`
		}{d}, nil
	}
	return nil, &callError{errMethodNotFound, map[string]string{"method": cl.Method}}
}

// watch streams state changes until the peer or the server goes away.
func (c *conn) watch(cl *call) {
	if err := decode(cl.Parameters, &struct{}{}); err != nil {
		c.replyError(err)
		return
	}
	if c.s.watchers.Add(1) > int32(c.s.opts.MaxWatchers) {
		c.s.watchers.Add(-1)
		c.replyError(api.Errorf(api.ResourceNotAvailable, "too many Watch streams (at most %d)", c.s.opts.MaxWatchers))
		return
	}
	defer c.s.watchers.Add(-1)
	events, unsubscribe := c.s.b.Subscribe()
	defer unsubscribe()
	c.write(&reply{Parameters: watchEvent{}, Continues: true})
	for {
		select {
		case <-c.ctx.Done():
			return
		case ev, ok := <-events:
			if !ok {
				return
			}
			state := string(ev.State)
			if ev.Destroyed {
				state = string(api.StateDestroyed)
			} else if state == "" {
				info, err := c.s.b.Info(ev.Name)
				if err != nil {
					continue
				}
				state = string(info.State)
			}
			c.write(&reply{Parameters: watchEvent{Name: ev.Name, State: state, Path: api.ContainerPath(ev.Name)}, Continues: true})
		}
	}
}
