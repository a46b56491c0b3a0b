package dbusapi

import (
	"github.com/godbus/dbus/v5/introspect"

	"github.com/porto-dev/porto/api"
)

// This file is the single description of the D-Bus interfaces: the
// introspection XML is generated from it, a test checks the exported Go
// methods against it, and another that docs/dbus-api.md mentions every
// member of it.

func in(name, typ string) introspect.Arg {
	return introspect.Arg{Name: name, Type: typ, Direction: "in"}
}
func out(name, typ string) introspect.Arg {
	return introspect.Arg{Name: name, Type: typ, Direction: "out"}
}

// managerIface describes api.ManagerInterface.
var managerIface = introspect.Interface{
	Name: api.ManagerInterface,
	Methods: []introspect.Method{
		{Name: api.MethodCreate, Args: []introspect.Arg{in("name", "s")}},
		{Name: api.MethodDestroy, Args: []introspect.Arg{in("name", "s")}},
		{Name: api.MethodStart, Args: []introspect.Arg{in("name", "s")}},
		{Name: api.MethodStop, Args: []introspect.Arg{in("name", "s"), in("timeout_ms", "i")}},
		{Name: api.MethodKill, Args: []introspect.Arg{in("name", "s"), in("signal", "i")}},
		{Name: api.MethodPause, Args: []introspect.Arg{in("name", "s")}},
		{Name: api.MethodResume, Args: []introspect.Arg{in("name", "s")}},
		{Name: api.MethodWait, Args: []introspect.Arg{in("names", "as"), in("timeout_ms", "i"), out("name", "s")}},
		{Name: api.MethodList, Args: []introspect.Arg{out("names", "as")}},
		{Name: api.MethodGet, Args: []introspect.Arg{in("names", "as"), in("keys", "as"), out("values", "a(sssss)")}},
		{Name: api.MethodGetProperty, Args: []introspect.Arg{in("name", "s"), in("key", "s"), out("value", "s")}},
		{Name: api.MethodSetProperty, Args: []introspect.Arg{in("name", "s"), in("key", "s"), in("value", "s")}},
		{Name: api.MethodListProperties, Args: []introspect.Arg{out("properties", "a(ssbb)")}},
		{Name: api.MethodVersion, Args: []introspect.Arg{out("version", "s")}},
	},
	Signals: []introspect.Signal{
		{Name: api.SignalStateChanged, Args: []introspect.Arg{
			{Name: "name", Type: "s"}, {Name: "state", Type: "s"}, {Name: "path", Type: "o"}}},
	},
}

func roProp(name, typ, emits string) introspect.Property {
	return introspect.Property{Name: name, Type: typ, Access: "read", Annotations: []introspect.Annotation{
		{Name: "org.freedesktop.DBus.Property.EmitsChangedSignal", Value: emits}}}
}

// containerIface describes api.ContainerInterface: typed read-only
// properties, no methods.
var containerIface = introspect.Interface{
	Name: api.ContainerInterface,
	Properties: []introspect.Property{
		roProp(api.PropName, "s", "const"),
		roProp(api.PropState, "s", "true"),
		roProp(api.PropParent, "s", "const"),
		roProp(api.PropRootPid, "i", "true"),
		roProp(api.PropExitStatus, "i", "true"),
		roProp(api.PropOwnerUser, "s", "true"),
		roProp(api.PropCommand, "s", "true"),
	},
}

var propertiesIface = introspect.Interface{
	Name: "org.freedesktop.DBus.Properties",
	Methods: []introspect.Method{
		{Name: "Get", Args: []introspect.Arg{in("interface", "s"), in("property", "s"), out("value", "v")}},
		{Name: "GetAll", Args: []introspect.Arg{in("interface", "s"), out("properties", "a{sv}")}},
		{Name: "Set", Args: []introspect.Arg{in("interface", "s"), in("property", "s"), in("value", "v")}},
	},
	Signals: []introspect.Signal{
		{Name: "PropertiesChanged", Args: []introspect.Arg{
			{Name: "interface", Type: "s"}, {Name: "changed_properties", Type: "a{sv}"}, {Name: "invalidated_properties", Type: "as"}}},
	},
}

// ErrorNames lists every D-Bus error name porto replies with.
func ErrorNames() []string {
	var names []string
	for _, c := range api.Codes() {
		if c != api.Success {
			names = append(names, c.DBusName())
		}
	}
	return names
}

var (
	managerXML   = string(introspect.NewIntrospectable(&introspect.Node{Interfaces: []introspect.Interface{managerIface}}))
	containerXML = string(introspect.NewIntrospectable(&introspect.Node{Interfaces: []introspect.Interface{containerIface, propertiesIface}}))
)

// ManagerXML is the introspection data of the manager object.
func ManagerXML() string { return managerXML }

// ContainerXML is the introspection data of a container object.
func ContainerXML() string { return containerXML }
