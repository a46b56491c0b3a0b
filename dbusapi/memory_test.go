package dbusapi

import (
	"encoding/xml"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"testing"

	"github.com/godbus/dbus/v5"
	"github.com/godbus/dbus/v5/introspect"

	"github.com/porto-dev/porto/api"
)

func liveHeap() uint64 {
	var ms runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// What the D-Bus side keeps per container: the objects of N existing
// containers, exported by Export, measured as live heap.
func TestHeapPerContainer(t *testing.T) {
	const n = 3000
	f := newFake()
	for i := range n {
		f.cts[fmt.Sprintf("ct-%05d", i)] = &fakeCT{state: api.StateRunning, pid: int32(10000 + i),
			exit: -1, command: "sleep 1000"}
	}
	conn := connect(t, startBus(t))
	s := newServer(f, Options{Logger: quiet, ResyncInterval: -1})
	defer s.Close()
	before := liveHeap()
	if err := s.Export(conn); err != nil {
		t.Fatal(err)
	}
	after := liveHeap()
	per := (float64(after) - float64(before)) / n
	t.Logf("live heap per container object: %.0f bytes (%d containers)", per, n)
	if per > 512 {
		t.Errorf("%.0f bytes of live heap per container, want at most 512", per)
	}
	runtime.KeepAlive(s)
	runtime.KeepAlive(f)
}

// What a client sees of container objects on the bus: the same as with one
// godbus object per container (this test passes on both).
func TestContainerPathsSeenFromBus(t *testing.T) {
	f := newFake()
	e := startEnv(t, f, Options{})
	intro := func(path string) string {
		t.Helper()
		var s string
		if err := e.cconn.Object(api.BusName, dbus.ObjectPath(path)).Call(introspectableInterface+".Introspect", 0).Store(&s); err != nil {
			t.Fatalf("Introspect %s: %v", path, err)
		}
		return s
	}
	errName := func(path, method string, args ...any) string {
		t.Helper()
		err := e.cconn.Object(api.BusName, dbus.ObjectPath(path)).Call(method, 0, args...).Err
		var de dbus.Error
		if err == nil {
			return "ok"
		}
		if !errors.As(err, &de) {
			t.Fatalf("%s on %s: %v", method, path, err)
		}
		return de.Name + ": " + fmt.Sprint(de.Body...)
	}
	porto := func() []string {
		t.Helper()
		var n introspect.Node
		if err := xml.Unmarshal([]byte(intro("/org/porto")), &n); err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, c := range n.Children {
			names = append(names, c.Name)
		}
		slices.Sort(names)
		return names
	}
	get := propertiesInterface + ".Get"
	want := func(what, got, want string) {
		t.Helper()
		if got != want {
			t.Errorf("%s: got %q, want %q", what, got, want)
		}
	}
	noIface := "org.freedesktop.DBus.Error.UnknownInterface: Object does not implement the interface 'org.freedesktop.DBus.Properties'"
	if got := porto(); !slices.Equal(got, []string{"Manager"}) {
		t.Errorf("children of /org/porto without containers: %q", got)
	}
	want("Introspect of a missing container", intro(api.ContainerPath("a")), "<node>\n</node>")
	want("Get on a missing container", errName(api.ContainerPath("a"), get, api.ContainerInterface, api.PropState), noIface)
	for _, n := range []string{"a", "a/b", "c"} {
		if err := e.client.Create(e.ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, func() bool { return e.srv.hasObject("c") })
	if got := porto(); !slices.Equal(got, []string{"Manager", "container"}) {
		t.Errorf("children of /org/porto with containers: %q", got)
	}
	want("Introspect of the prefix", intro(api.ContainerPathPrefix),
		"<node>\n\t<node name=\"a\"/>\n\t<node name=\"a_2fb\"/>\n\t<node name=\"c\"/>\n</node>")
	want("Introspect of a", intro(api.ContainerPath("a")), containerXML)
	want("Introspect of a/b", intro(api.ContainerPath("a/b")), containerXML)
	for _, p := range []string{api.ContainerPath("x"), api.ContainerPath("a") + "/b", api.ContainerPathPrefix + "/_61",
		api.ContainerPathPrefix + "/a_2Fb", api.ContainerPathPrefix + "/_", api.ContainerPathPrefix + "/a_2"} {
		want("Introspect of "+p, intro(p), "<node>\n</node>")
		want("Get on "+p, errName(p, get, api.ContainerInterface, api.PropState), noIface)
		want("GetAll on "+p, errName(p, propertiesInterface+".GetAll", api.ContainerInterface), noIface)
		want("Set on "+p, errName(p, propertiesInterface+".Set", api.ContainerInterface, api.PropState, dbus.MakeVariant("x")), noIface)
		want("Frobnicate on "+p, errName(p, api.ContainerInterface+".Frobnicate"),
			"org.freedesktop.DBus.Error.UnknownInterface: Object does not implement the interface 'org.porto.Container'")
	}
	want("Get on the prefix", errName(api.ContainerPathPrefix, get, api.ContainerInterface, api.PropState), noIface)
	p := api.ContainerPath("a/b")
	want("Get on a/b", errName(p, get, api.ContainerInterface, api.PropParent), "ok")
	want("Get of a bad property", errName(p, get, api.ContainerInterface, "Bogus"),
		"org.freedesktop.DBus.Error.UnknownProperty: no property Bogus in org.porto.Container")
	want("Get of another interface", errName(p, get, "org.example.X", api.PropState),
		"org.freedesktop.DBus.Error.UnknownInterface: object has no properties of interface org.example.X")
	want("Get with no interface", errName(p, get, "", api.PropState), "ok")
	want("Set of a bad property", errName(p, propertiesInterface+".Set", api.ContainerInterface, "Bogus", dbus.MakeVariant("x")),
		"org.freedesktop.DBus.Error.UnknownProperty: no property Bogus in org.porto.Container")
	want("Frobnicate on a/b", errName(p, api.ContainerInterface+".Frobnicate"),
		"org.freedesktop.DBus.Error.UnknownInterface: Object does not implement the interface 'org.porto.Container'")
	var parent dbus.Variant
	if err := e.cconn.Object(api.BusName, dbus.ObjectPath(p)).Call(get, 0, api.ContainerInterface, api.PropParent).Store(&parent); err != nil || parent.Value() != "a" {
		t.Errorf("Parent of a/b = %v, %v", parent, err)
	}
	for _, n := range []string{"a/b", "a", "c"} {
		if err := e.client.Destroy(e.ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, func() bool { return !e.srv.hasObject("c") })
	if got := porto(); !slices.Equal(got, []string{"Manager"}) {
		t.Errorf("children of /org/porto after destroying all: %q", got)
	}
	want("Introspect of a destroyed container", intro(api.ContainerPath("a")), "<node>\n</node>")
	want("Get on a destroyed container", errName(api.ContainerPath("a"), get, api.ContainerInterface, api.PropState), noIface)
}
