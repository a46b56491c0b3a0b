package dbusapi

import (
	"context"
	"fmt"

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

// call runs one method: checks the signature, establishes the caller, runs
// f (an apiserver.API method, which checks the input) under a context
// cancelled when the sender leaves, and translates errors and panics.
func (m *manager) call(msg *dbus.Message, method string, f func(ctx context.Context, c service.Caller) error) (derr *dbus.Error) {
	s := m.s
	defer recoverCall(s.log, method, &derr)
	if derr := checkSignature(msg, method); derr != nil {
		return derr
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
	return m.call(&msg, api.MethodCreate, func(ctx context.Context, c service.Caller) error {
		return m.s.api.Create(ctx, c, name)
	})
}

func (m *manager) Destroy(msg dbus.Message, name string) *dbus.Error {
	return m.call(&msg, api.MethodDestroy, func(ctx context.Context, c service.Caller) error {
		return m.s.api.Destroy(ctx, c, name)
	})
}

func (m *manager) Start(msg dbus.Message, name string) *dbus.Error {
	return m.call(&msg, api.MethodStart, func(ctx context.Context, c service.Caller) error {
		return m.s.api.Start(ctx, c, name)
	})
}

func (m *manager) Stop(msg dbus.Message, name string, timeoutMs int32) *dbus.Error {
	return m.call(&msg, api.MethodStop, func(ctx context.Context, c service.Caller) error {
		return m.s.api.Stop(ctx, c, name, int64(timeoutMs))
	})
}

func (m *manager) Kill(msg dbus.Message, name string, signal int32) *dbus.Error {
	return m.call(&msg, api.MethodKill, func(ctx context.Context, c service.Caller) error {
		return m.s.api.Kill(ctx, c, name, int64(signal))
	})
}

func (m *manager) Pause(msg dbus.Message, name string) *dbus.Error {
	return m.call(&msg, api.MethodPause, func(ctx context.Context, c service.Caller) error {
		return m.s.api.Pause(ctx, c, name)
	})
}

func (m *manager) Resume(msg dbus.Message, name string) *dbus.Error {
	return m.call(&msg, api.MethodResume, func(ctx context.Context, c service.Caller) error {
		return m.s.api.Resume(ctx, c, name)
	})
}

func (m *manager) Wait(msg dbus.Message, names []string, timeoutMs int32) (string, *dbus.Error) {
	var got string
	derr := m.call(&msg, api.MethodWait, func(ctx context.Context, c service.Caller) error {
		var err error
		got, err = m.s.api.Wait(ctx, c, names, int64(timeoutMs))
		return err
	})
	return got, derr
}

func (m *manager) List(msg dbus.Message) ([]string, *dbus.Error) {
	var names []string
	derr := m.call(&msg, api.MethodList, func(ctx context.Context, c service.Caller) error {
		var err error
		names, err = m.s.api.List(ctx, c)
		return err
	})
	if names == nil {
		names = []string{}
	}
	return names, derr
}

func (m *manager) Get(msg dbus.Message, names, keys []string) ([]getCell, *dbus.Error) {
	var cells []getCell
	derr := m.call(&msg, api.MethodGet, func(ctx context.Context, c service.Caller) error {
		res, err := m.s.api.Get(ctx, c, names, keys)
		if err != nil {
			return err
		}
		cells = make([]getCell, len(res))
		for i, r := range res {
			cells[i] = getCell{Container: r.Container, Key: r.Key, Value: r.Value}
			if r.Code != api.Success {
				cells[i].Error, cells[i].Message = r.Code.DBusName(), r.Message
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
	derr := m.call(&msg, api.MethodGetProperty, func(ctx context.Context, c service.Caller) error {
		var err error
		value, err = m.s.api.GetProperty(ctx, c, name, key)
		return err
	})
	if derr != nil {
		value = ""
	}
	return value, derr
}

func (m *manager) SetProperty(msg dbus.Message, name, key, value string) *dbus.Error {
	return m.call(&msg, api.MethodSetProperty, func(ctx context.Context, c service.Caller) error {
		if err := m.s.api.SetProperty(ctx, c, name, key, value); err != nil {
			return err
		}
		m.s.refreshObject(name) // Command etc. change without a state event
		return nil
	})
}

func (m *manager) ListProperties() ([]propInfo, *dbus.Error) {
	var out []propInfo
	derr := m.anon(api.MethodListProperties, func() error {
		ps := m.s.api.ListProperties()
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
	return m.s.api.Version(), nil
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
