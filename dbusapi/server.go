package dbusapi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/porto-dev/porto/api"
	"github.com/porto-dev/porto/apiserver"
	"github.com/porto-dev/porto/service"
)

// Default input limits (apiserver's, which the Varlink edge shares).
const (
	DefaultMaxStringLen  = apiserver.DefaultMaxStringLen
	DefaultMaxListLen    = apiserver.DefaultMaxListLen
	DefaultMaxGetCells   = apiserver.DefaultMaxGetCells
	DefaultMaxReplyBytes = apiserver.DefaultMaxReplyBytes
	// DefaultResyncInterval is how often container objects are reconciled
	// with the service's list, in case events were dropped.
	DefaultResyncInterval = 30 * time.Second
)

// maxCachedPeers bounds the identity cache; it is cleared when full (it only
// misses NameOwnerChanged signals if the bus drops them).
const maxCachedPeers = 4096

// Options configure a Server. The zero value is usable.
type Options struct {
	// Logger receives internal errors and panics; nil means slog.Default().
	Logger *slog.Logger
	// Authorizer answers polkit questions; nil means polkit on the
	// exported connection's bus (NewPolkit).
	Authorizer Authorizer
	// Input limits; zero means the Default* value.
	MaxStringLen int
	MaxListLen   int
	MaxGetCells  int
	// MaxReplyBytes caps the size of Get and GetProperty replies; beyond
	// it the call fails with ResourceNotAvailable.
	MaxReplyBytes int
	// ResyncInterval; zero means DefaultResyncInterval, < 0 disables it.
	ResyncInterval time.Duration
}

// backend is what the server needs of service.Manager (apiserver.Backend).
type backend = apiserver.Backend

// Server exports a service.Manager on one D-Bus connection.
type Server struct {
	b    backend
	api  *apiserver.API // the methods, shared with the Varlink edge
	opts Options
	log  *slog.Logger
	auth Authorizer

	// identify establishes a sender's identity; busIdentify in production.
	identify func(ctx context.Context, conn *dbus.Conn, sender string) (identity, error)

	ctx    context.Context // cancelled by Close: in-flight calls, loops
	cancel context.CancelFunc

	mu       sync.Mutex
	conn     *dbus.Conn
	peers    map[string]identity                      // sender -> identity
	inflight map[string]map[uint64]context.CancelFunc // sender -> calls
	nextCall uint64
	named    bool // RequestName succeeded
	closed   bool

	events      <-chan service.Event
	unsubscribe func()
	sigs        chan *dbus.Signal

	// objMu serialises the changes to container objects (events, resync,
	// Close); propMu guards props against the call handlers.
	objMu   sync.Mutex
	propMu  sync.RWMutex
	props   map[string]containerProps // name -> its object's properties
	subtree bool                      // the container subtree handlers are exported
	owners  map[string]string         // interned owner names
}

// New makes a Server for m. Call Export, then (once state is restored)
// RequestName, then Serve.
func New(m *service.Manager, opts Options) *Server {
	return newServer(m, opts)
}

func newServer(b backend, opts Options) *Server {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	lim := apiserver.Limits{
		MaxStringLen:  opts.MaxStringLen,
		MaxListLen:    opts.MaxListLen,
		MaxGetCells:   opts.MaxGetCells,
		MaxReplyBytes: opts.MaxReplyBytes,
	}.WithDefaults()
	opts.MaxStringLen, opts.MaxListLen, opts.MaxGetCells, opts.MaxReplyBytes =
		lim.MaxStringLen, lim.MaxListLen, lim.MaxGetCells, lim.MaxReplyBytes
	if opts.ResyncInterval == 0 {
		opts.ResyncInterval = DefaultResyncInterval
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Server{
		b:        b,
		api:      apiserver.New(b, lim, opts.Logger),
		opts:     opts,
		log:      opts.Logger,
		auth:     opts.Authorizer,
		identify: busIdentify,
		ctx:      ctx,
		cancel:   cancel,
		peers:    make(map[string]identity),
		inflight: make(map[string]map[uint64]context.CancelFunc),
		props:    make(map[string]containerProps),
		owners:   make(map[string]string),
	}
}

// ConnectSystemBus opens a private connection to the system bus, at
// $DBUS_SYSTEM_BUS_ADDRESS when set.
func ConnectSystemBus() (*dbus.Conn, error) {
	conn, err := dbus.ConnectSystemBus()
	if err != nil {
		addr := os.Getenv("DBUS_SYSTEM_BUS_ADDRESS")
		if addr == "" {
			addr = "unix:path=/var/run/dbus/system_bus_socket"
		}
		return nil, fmt.Errorf("connect to the system bus at %s: %w", addr, err)
	}
	return conn, nil
}

// Export publishes the manager object and the objects of the existing
// containers on conn, and starts following the service's events (Serve
// applies them). Calls are served from now on by whoever can reach the
// connection's unique name; the well-known name comes with RequestName.
func (s *Server) Export(conn *dbus.Conn) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return errors.New("dbusapi: server is closed")
	}
	if s.conn != nil {
		s.mu.Unlock()
		return errors.New("dbusapi: already exported")
	}
	s.conn = conn
	if s.auth == nil {
		s.auth = NewPolkit(conn)
	}
	s.mu.Unlock()

	// Learn about peers that go away before serving any call.
	if err := conn.AddMatchSignal(
		dbus.WithMatchSender(busName),
		dbus.WithMatchObjectPath(busPath),
		dbus.WithMatchInterface(busInterface),
		dbus.WithMatchMember("NameOwnerChanged"),
	); err != nil {
		return fmt.Errorf("watch NameOwnerChanged: %w", err)
	}
	s.sigs = make(chan *dbus.Signal, 256)
	conn.Signal(s.sigs)
	go s.peerLoop()

	// Subscribe before listing so no change is missed in between.
	s.events, s.unsubscribe = s.b.Subscribe()

	mgr := &manager{s: s}
	if err := conn.Export(mgr, api.ManagerPath, api.ManagerInterface); err != nil {
		return fmt.Errorf("export %s: %w", api.ManagerPath, err)
	}
	if err := conn.Export(introspectable(managerXML), api.ManagerPath, introspectableInterface); err != nil {
		return fmt.Errorf("export %s: %w", api.ManagerPath, err)
	}
	if err := s.resync(); err != nil {
		return fmt.Errorf("export container objects: %w", err)
	}
	return nil
}

// RequestName takes api.BusName on the exported connection, without
// queueing: it fails if another process owns it.
func (s *Server) RequestName() error {
	s.mu.Lock()
	conn := s.conn
	s.mu.Unlock()
	if conn == nil {
		return errors.New("dbusapi: RequestName before Export")
	}
	reply, err := conn.RequestName(api.BusName, dbus.NameFlagDoNotQueue)
	if err != nil {
		var de dbus.Error
		if errors.As(err, &de) && de.Name == "org.freedesktop.DBus.Error.AccessDenied" {
			return fmt.Errorf("not allowed to own %s on the system bus (is the D-Bus policy file installed?): %w", api.BusName, err)
		}
		return fmt.Errorf("request bus name %s: %w", api.BusName, err)
	}
	switch reply {
	case dbus.RequestNameReplyPrimaryOwner, dbus.RequestNameReplyAlreadyOwner:
		s.mu.Lock()
		s.named = true
		s.mu.Unlock()
		return nil
	}
	owner := ""
	var pid uint32
	if conn.BusObject().Call(busInterface+".GetConnectionUnixProcessID", 0, api.BusName).Store(&pid) == nil {
		owner = fmt.Sprintf(" by pid %d", pid)
	}
	return fmt.Errorf("bus name %s is already taken%s: is another portod running?", api.BusName, owner)
}

// ErrBusClosed is what Serve returns when the bus connection is gone (the
// bus daemon exited or dropped portod): nothing is served any more, and
// the process should exit so that it is restarted.
var ErrBusClosed = errors.New("dbusapi: the connection to the bus is closed")

// Serve applies the service's state changes to the exported objects and
// emits the signals, until ctx is done (it returns ctx.Err()), Close is
// called (nil) or the bus connection closes (ErrBusClosed).
func (s *Server) Serve(ctx context.Context) error {
	if s.events == nil {
		return errors.New("dbusapi: Serve before Export")
	}
	busGone := s.conn.Context().Done()
	var tick <-chan time.Time
	if s.opts.ResyncInterval > 0 {
		t := time.NewTicker(s.opts.ResyncInterval)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-s.ctx.Done():
			return nil
		case <-busGone:
			s.log.Error("the connection to the bus is closed")
			return ErrBusClosed
		case ev, ok := <-s.events:
			if !ok {
				return nil
			}
			s.guard("event", func() { s.applyEvent(ev) })
		case <-tick:
			s.guard("resync", func() {
				if err := s.resync(); err != nil {
					s.log.Warn("resync of container objects failed", "err", err)
				}
			})
		}
	}
}

// guard runs f, logging instead of crashing on a panic.
func (s *Server) guard(what string, f func()) {
	var derr *dbus.Error
	defer recoverCall(s.log, what, &derr)
	f()
}

// Close cancels in-flight calls, stops following events, removes every
// exported object and releases the bus name. It does not close the
// connection, which belongs to the caller.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	conn, named := s.conn, s.named
	s.mu.Unlock()
	s.cancel()
	if s.unsubscribe != nil {
		s.unsubscribe()
	}
	if conn == nil {
		return nil
	}
	var errs []error
	if named {
		if _, err := conn.ReleaseName(api.BusName); err != nil && !errors.Is(err, dbus.ErrClosed) {
			errs = append(errs, fmt.Errorf("release %s: %w", api.BusName, err))
		}
	}
	_ = conn.Export(nil, api.ManagerPath, api.ManagerInterface)
	_ = conn.Export(nil, api.ManagerPath, introspectableInterface)
	s.objMu.Lock()
	s.propMu.Lock()
	clear(s.props)
	_ = s.exportSubtree(false)
	s.propMu.Unlock()
	s.objMu.Unlock()
	if s.sigs != nil {
		// godbus closes the channel itself if the connection is closed.
		conn.RemoveSignal(s.sigs)
	}
	return errors.Join(errs...)
}

// peerLoop forgets the identity of peers that left the bus and cancels
// their in-flight calls.
func (s *Server) peerLoop() {
	for {
		var sig *dbus.Signal
		select {
		case <-s.ctx.Done():
			return
		case sig = <-s.sigs:
		}
		if sig == nil {
			return // the connection was closed
		}
		if sig.Sender != busName || sig.Path != busPath || sig.Name != busInterface+".NameOwnerChanged" || len(sig.Body) != 3 {
			continue
		}
		name, _ := sig.Body[0].(string)
		newOwner, _ := sig.Body[2].(string)
		if !strings.HasPrefix(name, ":") || newOwner != "" {
			continue
		}
		s.forgetPeer(name)
	}
}

func (s *Server) forgetPeer(sender string) {
	s.mu.Lock()
	delete(s.peers, sender)
	calls := s.inflight[sender]
	delete(s.inflight, sender)
	s.mu.Unlock()
	for _, cancel := range calls {
		cancel()
	}
}

// beginCall makes the context of one call from sender: cancelled when the
// sender leaves the bus, the server closes, or done is called.
func (s *Server) beginCall(sender string) (ctx context.Context, done func()) {
	ctx, cancel := context.WithCancel(s.ctx)
	s.mu.Lock()
	id := s.nextCall
	s.nextCall++
	calls := s.inflight[sender]
	if calls == nil {
		calls = make(map[uint64]context.CancelFunc)
		s.inflight[sender] = calls
	}
	calls[id] = cancel
	s.mu.Unlock()
	return ctx, func() {
		s.mu.Lock()
		if calls := s.inflight[sender]; calls != nil {
			delete(calls, id)
			if len(calls) == 0 {
				delete(s.inflight, sender)
			}
		}
		s.mu.Unlock()
		cancel()
	}
}

// caller establishes who sent msg. Only the bus's word counts.
func (s *Server) caller(ctx context.Context, msg *dbus.Message) (service.Caller, error) {
	sender, _ := msg.Headers[dbus.FieldSender].Value().(string)
	if sender == "" {
		return service.Caller{}, api.Errorf(api.Permission, "call has no sender: cannot identify the caller")
	}
	s.mu.Lock()
	id, ok := s.peers[sender]
	conn := s.conn
	s.mu.Unlock()
	if !ok {
		var err error
		id, err = s.identify(ctx, conn, sender)
		if err != nil {
			return service.Caller{}, api.Wrap(api.Unknown, err, "cannot identify the caller: "+err.Error())
		}
		s.mu.Lock()
		if len(s.peers) >= maxCachedPeers {
			clear(s.peers)
		}
		s.peers[sender] = id
		s.mu.Unlock()
	}
	interactive := msg.Flags&dbus.FlagAllowInteractiveAuthorization != 0
	var authf apiserver.AuthorizeFunc
	if auth := s.auth; auth != nil {
		authf = func(ctx context.Context, action string) (bool, error) {
			return auth.Authorize(ctx, sender, action, interactive)
		}
	}
	return apiserver.NewCaller(id, authf), nil
}
