package dbusapi

import (
	"sync"

	"github.com/godbus/dbus/v5"
	"github.com/godbus/dbus/v5/introspect"

	"github.com/porto-dev/porto/api"
	"github.com/porto-dev/porto/service"
)

const (
	introspectableInterface = "org.freedesktop.DBus.Introspectable"
	propertiesInterface     = "org.freedesktop.DBus.Properties"
	// destroyedState is the state StateChanged reports for a destroyed
	// container (its object is gone by then).
	destroyedState = string(api.StateDestroyed)
)

type introspectable = introspect.Introspectable

// containerObject is the org.freedesktop.DBus.Properties implementation of
// one container's object. Its only exported methods are the D-Bus ones.
type containerObject struct {
	conn *dbus.Conn
	path dbus.ObjectPath
	s    *Server

	mu   sync.RWMutex
	info service.Info
}

func propValues(i service.Info) map[string]any {
	return map[string]any{
		api.PropName:       i.Name,
		api.PropState:      string(i.State),
		api.PropParent:     i.Parent,
		api.PropRootPid:    i.RootPid,
		api.PropExitStatus: i.ExitStatus,
		api.PropOwnerUser:  i.OwnerUser,
		api.PropCommand:    i.Command,
	}
}

func checkIface(iface string) *dbus.Error {
	if iface != "" && iface != api.ContainerInterface {
		return dbus.NewError("org.freedesktop.DBus.Error.UnknownInterface",
			[]any{"object has no properties of interface " + iface})
	}
	return nil
}

// Get implements org.freedesktop.DBus.Properties.Get.
func (o *containerObject) Get(iface, property string) (v dbus.Variant, derr *dbus.Error) {
	defer recoverCall(o.s.log, "Properties.Get", &derr)
	if derr := checkIface(iface); derr != nil {
		return dbus.Variant{}, derr
	}
	o.mu.RLock()
	val, ok := propValues(o.info)[property]
	o.mu.RUnlock()
	if !ok {
		return dbus.Variant{}, dbus.NewError("org.freedesktop.DBus.Error.UnknownProperty",
			[]any{"no property " + property + " in " + api.ContainerInterface})
	}
	return dbus.MakeVariant(val), nil
}

// GetAll implements org.freedesktop.DBus.Properties.GetAll.
func (o *containerObject) GetAll(iface string) (m map[string]dbus.Variant, derr *dbus.Error) {
	defer recoverCall(o.s.log, "Properties.GetAll", &derr)
	if derr := checkIface(iface); derr != nil {
		return nil, derr
	}
	o.mu.RLock()
	vals := propValues(o.info)
	o.mu.RUnlock()
	m = make(map[string]dbus.Variant, len(vals))
	for k, v := range vals {
		m[k] = dbus.MakeVariant(v)
	}
	return m, nil
}

// Set implements org.freedesktop.DBus.Properties.Set: every property is
// read-only (change containers with the manager's SetProperty).
func (o *containerObject) Set(iface, property string, _ dbus.Variant) *dbus.Error {
	if derr := checkIface(iface); derr != nil {
		return derr
	}
	if _, ok := propValues(service.Info{})[property]; !ok {
		return dbus.NewError("org.freedesktop.DBus.Error.UnknownProperty",
			[]any{"no property " + property + " in " + api.ContainerInterface})
	}
	return dbus.NewError("org.freedesktop.DBus.Error.PropertyReadOnly",
		[]any{"property " + property + " is read-only; use " + api.ManagerInterface + "." + api.MethodSetProperty})
}

// update stores info and emits one PropertiesChanged with what changed.
// It reports whether the state changed.
func (o *containerObject) update(info service.Info) (stateChanged bool) {
	o.mu.Lock()
	old := propValues(o.info)
	o.info = info
	o.mu.Unlock()
	changed := map[string]dbus.Variant{}
	for k, v := range propValues(info) {
		if old[k] != v {
			changed[k] = dbus.MakeVariant(v)
		}
	}
	if len(changed) == 0 {
		return false
	}
	if err := o.conn.Emit(o.path, propertiesInterface+".PropertiesChanged", api.ContainerInterface, changed, []string{}); err != nil {
		o.s.log.Debug("emit PropertiesChanged", "path", o.path, "err", err)
	}
	_, stateChanged = changed[api.PropState]
	return stateChanged
}

func (o *containerObject) unexport() {
	_ = o.conn.Export(nil, o.path, propertiesInterface)
	_ = o.conn.Export(nil, o.path, introspectableInterface)
}

// exportContainer publishes a new object for info. objMu must be held.
func (s *Server) exportContainer(info service.Info) (*containerObject, error) {
	o := &containerObject{conn: s.conn, path: dbus.ObjectPath(api.ContainerPath(info.Name)), s: s, info: info}
	if err := s.conn.Export(o, o.path, propertiesInterface); err != nil {
		return nil, err
	}
	if err := s.conn.Export(introspectable(containerXML), o.path, introspectableInterface); err != nil {
		o.unexport()
		return nil, err
	}
	s.objs[info.Name] = o
	return o, nil
}

// emitStateChanged sends the manager's StateChanged signal.
func (s *Server) emitStateChanged(name, state string) {
	path := dbus.ObjectPath(api.ContainerPath(name))
	if err := s.conn.Emit(api.ManagerPath, api.ManagerInterface+"."+api.SignalStateChanged, name, state, path); err != nil {
		s.log.Debug("emit StateChanged", "name", name, "err", err)
	}
}

// applyEvent brings one container's object up to date and announces the
// change.
func (s *Server) applyEvent(ev service.Event) {
	s.objMu.Lock()
	defer s.objMu.Unlock()
	if ev.Destroyed {
		s.removeLocked(ev.Name)
		return
	}
	info, err := s.b.Info(ev.Name)
	if err != nil {
		if api.CodeOf(err) == api.ContainerDoesNotExist {
			s.removeLocked(ev.Name)
		} else {
			s.log.Warn("container info for D-Bus object", "name", ev.Name, "err", err)
		}
		return
	}
	if o := s.objs[ev.Name]; o != nil {
		o.update(info)
	} else if _, err := s.exportContainer(info); err != nil {
		s.log.Warn("export container object", "name", ev.Name, "err", err)
	}
	state := string(ev.State)
	if state == "" {
		state = string(info.State)
	}
	s.emitStateChanged(ev.Name, state)
}

// refreshObject updates name's object from the service, if it has one.
func (s *Server) refreshObject(name string) {
	info, err := s.b.Info(name)
	if err != nil {
		return // destroyed meanwhile: its event follows
	}
	s.objMu.Lock()
	defer s.objMu.Unlock()
	if o := s.objs[name]; o != nil {
		o.update(info) // a state change is announced by its own event
	}
}

func (s *Server) removeLocked(name string) {
	o := s.objs[name]
	if o == nil {
		return
	}
	o.unexport()
	delete(s.objs, name)
	s.emitStateChanged(name, destroyedState)
}

// resync makes the set of container objects match the service's list,
// announcing any difference it finds (events may have been dropped).
func (s *Server) resync() error {
	names, err := s.b.List(s.ctx, service.Root)
	if err != nil {
		return err
	}
	s.objMu.Lock()
	defer s.objMu.Unlock()
	listed := make(map[string]bool, len(names))
	for _, name := range names {
		listed[name] = true
		info, err := s.b.Info(name)
		if err != nil {
			continue // destroyed meanwhile: its event follows
		}
		o := s.objs[name]
		if o == nil {
			if _, err := s.exportContainer(info); err != nil {
				s.log.Warn("export container object", "name", name, "err", err)
			}
			continue
		}
		if o.update(info) {
			s.emitStateChanged(name, string(info.State))
		}
	}
	for name := range s.objs {
		if !listed[name] {
			s.removeLocked(name)
		}
	}
	return nil
}
