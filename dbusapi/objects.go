package dbusapi

import (
	"slices"
	"strings"

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
	// maxInterned bounds the owner-name intern table (it is cleared when
	// full).
	maxInterned = 1024
)

type introspectable = introspect.Introspectable

// Container objects.
//
// Every container has an object at api.ContainerPath(name), but no godbus
// object is exported per container: one handler for the whole
// api.ContainerPathPrefix subtree (containerProperties, containerIntrospect)
// finds the container from the call's object path. What is kept per
// container is containerProps, the values of the object's properties as
// last announced: PropertiesChanged carries only what changed, so the
// previous values are needed, and Properties.Get answers from them so that
// a client sees the values its signals told it about.
//
// The subtree handler is exported while at least one container has an
// object, so that, as with one godbus object per container, the
// introspection of /org/porto lists a "container" child only then, and a
// path that names no container answers like a missing object:
// UnknownInterface for Properties calls (UnknownMethod without an
// interface), an empty node for Introspect.

// containerProps is what the D-Bus side keeps of one container (its name is
// the key of Server.props). The strings share memory with the service's.
type containerProps struct {
	state      api.State
	parent     string
	owner      string
	command    string
	rootPid    int32
	exitStatus int32
}

func propsOf(i service.Info) containerProps {
	return containerProps{state: i.State, parent: i.Parent, owner: i.OwnerUser, command: i.Command,
		rootPid: i.RootPid, exitStatus: i.ExitStatus}
}

// propNames are the properties of api.ContainerInterface, in the order of
// the introspection data.
var propNames = []string{api.PropName, api.PropState, api.PropParent, api.PropRootPid,
	api.PropExitStatus, api.PropOwnerUser, api.PropCommand}

// value is property prop of container name.
func (p *containerProps) value(name, prop string) (any, bool) {
	switch prop {
	case api.PropName:
		return name, true
	case api.PropState:
		return string(p.state), true
	case api.PropParent:
		return p.parent, true
	case api.PropRootPid:
		return p.rootPid, true
	case api.PropExitStatus:
		return p.exitStatus, true
	case api.PropOwnerUser:
		return p.owner, true
	case api.PropCommand:
		return p.command, true
	}
	return nil, false
}

func checkIface(iface string) *dbus.Error {
	if iface != "" && iface != api.ContainerInterface {
		return dbus.NewError("org.freedesktop.DBus.Error.UnknownInterface",
			[]any{"object has no properties of interface " + iface})
	}
	return nil
}

func unknownProperty(property string) *dbus.Error {
	return dbus.NewError("org.freedesktop.DBus.Error.UnknownProperty",
		[]any{"no property " + property + " in " + api.ContainerInterface})
}

// unescapeElem reverses api.EscapePath for one path element, accepting only
// the canonical form (so that one container has one path).
func unescapeElem(s string) (string, bool) {
	if s == "_" {
		return "", true
	}
	alnum := func(c byte) bool {
		return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
	}
	hex := func(c byte) (byte, bool) {
		switch {
		case c >= '0' && c <= '9':
			return c - '0', true
		case c >= 'a' && c <= 'f':
			return c - 'a' + 10, true
		}
		return 0, false
	}
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if alnum(c) {
			b = append(b, c)
			continue
		}
		if c != '_' || i+2 >= len(s) {
			return "", false
		}
		hi, ok1 := hex(s[i+1])
		lo, ok2 := hex(s[i+2])
		if !ok1 || !ok2 || alnum(hi<<4|lo) {
			return "", false
		}
		b = append(b, hi<<4|lo)
		i += 2
	}
	return string(b), true
}

func msgPath(msg *dbus.Message) dbus.ObjectPath {
	p, _ := msg.Headers[dbus.FieldPath].Value().(dbus.ObjectPath)
	return p
}

// lookupPath finds the container whose object path is msg's.
func (s *Server) lookupPath(msg *dbus.Message) (name string, p containerProps, ok bool) {
	elem, ok := strings.CutPrefix(string(msgPath(msg)), api.ContainerPathPrefix+"/")
	if !ok || elem == "" || strings.IndexByte(elem, '/') >= 0 || len(elem) > 3*api.MaxNameLength {
		return "", containerProps{}, false
	}
	name, ok = unescapeElem(elem)
	if !ok {
		return "", containerProps{}, false
	}
	s.propMu.RLock()
	p, ok = s.props[name]
	s.propMu.RUnlock()
	return name, p, ok
}

// noObject is the error godbus gives a Properties call on a path without
// an object: UnknownInterface, or UnknownMethod when the call names no
// interface.
func noObject(msg *dbus.Message) *dbus.Error {
	iface, _ := msg.Headers[dbus.FieldInterface].Value().(string)
	var e dbus.Error
	if iface == "" {
		member, _ := msg.Headers[dbus.FieldMember].Value().(string)
		e = dbus.MakeUnknownMethodError(member)
	} else {
		e = dbus.MakeUnknownInterfaceError(iface)
	}
	return &e
}

// containerProperties implements org.freedesktop.DBus.Properties for every
// container object. Its only exported methods are the D-Bus ones.
type containerProperties struct{ s *Server }

// Get implements org.freedesktop.DBus.Properties.Get.
func (h containerProperties) Get(msg dbus.Message, iface, property string) (v dbus.Variant, derr *dbus.Error) {
	defer recoverCall(h.s.log, "Properties.Get", &derr)
	name, p, ok := h.s.lookupPath(&msg)
	if !ok {
		return dbus.Variant{}, noObject(&msg)
	}
	if derr := checkIface(iface); derr != nil {
		return dbus.Variant{}, derr
	}
	val, ok := p.value(name, property)
	if !ok {
		return dbus.Variant{}, unknownProperty(property)
	}
	return dbus.MakeVariant(val), nil
}

// GetAll implements org.freedesktop.DBus.Properties.GetAll.
func (h containerProperties) GetAll(msg dbus.Message, iface string) (m map[string]dbus.Variant, derr *dbus.Error) {
	defer recoverCall(h.s.log, "Properties.GetAll", &derr)
	name, p, ok := h.s.lookupPath(&msg)
	if !ok {
		return nil, noObject(&msg)
	}
	if derr := checkIface(iface); derr != nil {
		return nil, derr
	}
	m = make(map[string]dbus.Variant, len(propNames))
	for _, prop := range propNames {
		v, _ := p.value(name, prop)
		m[prop] = dbus.MakeVariant(v)
	}
	return m, nil
}

// Set implements org.freedesktop.DBus.Properties.Set: every property is
// read-only (change containers with the manager's SetProperty).
func (h containerProperties) Set(msg dbus.Message, iface, property string, _ dbus.Variant) (derr *dbus.Error) {
	defer recoverCall(h.s.log, "Properties.Set", &derr)
	if _, _, ok := h.s.lookupPath(&msg); !ok {
		return noObject(&msg)
	}
	if derr := checkIface(iface); derr != nil {
		return derr
	}
	if !slices.Contains(propNames, property) {
		return unknownProperty(property)
	}
	return dbus.NewError("org.freedesktop.DBus.Error.PropertyReadOnly",
		[]any{"property " + property + " is read-only; use " + api.ManagerInterface + "." + api.MethodSetProperty})
}

// containerIntrospect implements org.freedesktop.DBus.Introspectable for
// the container subtree.
type containerIntrospect struct{ s *Server }

// Introspect implements org.freedesktop.DBus.Introspectable.Introspect:
// the container interface for a container's object, the containers as
// children for api.ContainerPathPrefix, and (as godbus does for a path
// without an object) an empty node otherwise.
func (h containerIntrospect) Introspect(msg dbus.Message) (xml string, derr *dbus.Error) {
	defer recoverCall(h.s.log, "Introspect", &derr)
	if msgPath(&msg) == api.ContainerPathPrefix {
		return h.s.childrenXML(), nil
	}
	if _, _, ok := h.s.lookupPath(&msg); ok {
		return containerXML, nil
	}
	return "<node>\n</node>", nil
}

// childrenXML is godbus's introspection of a path without an object, for
// api.ContainerPathPrefix: one child node per container object.
func (s *Server) childrenXML() string {
	s.propMu.RLock()
	elems := make([]string, 0, len(s.props))
	for name := range s.props {
		elems = append(elems, api.EscapePath(name))
	}
	s.propMu.RUnlock()
	slices.Sort(elems)
	var b strings.Builder
	b.WriteString("<node>")
	for _, e := range elems {
		b.WriteString("\n\t<node name=\"" + e + "\"/>")
	}
	b.WriteString("\n</node>")
	return b.String()
}

// exportSubtree publishes (or, with on false, withdraws) the handlers of
// the container subtree. objMu must be held.
func (s *Server) exportSubtree(on bool) error {
	if on == s.subtree {
		return nil
	}
	path := dbus.ObjectPath(api.ContainerPathPrefix)
	if !on {
		_ = s.conn.Export(nil, path, propertiesInterface)
		_ = s.conn.Export(nil, path, introspectableInterface)
		s.subtree = false
		return nil
	}
	if err := s.conn.ExportSubtree(containerProperties{s}, path, propertiesInterface); err != nil {
		return err
	}
	if err := s.conn.ExportSubtree(containerIntrospect{s}, path, introspectableInterface); err != nil {
		_ = s.conn.Export(nil, path, propertiesInterface)
		return err
	}
	s.subtree = true
	return nil
}

// intern returns the one copy of owner the server keeps (every container of
// a user shares it). objMu must be held.
func (s *Server) intern(owner string) string {
	if v, ok := s.owners[owner]; ok {
		return v
	}
	if len(s.owners) >= maxInterned {
		clear(s.owners)
	}
	s.owners[owner] = owner
	return owner
}

// setProps stores container name's values and, if it already had an
// object, emits one PropertiesChanged with what changed. It reports
// whether the container is new and whether its state changed. objMu must
// be held.
func (s *Server) setProps(info service.Info) (added, stateChanged bool) {
	p := propsOf(info)
	p.owner = s.intern(p.owner)
	s.propMu.Lock()
	old, existed := s.props[info.Name]
	if !existed && len(s.props) == 0 {
		if err := s.exportSubtree(true); err != nil {
			s.propMu.Unlock()
			s.log.Warn("export container objects", "name", info.Name, "err", err)
			return false, false
		}
	}
	s.props[info.Name] = p
	s.propMu.Unlock()
	if !existed {
		return true, false
	}
	var changed map[string]dbus.Variant
	for _, prop := range propNames {
		nv, _ := p.value(info.Name, prop)
		if ov, _ := old.value(info.Name, prop); ov != nv {
			if changed == nil {
				changed = make(map[string]dbus.Variant)
			}
			changed[prop] = dbus.MakeVariant(nv)
		}
	}
	if len(changed) == 0 {
		return false, false
	}
	path := dbus.ObjectPath(api.ContainerPath(info.Name))
	if err := s.conn.Emit(path, propertiesInterface+".PropertiesChanged", api.ContainerInterface, changed, []string{}); err != nil {
		s.log.Debug("emit PropertiesChanged", "path", path, "err", err)
	}
	_, stateChanged = changed[api.PropState]
	return false, stateChanged
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
	if s.ctx.Err() != nil {
		return // closed: Close has withdrawn the objects
	}
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
	s.setProps(info)
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
	if s.ctx.Err() != nil {
		return
	}
	s.propMu.RLock()
	_, ok := s.props[name]
	s.propMu.RUnlock()
	if ok {
		s.setProps(info) // a state change is announced by its own event
	}
}

// removeLocked withdraws name's object and announces its destruction.
// objMu must be held.
func (s *Server) removeLocked(name string) {
	s.propMu.Lock()
	_, ok := s.props[name]
	delete(s.props, name)
	if ok && len(s.props) == 0 {
		_ = s.exportSubtree(false)
	}
	s.propMu.Unlock()
	if ok {
		s.emitStateChanged(name, destroyedState)
	}
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
	if s.ctx.Err() != nil {
		return nil // closed
	}
	listed := make(map[string]bool, len(names))
	for _, name := range names {
		listed[name] = true
		info, err := s.b.Info(name)
		if err != nil {
			continue // destroyed meanwhile: its event follows
		}
		if added, stateChanged := s.setProps(info); !added && stateChanged {
			s.emitStateChanged(name, string(info.State))
		}
	}
	s.propMu.RLock()
	var gone []string
	for name := range s.props {
		if !listed[name] {
			gone = append(gone, name)
		}
	}
	s.propMu.RUnlock()
	for _, name := range gone {
		s.removeLocked(name)
	}
	return nil
}
