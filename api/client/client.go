package client

import (
	"context"
	"errors"
	"math"
	"os"
	"strings"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/porto-dev/porto/api"
)

// Client talks to porto over its Varlink socket or over one D-Bus
// connection. Its methods are the same either way and safe for concurrent
// use.
type Client struct {
	conn  *dbus.Conn // D-Bus; nil over Varlink
	owned bool
	flags dbus.Flags

	vl          *varlinkTransport // Varlink; nil over D-Bus
	direct      bool              // WithDirectIO
	interactive bool
	transport   string // what New was asked for: TransportAuto, ...
	socket      string // Varlink socket path New dials
}

// Transports for WithTransport.
const (
	TransportAuto    = "auto"
	TransportVarlink = "varlink"
	TransportDBus    = "dbus"
)

// Option configures a Client.
type Option func(*Client)

// WithInteractive sets the ALLOW_INTERACTIVE_AUTHORIZATION flag on every
// call, so polkit may ask the user (through an agent such as pkttyagent)
// instead of refusing. portoctl sets it when on a terminal.
func WithInteractive(on bool) Option {
	return func(c *Client) {
		c.interactive = on
		if on {
			c.flags |= dbus.FlagAllowInteractiveAuthorization
		} else {
			c.flags &^= dbus.FlagAllowInteractiveAuthorization
		}
	}
}

// WithTransport chooses how New reaches porto: TransportVarlink (its
// socket only), TransportDBus (the system bus only) or TransportAuto (the
// default: the socket when it can be reached, else the bus). "" is auto.
func WithTransport(t string) Option {
	return func(c *Client) { c.transport = t }
}

// WithDirectIO makes the Varlink transport read and write its socket with
// plain blocking system calls instead of through Go's network poller: a
// call is then one write and one read that sleeps in the kernel until
// porto answers, without the poller's setup (an epoll instance, an
// eventfd, registrations) or its wake-up. That is cheaper for a
// short-lived process making a few calls one after the other (portoctl);
// a process with many concurrent calls should keep the default, as each
// call in progress then holds an OS thread. It has no effect over D-Bus.
func WithDirectIO(on bool) Option {
	return func(c *Client) { c.direct = on }
}

// WithVarlinkSocket makes New dial path instead of $PORTO_VARLINK_SOCKET
// or DefaultVarlinkSocket.
func WithVarlinkSocket(path string) Option {
	return func(c *Client) { c.socket = path }
}

// New connects to porto. By default (TransportAuto) it dials the Varlink
// socket ($PORTO_VARLINK_SOCKET, else DefaultVarlinkSocket) and falls back
// to the system bus ($DBUS_SYSTEM_BUS_ADDRESS when set) if the socket
// cannot be reached. When $DBUS_SYSTEM_BUS_ADDRESS names a bus and neither
// $PORTO_VARLINK_SOCKET nor WithVarlinkSocket names a socket, auto uses
// that bus: the default socket may belong to another porto than the one
// on the bus asked for. Either way New makes one connection and no round
// trip beyond the bus's Hello.
func New(opts ...Option) (*Client, error) {
	c := &Client{}
	for _, o := range opts {
		o(c)
	}
	socket, explicit := c.socket, c.socket != ""
	if socket == "" {
		socket, explicit = os.Getenv(VarlinkSocketEnv), os.Getenv(VarlinkSocketEnv) != ""
	}
	if socket == "" {
		socket = DefaultVarlinkSocket
	}
	switch c.transport {
	case TransportVarlink:
		return c, c.useVarlink(socket)
	case TransportDBus:
		return c, c.useDBus()
	case TransportAuto, "":
		if explicit || os.Getenv("DBUS_SYSTEM_BUS_ADDRESS") == "" {
			if err := c.useVarlink(socket); err == nil {
				return c, nil
			}
		}
		return c, c.useDBus()
	}
	return nil, api.Errorf(api.InvalidValue, "unknown transport %q (want %s, %s or %s)", c.transport, TransportVarlink, TransportDBus, TransportAuto)
}

func (c *Client) useVarlink(socket string) error {
	vl, err := newVarlinkTransport(context.Background(), socket, c.direct)
	if err != nil {
		return varlinkDialError(socket, err)
	}
	c.vl, c.socket = vl, socket
	return nil
}

func (c *Client) useDBus() error {
	conn, err := dbus.ConnectSystemBus()
	if err != nil {
		addr := os.Getenv("DBUS_SYSTEM_BUS_ADDRESS")
		if addr == "" {
			addr = "unix:path=/var/run/dbus/system_bus_socket"
		}
		return &api.Error{Code: api.Unknown, Msg: "cannot connect to the system bus at " + addr + ": " + err.Error(), Err: err}
	}
	c.conn, c.owned = conn, true
	return nil
}

// NewVarlink connects to porto's Varlink socket at path only.
func NewVarlink(path string, opts ...Option) (*Client, error) {
	return New(append(opts, WithTransport(TransportVarlink), WithVarlinkSocket(path))...)
}

// Transport is TransportVarlink or TransportDBus: how this client reaches
// porto.
func (c *Client) Transport() string {
	if c.vl != nil {
		return TransportVarlink
	}
	return TransportDBus
}

// NewWithConn uses an existing connection, which Close leaves open.
func NewWithConn(conn *dbus.Conn, opts ...Option) *Client {
	c := &Client{conn: conn}
	for _, o := range opts {
		o(c)
	}
	return c
}

// Close closes the connection if New opened it.
func (c *Client) Close() error {
	if c.vl != nil {
		return c.vl.close()
	}
	if c.owned {
		return c.conn.Close()
	}
	return nil
}

// call sends one method call and waits for its reply. It builds the
// message itself because godbus's BusObject.Call drops the
// ALLOW_INTERACTIVE_AUTHORIZATION flag.
func (c *Client) call(ctx context.Context, method string, args ...any) *dbus.Call {
	msg := &dbus.Message{
		Type:  dbus.TypeMethodCall,
		Flags: c.flags,
		Headers: map[dbus.HeaderField]dbus.Variant{
			dbus.FieldDestination: dbus.MakeVariant(api.BusName),
			dbus.FieldPath:        dbus.MakeVariant(dbus.ObjectPath(api.ManagerPath)),
			dbus.FieldInterface:   dbus.MakeVariant(api.ManagerInterface),
			dbus.FieldMember:      dbus.MakeVariant(method),
		},
		Body: args,
	}
	if len(args) > 0 {
		msg.Headers[dbus.FieldSignature] = dbus.MakeVariant(dbus.SignatureOf(args...))
	}
	return <-c.conn.SendWithContext(ctx, msg, make(chan *dbus.Call, 1)).Done
}

// do calls method and stores the reply into rets.
func (c *Client) do(ctx context.Context, method string, args []any, rets ...any) error {
	call := c.call(ctx, method, args...)
	if call.Err != nil {
		return toAPIError(call.Err)
	}
	if len(rets) > 0 {
		if err := call.Store(rets...); err != nil {
			return toAPIError(err)
		}
	}
	return nil
}

// nameCall calls a method that takes one container name.
func (c *Client) nameCall(ctx context.Context, method, name string) error {
	if c.vl != nil {
		return c.vl.call(ctx, method, func(w *jwriter) {
			w.str("name", name)
			w.flag("interactive", c.interactive)
		}, nil)
	}
	return c.do(ctx, method, []any{name})
}

// Create creates a stopped container.
func (c *Client) Create(ctx context.Context, name string) error {
	return c.nameCall(ctx, api.MethodCreate, name)
}

// Destroy stops and removes a container and its subtree.
func (c *Client) Destroy(ctx context.Context, name string) error {
	return c.nameCall(ctx, api.MethodDestroy, name)
}

// Start starts a container.
func (c *Client) Start(ctx context.Context, name string) error {
	return c.nameCall(ctx, api.MethodStart, name)
}

// Stop stops a container; timeout < 0 means the daemon's default.
func (c *Client) Stop(ctx context.Context, name string, timeout time.Duration) error {
	if c.vl != nil {
		return c.vl.call(ctx, api.MethodStop, func(w *jwriter) {
			w.str("name", name)
			w.int("timeout_ms", int64(durationMs(timeout)))
			w.flag("interactive", c.interactive)
		}, nil)
	}
	return c.do(ctx, api.MethodStop, []any{name, durationMs(timeout)})
}

// Kill sends signal sig to a running container.
func (c *Client) Kill(ctx context.Context, name string, sig int) error {
	if sig < math.MinInt32 || sig > math.MaxInt32 {
		return api.Errorf(api.InvalidValue, "invalid signal %d", sig)
	}
	if c.vl != nil {
		return c.vl.call(ctx, api.MethodKill, func(w *jwriter) {
			w.str("name", name)
			w.int("signal", int64(sig))
			w.flag("interactive", c.interactive)
		}, nil)
	}
	return c.do(ctx, api.MethodKill, []any{name, int32(sig)})
}

// Pause freezes a container and its subtree.
func (c *Client) Pause(ctx context.Context, name string) error {
	return c.nameCall(ctx, api.MethodPause, name)
}

// Resume thaws a paused container.
func (c *Client) Resume(ctx context.Context, name string) error {
	return c.nameCall(ctx, api.MethodResume, name)
}

// Wait returns the first of names that is dead or stopped, or "" when
// timeout passes first; timeout < 0 waits forever (or until ctx is done).
func (c *Client) Wait(ctx context.Context, names []string, timeout time.Duration) (string, error) {
	var got string
	if c.vl != nil {
		err := c.vl.call(ctx, api.MethodWait, func(w *jwriter) {
			w.strs("names", names)
			w.int("timeout_ms", int64(durationMs(timeout)))
			w.flag("interactive", c.interactive)
		}, oneString("name", &got))
		return got, err
	}
	err := c.do(ctx, api.MethodWait, []any{nonNil(names), durationMs(timeout)}, &got)
	return got, err
}

// List returns the names of every container.
func (c *Client) List(ctx context.Context) ([]string, error) {
	var names []string
	if c.vl != nil {
		err := c.vl.call(ctx, api.MethodList, func(w *jwriter) {
			w.flag("interactive", c.interactive)
		}, func(r *jreader) {
			r.object(func(key []byte) {
				if string(key) == "names" {
					names = r.strings()
				} else {
					r.skip()
				}
			})
		})
		return names, err
	}
	err := c.do(ctx, api.MethodList, nil, &names)
	return names, err
}

// Get reads several keys of several containers in one call; each cell
// carries its own error.
func (c *Client) Get(ctx context.Context, names, keys []string) ([]api.GetResult, error) {
	if c.vl != nil {
		return c.vlGet(ctx, names, keys)
	}
	var cells []struct {
		Container, Key, Value, Error, Message string
	}
	if err := c.do(ctx, api.MethodGet, []any{nonNil(names), nonNil(keys)}, &cells); err != nil {
		return nil, err
	}
	out := make([]api.GetResult, len(cells))
	for i, cl := range cells {
		out[i] = api.GetResult{Container: cl.Container, Key: cl.Key, Value: cl.Value}
		if cl.Error != "" {
			out[i].Err = toAPIError(dbus.Error{Name: cl.Error, Body: []any{cl.Message}})
		}
	}
	return out, nil
}

// vlGet is Get over Varlink: the cells are decoded straight into the
// results, {"values":[{"container":C,"key":K,"value":V,"error":E,"message":M}...]}.
func (c *Client) vlGet(ctx context.Context, names, keys []string) ([]api.GetResult, error) {
	out := make([]api.GetResult, 0, len(names)*len(keys))
	var cts, words interner
	var last *api.Error // the last cell's error, from lastName and lastMsg
	var lastName, lastMsg string
	err := c.vl.call(ctx, api.MethodGet, func(w *jwriter) {
		w.strs("names", names)
		w.strs("keys", keys)
		w.flag("interactive", c.interactive)
	}, func(r *jreader) {
		r.object(func(key []byte) {
			if string(key) != "values" {
				r.skip()
				return
			}
			out = out[:0] // a repeated member replaces the first, as in encoding/json
			r.array(func() {
				var res api.GetResult
				var errName, msg string
				r.object(func(key []byte) {
					switch string(key) {
					case "container":
						res.Container = cts.str(r)
					case "key":
						res.Key = words.str(r)
					case "value":
						res.Value = words.str(r)
					case "error":
						errName = words.str(r)
					case "message":
						msg = words.str(r)
					default:
						r.skip()
					}
				})
				if errName != "" {
					// Cells that fail alike (time of every stopped
					// container) share one error.
					if last != nil && lastName == errName && lastMsg == msg {
						res.Err = last
					} else {
						res.Err = varlinkErrorMsg(errName, msg, "")
						last, lastName, lastMsg = res.Err, errName, msg
					}
				}
				out = append(out, res)
			})
		})
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// GetProperty reads one property or datum (raw).
func (c *Client) GetProperty(ctx context.Context, name, key string) (string, error) {
	var v string
	if c.vl != nil {
		err := c.vl.call(ctx, api.MethodGetProperty, func(w *jwriter) {
			w.str("name", name)
			w.str("key", key)
			w.flag("interactive", c.interactive)
		}, oneString("value", &v))
		return v, err
	}
	err := c.do(ctx, api.MethodGetProperty, []any{name, key}, &v)
	return v, err
}

// SetProperty sets one property.
func (c *Client) SetProperty(ctx context.Context, name, key, value string) error {
	if c.vl != nil {
		return c.vl.call(ctx, api.MethodSetProperty, func(w *jwriter) {
			w.str("name", name)
			w.str("key", key)
			w.str("value", value)
			w.flag("interactive", c.interactive)
		}, nil)
	}
	return c.do(ctx, api.MethodSetProperty, []any{name, key, value})
}

// ListProperties describes every property and datum.
func (c *Client) ListProperties(ctx context.Context) ([]api.PropertyInfo, error) {
	type prop struct {
		Name, Description string
		ReadOnly, Dynamic bool
	}
	var ps []prop
	if c.vl != nil {
		err := c.vl.call(ctx, api.MethodListProperties, nil, func(r *jreader) {
			r.object(func(key []byte) {
				if string(key) != "properties" {
					r.skip()
					return
				}
				ps = ps[:0]
				r.array(func() {
					var p prop
					r.object(func(key []byte) {
						switch string(key) {
						case "name":
							p.Name = r.str()
						case "description":
							p.Description = r.str()
						case "read_only":
							p.ReadOnly = r.boolean()
						case "dynamic":
							p.Dynamic = r.boolean()
						default:
							r.skip()
						}
					})
					ps = append(ps, p)
				})
			})
		})
		if err != nil {
			return nil, err
		}
	} else {
		var dps []struct {
			Name, Description string
			ReadOnly, Dynamic bool
		}
		if err := c.do(ctx, api.MethodListProperties, nil, &dps); err != nil {
			return nil, err
		}
		for _, p := range dps {
			ps = append(ps, prop{p.Name, p.Description, p.ReadOnly, p.Dynamic})
		}
	}
	out := make([]api.PropertyInfo, len(ps))
	for i, p := range ps {
		out[i] = api.PropertyInfo{Name: p.Name, Description: p.Description, ReadOnly: p.ReadOnly, Dynamic: p.Dynamic}
	}
	return out, nil
}

// Version returns the daemon's version.
func (c *Client) Version(ctx context.Context) (string, error) {
	var v string
	if c.vl != nil {
		err := c.vl.call(ctx, api.MethodVersion, nil, oneString("version", &v))
		return v, err
	}
	err := c.do(ctx, api.MethodVersion, nil, &v)
	return v, err
}

// oneString decodes parameters {"key": "value"} into *v.
func oneString(key string, v *string) func(*jreader) {
	return func(r *jreader) {
		r.object(func(k []byte) {
			if string(k) == key {
				*v = r.str()
			} else {
				r.skip()
			}
		})
	}
}

// StateChange is one StateChanged signal.
type StateChange struct {
	Name  string
	State api.State // api.StateDestroyed when the container is gone
	Path  dbus.ObjectPath
	// Destroyed is State == api.StateDestroyed.
	Destroyed bool
}

// Watch delivers porto's state changes (D-Bus's StateChanged signals, or
// Varlink's Watch replies) until ctx is done or the connection ends; then
// the channel is closed. Changes after Watch returns are not missed. Over
// D-Bus, a consumer that falls far behind loses order, not signals (godbus
// queues them); over Varlink, the daemon closes the stream of one that
// does not read for its write timeout.
func (c *Client) Watch(ctx context.Context) (<-chan StateChange, error) {
	if c.vl != nil {
		return c.vl.watch(ctx)
	}
	match := []dbus.MatchOption{
		dbus.WithMatchSender(api.BusName),
		dbus.WithMatchObjectPath(api.ManagerPath),
		dbus.WithMatchInterface(api.ManagerInterface),
		dbus.WithMatchMember(api.SignalStateChanged),
	}
	if err := c.conn.AddMatchSignalContext(ctx, match...); err != nil {
		return nil, toAPIError(err)
	}
	sigs := make(chan *dbus.Signal, 256)
	c.conn.Signal(sigs)
	out := make(chan StateChange, 64)
	go func() {
		defer close(out)
		defer func() {
			c.conn.RemoveSignal(sigs)
			_ = c.conn.RemoveMatchSignal(match...)
		}()
		for {
			var sig *dbus.Signal
			select {
			case <-ctx.Done():
				return
			case sig = <-sigs:
			}
			if sig == nil {
				return // connection closed
			}
			if sig.Path != api.ManagerPath || sig.Name != api.ManagerInterface+"."+api.SignalStateChanged {
				continue
			}
			var sc StateChange
			var state string
			if err := dbus.Store(sig.Body, &sc.Name, &state, &sc.Path); err != nil {
				continue
			}
			sc.State = api.State(state)
			sc.Destroyed = sc.State == api.StateDestroyed
			select {
			case out <- sc:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out, nil
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// durationMs encodes a timeout for the wire: < 0 is -1, else milliseconds
// capped to int32.
func durationMs(d time.Duration) int32 {
	if d < 0 {
		return -1
	}
	ms := d.Milliseconds()
	if ms > math.MaxInt32 {
		return math.MaxInt32
	}
	return int32(ms)
}

// toAPIError is the one place where a D-Bus (or transport) error becomes
// an *api.Error. org.porto.Error.<Code> maps to its Code with the reply's
// message; the bus's own errors map to the nearest class with a clear
// message (the D-Bus error is kept as the cause); anything else is Unknown.
func toAPIError(err error) *api.Error {
	if err == nil {
		return nil
	}
	var ae *api.Error
	if errors.As(err, &ae) {
		return ae
	}
	var de dbus.Error
	if pe := (*dbus.Error)(nil); errors.As(err, &pe) && pe != nil {
		de = *pe
	} else if !errors.As(err, &de) {
		msg := err.Error()
		switch {
		case errors.Is(err, context.DeadlineExceeded):
			msg = "timed out waiting for porto"
		case errors.Is(err, context.Canceled):
			msg = "call cancelled"
		case errors.Is(err, dbus.ErrClosed):
			msg = "the connection to the system bus is closed"
		}
		return &api.Error{Code: api.Unknown, Msg: msg, Err: err}
	}
	msg := ""
	if len(de.Body) > 0 {
		msg, _ = de.Body[0].(string)
	}
	if code, ok := api.CodeByDBusName(de.Name); ok {
		return &api.Error{Code: code, Msg: msg}
	}
	if strings.HasPrefix(de.Name, api.ErrorPrefix) {
		// A class this client does not know (a newer daemon).
		return &api.Error{Code: api.Unknown, Msg: strings.TrimPrefix(de.Name, api.ErrorPrefix) + ": " + msg, Err: de}
	}
	code := api.Unknown
	switch de.Name {
	case "org.freedesktop.DBus.Error.ServiceUnknown",
		"org.freedesktop.DBus.Error.NameHasNoOwner",
		"org.freedesktop.DBus.Error.Spawn.ServiceNotFound":
		msg = "porto is not running (nobody owns " + api.BusName + " on the system bus)"
	case "org.freedesktop.DBus.Error.Spawn.Failed",
		"org.freedesktop.DBus.Error.Spawn.ChildExited",
		"org.freedesktop.DBus.Error.Spawn.ChildSignaled":
		msg = "porto is not running and could not be started: " + msg
	case "org.freedesktop.DBus.Error.NoReply":
		msg = "porto did not reply (it timed out or exited)"
	case "org.freedesktop.DBus.Error.Timeout", "org.freedesktop.DBus.Error.TimedOut":
		msg = "timed out waiting for porto"
	case "org.freedesktop.DBus.Error.Disconnected", "org.freedesktop.DBus.Error.NoServer":
		msg = "lost the connection to the system bus"
	case "org.freedesktop.DBus.Error.AccessDenied",
		"org.freedesktop.DBus.Error.InteractiveAuthorizationRequired",
		"org.freedesktop.DBus.Error.AuthFailed":
		code = api.Permission
	case "org.freedesktop.DBus.Error.UnknownMethod",
		"org.freedesktop.DBus.Error.UnknownInterface",
		"org.freedesktop.DBus.Error.UnknownObject",
		"org.freedesktop.DBus.Error.InvalidArgs",
		"org.freedesktop.DBus.Error.InvalidSignature",
		"org.freedesktop.DBus.Error.NotSupported":
		code = api.InvalidMethod
	case "org.freedesktop.DBus.Error.LimitsExceeded",
		"org.freedesktop.DBus.Error.NoMemory":
		code = api.ResourceNotAvailable
	}
	if msg == "" {
		msg = de.Name
	}
	return &api.Error{Code: code, Msg: msg, Err: de}
}

func objectPath(p string) dbus.ObjectPath { return dbus.ObjectPath(p) }
