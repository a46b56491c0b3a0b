package dbusapi

import (
	"context"
	"fmt"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/porto-dev/porto/api"
	"github.com/porto-dev/porto/service"
)

// manager is the object exported at api.ManagerPath. Every exported method
// with a *dbus.Error result is a D-Bus method (godbus exports them by
// reflection), so this type has no other exported methods. The dbus.Message
// parameter does not appear on the wire: godbus fills it in.
type manager struct {
	s *Server
}

// getCell is one (sssss) element of Get's reply.
type getCell struct {
	Container, Key, Value, Error, Message string
}

// propInfo is one (ssbb) element of ListProperties' reply.
type propInfo struct {
	Name, Description string
	ReadOnly, Dynamic bool
}

// call runs one method: establishes the caller, rejects bad input (pre),
// runs f under a context cancelled when the sender leaves, and translates
// errors and panics.
func (m *manager) call(msg *dbus.Message, method string, pre error, f func(ctx context.Context, c service.Caller) error) (derr *dbus.Error) {
	s := m.s
	defer recoverCall(s.log, method, &derr)
	if derr := checkSignature(msg, method); derr != nil {
		return derr
	}
	if pre != nil {
		return toDBusError(s.log, method, pre)
	}
	sender, _ := msg.Headers[dbus.FieldSender].Value().(string)
	ctx, done := s.beginCall(sender)
	defer done()
	c, err := s.caller(ctx, msg)
	if err != nil {
		return toDBusError(s.log, method, err)
	}
	return toDBusError(s.log, method, f(ctx, c))
}

// anon runs a method that needs no caller identity.
func (m *manager) anon(method string, f func() error) (derr *dbus.Error) {
	defer recoverCall(m.s.log, method, &derr)
	return toDBusError(m.s.log, method, f())
}

func (m *manager) Create(msg dbus.Message, name string) *dbus.Error {
	return m.call(&msg, api.MethodCreate, m.s.checkStrings(name), func(ctx context.Context, c service.Caller) error {
		return m.s.b.Create(ctx, c, name)
	})
}

func (m *manager) Destroy(msg dbus.Message, name string) *dbus.Error {
	return m.call(&msg, api.MethodDestroy, m.s.checkStrings(name), func(ctx context.Context, c service.Caller) error {
		return m.s.b.Destroy(ctx, c, name)
	})
}

func (m *manager) Start(msg dbus.Message, name string) *dbus.Error {
	return m.call(&msg, api.MethodStart, m.s.checkStrings(name), func(ctx context.Context, c service.Caller) error {
		return m.s.b.Start(ctx, c, name)
	})
}

func (m *manager) Stop(msg dbus.Message, name string, timeoutMs int32) *dbus.Error {
	return m.call(&msg, api.MethodStop, m.s.checkStrings(name), func(ctx context.Context, c service.Caller) error {
		return m.s.b.Stop(ctx, c, name, msDuration(timeoutMs))
	})
}

func (m *manager) Kill(msg dbus.Message, name string, signal int32) *dbus.Error {
	return m.call(&msg, api.MethodKill, m.s.checkStrings(name), func(ctx context.Context, c service.Caller) error {
		return m.s.b.Kill(ctx, c, name, int(signal))
	})
}

func (m *manager) Pause(msg dbus.Message, name string) *dbus.Error {
	return m.call(&msg, api.MethodPause, m.s.checkStrings(name), func(ctx context.Context, c service.Caller) error {
		return m.s.b.Pause(ctx, c, name)
	})
}

func (m *manager) Resume(msg dbus.Message, name string) *dbus.Error {
	return m.call(&msg, api.MethodResume, m.s.checkStrings(name), func(ctx context.Context, c service.Caller) error {
		return m.s.b.Resume(ctx, c, name)
	})
}

func (m *manager) Wait(msg dbus.Message, names []string, timeoutMs int32) (string, *dbus.Error) {
	var got string
	derr := m.call(&msg, api.MethodWait, m.s.checkList("names", names), func(ctx context.Context, c service.Caller) error {
		var err error
		got, err = m.s.b.Wait(ctx, c, names, msDuration(timeoutMs))
		return err
	})
	return got, derr
}

func (m *manager) List(msg dbus.Message) ([]string, *dbus.Error) {
	var names []string
	derr := m.call(&msg, api.MethodList, nil, func(ctx context.Context, c service.Caller) error {
		var err error
		names, err = m.s.b.List(ctx, c)
		return err
	})
	if names == nil {
		names = []string{}
	}
	return names, derr
}

func (m *manager) Get(msg dbus.Message, names, keys []string) ([]getCell, *dbus.Error) {
	var cells []getCell
	derr := m.call(&msg, api.MethodGet, m.s.checkGet(names, keys), func(ctx context.Context, c service.Caller) error {
		// One cell at a time, so that the reply's size is known before
		// more is read: a reply over the bus's message limit would make
		// the bus daemon disconnect portod.
		cells = make([]getCell, 0, len(names)*len(keys))
		size := 0
		for _, n := range names {
			for _, k := range keys {
				if err := ctx.Err(); err != nil {
					return err
				}
				for _, r := range m.s.b.GetMulti(ctx, c, []string{n}, []string{k}) {
					cell := getCell{Container: r.Container, Key: r.Key, Value: r.Value}
					if r.Err != nil {
						de := toDBusError(m.s.log, api.MethodGet, r.Err)
						cell.Error = de.Name
						cell.Message = de.Error()
					}
					size += 5*8 + len(cell.Container) + len(cell.Key) + len(cell.Value) + len(cell.Error) + len(cell.Message)
					if size > m.s.opts.MaxReplyBytes {
						return api.Errorf(api.ResourceNotAvailable,
							"the values requested add up to more than %d bytes, the most one D-Bus reply may carry; ask for fewer at a time", m.s.opts.MaxReplyBytes)
					}
					cells = append(cells, cell)
				}
			}
		}
		return nil
	})
	if cells == nil || derr != nil {
		cells = []getCell{}
	}
	return cells, derr
}

func (m *manager) GetProperty(msg dbus.Message, name, key string) (string, *dbus.Error) {
	var value string
	derr := m.call(&msg, api.MethodGetProperty, m.s.checkStrings(name, key), func(ctx context.Context, c service.Caller) error {
		var err error
		value, err = m.s.b.Get(ctx, c, name, key)
		if err == nil && len(value) > m.s.opts.MaxReplyBytes {
			return api.Errorf(api.ResourceNotAvailable,
				"%s of %s is %d bytes, more than the %d one D-Bus reply may carry", key, name, len(value), m.s.opts.MaxReplyBytes)
		}
		return err
	})
	if derr != nil {
		value = ""
	}
	return value, derr
}

func (m *manager) SetProperty(msg dbus.Message, name, key, value string) *dbus.Error {
	return m.call(&msg, api.MethodSetProperty, m.s.checkStrings(name, key, value), func(ctx context.Context, c service.Caller) error {
		if err := m.s.b.Set(ctx, c, name, key, value); err != nil {
			return err
		}
		m.s.refreshObject(name) // Command etc. change without a state event
		return nil
	})
}

func (m *manager) ListProperties() ([]propInfo, *dbus.Error) {
	var out []propInfo
	derr := m.anon(api.MethodListProperties, func() error {
		ps := m.s.b.Properties()
		out = make([]propInfo, len(ps))
		for i, p := range ps {
			out[i] = propInfo{p.Name, p.Description, p.ReadOnly, p.Dynamic}
		}
		return nil
	})
	if out == nil {
		out = []propInfo{}
	}
	return out, derr
}

func (m *manager) Version() (string, *dbus.Error) {
	return api.Version, nil
}

// inSignatures are the input signatures of the manager's methods, from the
// introspection data.
var inSignatures = func() map[string]string {
	m := make(map[string]string)
	for _, meth := range managerIface.Methods {
		sig := ""
		for _, a := range meth.Args {
			if a.Direction == "in" {
				sig += a.Type
			}
		}
		m[meth.Name] = sig
	}
	return m
}()

// checkSignature refuses a call whose body does not have the method's exact
// signature. godbus alone is not enough: its Store converts convertible
// types (an int32 into a one-rune string, for one).
func checkSignature(msg *dbus.Message, method string) *dbus.Error {
	var got string
	if v, ok := msg.Headers[dbus.FieldSignature]; ok {
		sig, _ := v.Value().(dbus.Signature)
		got = sig.String()
	}
	want, ok := inSignatures[method]
	if !ok || got != want {
		return dbus.NewError("org.freedesktop.DBus.Error.InvalidArgs",
			[]any{fmt.Sprintf("%s takes arguments of signature %q, not %q", method, want, got)})
	}
	return nil
}

// msDuration converts a wire timeout: < 0 means "default/none" (-1).
func msDuration(ms int32) time.Duration {
	if ms < 0 {
		return -1
	}
	return time.Duration(ms) * time.Millisecond
}

// checkStrings refuses oversized string arguments before they reach the
// service.
func (s *Server) checkStrings(args ...string) error {
	for _, a := range args {
		if len(a) > s.opts.MaxStringLen {
			return api.Errorf(api.InvalidValue, "argument is too long: %d bytes (at most %d)", len(a), s.opts.MaxStringLen)
		}
	}
	return nil
}

// checkList refuses oversized array arguments.
func (s *Server) checkList(what string, l []string) error {
	if len(l) > s.opts.MaxListLen {
		return api.Errorf(api.InvalidValue, "too many %s: %d (at most %d)", what, len(l), s.opts.MaxListLen)
	}
	return s.checkStrings(l...)
}

func (s *Server) checkGet(names, keys []string) error {
	if err := s.checkList("containers", names); err != nil {
		return err
	}
	if err := s.checkList("keys", keys); err != nil {
		return err
	}
	if len(names)*len(keys) > s.opts.MaxGetCells {
		return api.Errorf(api.InvalidValue, "too many values requested: %d containers x %d keys (at most %d values)",
			len(names), len(keys), s.opts.MaxGetCells)
	}
	return nil
}
