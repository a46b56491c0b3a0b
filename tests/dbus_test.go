package tests

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"
)

// The D-Bus API straight, without portoctl: busctl (as root and as
// porto-alice) and raw godbus calls with wrong signatures.

const (
	busName   = "org.porto.Manager"
	mgrPath   = "/org/porto/Manager"
	mgrIface  = "org.porto.Manager"
	ctIface   = "org.porto.Container"
	ctPathPfx = "/org/porto/container/"
)

// managerMethods is every method of org.porto.Manager (api/names.go).
var managerMethods = []string{
	"Create", "Destroy", "Start", "Stop", "Kill", "Pause", "Resume", "Wait",
	"List", "Get", "GetProperty", "SetProperty", "ListProperties", "Version",
}

// call runs "busctl --json=short call" as u and decodes the reply's data.
func (e *Env) call(t *testing.T, u *User, args ...string) []json.RawMessage {
	t.Helper()
	r := e.Busctl(u, append([]string{"--json=short", "call", busName}, args...)...)
	if r.Code != 0 {
		t.Fatalf("as %s: busctl call %s: %s", u.Name, shellJoin(args), r)
	}
	if strings.TrimSpace(r.Stdout) == "" {
		return nil
	}
	var v struct {
		Type string            `json:"type"`
		Data []json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal([]byte(r.Stdout), &v); err != nil {
		t.Fatalf("busctl call %s: bad JSON %q: %v", shellJoin(args), r.Stdout, err)
	}
	return v.Data
}

func (e *Env) callString(t *testing.T, u *User, args ...string) string {
	t.Helper()
	d := e.call(t, u, args...)
	var s string
	if len(d) != 1 || json.Unmarshal(d[0], &s) != nil {
		t.Fatalf("busctl call %s: want one string, got %s", shellJoin(args), d)
	}
	return s
}

func TestBusctlIntrospect(t *testing.T) {
	e := NewEnv(t)
	for _, u := range users(t) {
		r := e.Busctl(u, "introspect", busName, mgrPath)
		if r.Code != 0 {
			t.Fatalf("as %s: %s", u.Name, r)
		}
		for _, m := range managerMethods {
			if !hasMember(r.Stdout, "."+m, "method") {
				t.Errorf("as %s: introspection lacks method %s.%s:\n%s", u.Name, mgrIface, m, r.Stdout)
			}
		}
		if !hasMember(r.Stdout, ".StateChanged", "signal") {
			t.Errorf("as %s: introspection lacks signal StateChanged", u.Name)
		}
		for _, iface := range []string{mgrIface, "org.freedesktop.DBus.Introspectable", "org.freedesktop.DBus.Peer"} {
			if !strings.Contains(r.Stdout, iface+" ") {
				t.Errorf("as %s: introspection lacks interface %s", u.Name, iface)
			}
		}
		if r := e.Busctl(u, "call", busName, mgrPath, "org.freedesktop.DBus.Peer", "Ping"); r.Code != 0 {
			t.Errorf("as %s: Peer.Ping: %s", u.Name, r)
		}
	}
	// The root path introspects down to the manager.
	if r := e.Busctl(rootUser, "tree", busName); r.Code != 0 || !strings.Contains(r.Stdout, mgrPath) {
		t.Errorf("busctl tree: %s", r)
	}
}

// hasMember finds "NAME  KIND ..." in busctl introspect output.
func hasMember(out, name, kind string) bool {
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if len(f) >= 2 && f[0] == name && f[1] == kind {
			return true
		}
	}
	return false
}

// busctl call alone creates, starts, reads and destroys a container.
func TestBusctlLifecycle(t *testing.T) {
	e := NewEnv(t)
	for _, u := range users(t) {
		t.Run(u.Name, func(t *testing.T) {
			e.CleanupContainers(t)
			name := "bc-" + u.Name
			e.call(t, u, mgrPath, mgrIface, "Create", "s", name)
			e.call(t, u, mgrPath, mgrIface, "SetProperty", "sss", name, "command", "echo hello")
			if s := e.callString(t, u, mgrPath, mgrIface, "GetProperty", "ss", name, "state"); s != "stopped" {
				t.Errorf("state after Create = %q", s)
			}
			e.call(t, u, mgrPath, mgrIface, "Start", "s", name)
			if s := e.callString(t, u, mgrPath, mgrIface, "Wait", "asi", "1", name, "10000"); s != name {
				t.Errorf("Wait = %q, want %q", s, name)
			}
			if s := e.callString(t, u, mgrPath, mgrIface, "GetProperty", "ss", name, "state"); s != "dead" {
				t.Errorf("state = %q, want dead", s)
			}
			if s := e.callString(t, u, mgrPath, mgrIface, "GetProperty", "ss", name, "stdout"); s != "hello\n" {
				t.Errorf("stdout = %q, want %q", s, "hello\n")
			}
			if s := e.callString(t, u, mgrPath, mgrIface, "GetProperty", "ss", name, "exit_status"); s != "0" {
				t.Errorf("raw exit_status = %q, want 0", s)
			}

			// A combined Get: per-key errors, the rest succeeds.
			d := e.call(t, u, mgrPath, mgrIface, "Get", "asas", "2", name, "nosuch-ct", "3", "state", "exit_status", "no_such_property")
			var cells [][]string
			if len(d) != 1 || json.Unmarshal(d[0], &cells) != nil {
				t.Fatalf("Get: reply %s", d)
			}
			got := map[string][]string{}
			for _, c := range cells {
				if len(c) == 5 {
					got[c[0]+"|"+c[1]] = c[2:]
				}
			}
			check := func(ct, key, value, errName string) {
				c, ok := got[ct+"|"+key]
				if !ok {
					t.Errorf("Get: no cell for %s %s in %q", ct, key, cells)
					return
				}
				if c[0] != value || c[1] != errName {
					t.Errorf("Get %s %s = value %q error %q (%s), want %q %q", ct, key, c[0], c[1], c[2], value, errName)
				}
			}
			check(name, "state", "dead", "")
			check(name, "exit_status", "0", "")
			check(name, "no_such_property", "", "org.porto.Error.InvalidProperty")
			check("nosuch-ct", "state", "", "org.porto.Error.ContainerDoesNotExist")

			// List includes it; ListProperties describes the properties.
			d = e.call(t, u, mgrPath, mgrIface, "List")
			var names []string
			if len(d) != 1 || json.Unmarshal(d[0], &names) != nil || !contains(names, name) {
				t.Errorf("List = %s, want it to include %s", d, name)
			}
			d = e.call(t, u, mgrPath, mgrIface, "ListProperties")
			var props [][]any
			if len(d) != 1 || json.Unmarshal(d[0], &props) != nil || len(props) < 20 {
				t.Errorf("ListProperties = %.200s", d)
			}
			seen := map[string]bool{}
			for _, p := range props {
				if len(p) == 4 {
					if s, ok := p[0].(string); ok {
						seen[s] = true
					}
					if desc, _ := p[1].(string); desc == "" {
						t.Errorf("ListProperties: %v has no description", p)
					}
				}
			}
			for _, p := range []string{"command", "user", "group", "env", "cwd", "ulimit", "isolate", "stdin_path", "stdout_path", "stderr_path",
				"state", "exit_status", "oom_killed", "start_errno", "root_pid", "stdout", "stderr"} {
				if !seen[p] {
					t.Errorf("ListProperties lacks %s", p)
				}
			}

			// The container's own object: typed read-only properties.
			path := ctPathPfx + escapePath(name)
			r := e.Busctl(u, "introspect", busName, path)
			if r.Code != 0 || !strings.Contains(r.Stdout, ctIface) || !strings.Contains(r.Stdout, "org.freedesktop.DBus.Properties") {
				t.Errorf("introspect %s: %s", path, r)
			}
			for _, p := range []string{"Name", "State", "Parent", "RootPid", "ExitStatus", "OwnerUser", "Command"} {
				if !hasMember(r.Stdout, "."+p, "property") {
					t.Errorf("%s lacks property %s", path, p)
				}
			}
			r = e.Busctl(u, "--json=short", "get-property", busName, path, ctIface, "State")
			if r.Code != 0 || !strings.Contains(r.Stdout, `"dead"`) {
				t.Errorf("get-property State: %s", r)
			}
			r = e.Busctl(u, "--json=short", "get-property", busName, path, ctIface, "Name")
			if r.Code != 0 || !strings.Contains(r.Stdout, `"`+name+`"`) {
				t.Errorf("get-property Name: %s", r)
			}
			// Properties.Set is not exposed, for anyone.
			r = e.Busctl(u, "set-property", busName, path, ctIface, "State", "s", "running")
			if r.Code == 0 {
				t.Errorf("Properties.Set succeeded: %s", r)
			}

			e.call(t, u, mgrPath, mgrIface, "Destroy", "s", name)
			if r := e.Busctl(u, "call", busName, mgrPath, mgrIface, "GetProperty", "ss", name, "state"); r.Code == 0 {
				t.Errorf("GetProperty after Destroy succeeded: %s", r)
			}
			if r := e.Busctl(u, "introspect", busName, path); r.Code == 0 && strings.Contains(r.Stdout, ctIface) {
				t.Errorf("container object still exported after Destroy: %s", r)
			}
		})
	}
}

// escapePath escapes a container name as systemd does for object paths.
func escapePath(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' {
			b.WriteByte(c)
		} else {
			b.WriteString("_" + strings.ToLower(string("0123456789abcdef"[c>>4])+string("0123456789abcdef"[c&15])))
		}
	}
	return b.String()
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// Wrong argument types, unknown methods and interfaces, bad paths: each is
// an error and the daemon stays up.
func TestBusctlBadCalls(t *testing.T) {
	e := NewEnv(t)
	e.CleanupContainers(t)
	bad := [][]string{
		{mgrPath, mgrIface, "Create", "i", "5"},
		{mgrPath, mgrIface, "Create"},
		{mgrPath, mgrIface, "Create", "ss", "a", "b"},
		{mgrPath, mgrIface, "Start", "as", "1", "x"},
		{mgrPath, mgrIface, "Stop", "si", "x", "0"}, // right types, missing container
		{mgrPath, mgrIface, "Kill", "ss", "x", "9"},
		{mgrPath, mgrIface, "Wait", "si", "x", "1"},
		{mgrPath, mgrIface, "Get", "ss", "a", "b"},
		{mgrPath, mgrIface, "SetProperty", "ss", "a", "b"},
		{mgrPath, mgrIface, "Frobnicate"},
		{mgrPath, mgrIface, "Frobnicate", "s", "x"},
		{mgrPath, "org.porto.NoSuchInterface", "Create", "s", "x"},
		{"/org/porto/NoSuchObject", mgrIface, "List"},
		{ctPathPfx + "nosuch", ctIface, "Frobnicate"},
		{mgrPath, mgrIface, "Create", "s", ""},
		{mgrPath, mgrIface, "Create", "s", "/abs"},
		{mgrPath, mgrIface, "Create", "s", "a/../b"},
		{mgrPath, mgrIface, "Create", "s", strings.Repeat("x", 201)},
		{mgrPath, mgrIface, "Create", "s", "bad name"},
		{mgrPath, mgrIface, "Destroy", "s", "/"},
	}
	for _, u := range users(t) {
		for _, args := range bad {
			r := e.Busctl(u, append([]string{"call", busName}, args...)...)
			if r.Code == 0 {
				t.Errorf("as %s: busctl call %s succeeded: %s", u.Name, shellJoin(args), r)
			}
			if r.Stderr == "" {
				t.Errorf("as %s: busctl call %s: no error message", u.Name, shellJoin(args))
			}
			if !e.PortodAlive() {
				t.Fatalf("portod died after busctl call %s\n%s", shellJoin(args), e.LogTail())
			}
		}
	}
	if names, err := e.List(); err != nil || len(names) != 0 {
		t.Errorf("bad calls left containers: %q %v", names, err)
	}

	// The same with exact error names, over a raw connection as root.
	conn, err := dbus.Connect(e.BusAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	mgr := conn.Object(busName, mgrPath)
	raw := []struct {
		method string
		args   []any
		want   string // D-Bus error name
	}{
		{mgrIface + ".Create", []any{int32(5)}, "org.freedesktop.DBus.Error.InvalidArgs"},
		{mgrIface + ".Create", nil, "org.freedesktop.DBus.Error.InvalidArgs"},
		{mgrIface + ".Frobnicate", nil, "org.freedesktop.DBus.Error.UnknownMethod"},
		{mgrIface + ".Destroy", []any{"nosuch"}, "org.porto.Error.ContainerDoesNotExist"},
		{mgrIface + ".Create", []any{"bad name"}, "org.porto.Error.InvalidValue"},
		{mgrIface + ".Create", []any{strings.Repeat("y", 1<<20)}, "org.porto.Error.InvalidValue"},
		{mgrIface + ".GetProperty", []any{"nosuch", "state"}, "org.porto.Error.ContainerDoesNotExist"},
		{mgrIface + ".Wait", []any{[]string{}, int32(0)}, "org.porto.Error.InvalidValue"},
	}
	for _, c := range raw {
		call := mgr.Call(c.method, 0, c.args...)
		var de dbus.Error
		if !errors.As(call.Err, &de) {
			var pde *dbus.Error
			if errors.As(call.Err, &pde) {
				de = *pde
			} else {
				t.Errorf("%s%v: want error %s, got %v", c.method, short(c.args), c.want, call.Err)
				continue
			}
		}
		if de.Name != c.want {
			t.Errorf("%s%v: error %s (%v), want %s", c.method, short(c.args), de.Name, de.Body, c.want)
		}
		if len(de.Body) == 0 {
			t.Errorf("%s%v: error %s without a message", c.method, short(c.args), de.Name)
		}
	}
	// Duplicate create: ContainerAlreadyExists.
	if err := mgr.Call(mgrIface+".Create", 0, "dup").Err; err != nil {
		t.Fatal(err)
	}
	if err := mgr.Call(mgrIface+".Create", 0, "dup").Err; !isDBusError(err, "org.porto.Error.ContainerAlreadyExists") {
		t.Errorf("second Create: %v, want ContainerAlreadyExists", err)
	}
	// Thousands of keys in one Get.
	keys := make([]string, 5000)
	for i := range keys {
		keys[i] = "state"
	}
	var cells []struct{ C, K, V, E, M string }
	if err := mgr.Call(mgrIface+".Get", 0, []string{"dup"}, keys).Store(&cells); err != nil || len(cells) != len(keys) {
		t.Errorf("Get with %d keys: %d cells, %v", len(keys), len(cells), err)
	}
	if err := mgr.Call(mgrIface+".Destroy", 0, "dup").Err; err != nil {
		t.Error(err)
	}
	var v string
	if err := mgr.Call(mgrIface+".Version", 0).Store(&v); err != nil || v == "" {
		t.Errorf("Version after bad calls: %q %v", v, err)
	}
	time.Sleep(100 * time.Millisecond)
	if !e.PortodAlive() {
		t.Fatalf("portod died\n%s", e.LogTail())
	}
}

func isDBusError(err error, name string) bool {
	var de dbus.Error
	if errors.As(err, &de) {
		return de.Name == name
	}
	var pde *dbus.Error
	if errors.As(err, &pde) {
		return pde.Name == name
	}
	return false
}

func short(args []any) string {
	var parts []string
	for _, a := range args {
		s := strings.TrimSpace(strings.ReplaceAll(strings.ReplaceAll(string(must(json.Marshal(a))), "\n", ""), " ", ""))
		if len(s) > 20 {
			s = s[:20] + "..."
		}
		parts = append(parts, s)
	}
	return "(" + strings.Join(parts, ", ") + ")"
}

func must[T any](v T, err error) T { return v }

// StateChanged signals follow a container through its life, and its object
// path is escaped as systemd does.
func TestSignals(t *testing.T) {
	e := NewEnv(t)
	e.CleanupContainers(t)
	conn, err := dbus.Connect(e.BusAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := conn.AddMatchSignal(dbus.WithMatchInterface(mgrIface), dbus.WithMatchMember("StateChanged")); err != nil {
		t.Fatal(err)
	}
	if err := conn.AddMatchSignal(dbus.WithMatchInterface("org.freedesktop.DBus.Properties"), dbus.WithMatchMember("PropertiesChanged")); err != nil {
		t.Fatal(err)
	}
	sigs := make(chan *dbus.Signal, 100)
	conn.Signal(sigs)

	const name = "sig-1.a"
	wantPath := dbus.ObjectPath(ctPathPfx + "sig_2d1_2ea")
	e.OK(t, rootUser, "create", name)
	e.OK(t, rootUser, "set", name, "command", "true")
	e.OK(t, rootUser, "start", name)
	e.WaitState(t, rootUser, name, "dead")
	e.OK(t, rootUser, "destroy", name)

	var states []string
	propsChanged := 0
	timeout := time.After(5 * time.Second)
	for done := false; !done; {
		select {
		case s := <-sigs:
			switch s.Name {
			case mgrIface + ".StateChanged":
				if len(s.Body) != 3 {
					t.Errorf("StateChanged body %v", s.Body)
					continue
				}
				n, _ := s.Body[0].(string)
				st, _ := s.Body[1].(string)
				p, _ := s.Body[2].(dbus.ObjectPath)
				if n != name {
					continue
				}
				if p != wantPath {
					t.Errorf("StateChanged path = %s, want %s", p, wantPath)
				}
				states = append(states, st)
				if st != "stopped" && st != "running" && st != "dead" && st != "starting" && st != "stopping" {
					done = true // destroyed (whatever it is called)
				}
			case "org.freedesktop.DBus.Properties.PropertiesChanged":
				if s.Path == wantPath {
					propsChanged++
				}
			}
		case <-timeout:
			done = true
		}
	}
	t.Logf("StateChanged for %s: %v; PropertiesChanged on %s: %d", name, states, wantPath, propsChanged)
	// At least: stopped (create), running, dead, and the destruction.
	seen := map[string]bool{}
	for _, s := range states {
		seen[s] = true
	}
	for _, s := range []string{"running", "dead"} {
		if !seen[s] {
			t.Errorf("no StateChanged to %q for %s (got %v)", s, name, states)
		}
	}
	if len(states) < 3 {
		t.Errorf("StateChanged for %s: %v, want create/start/death/destroy", name, states)
	}
	if propsChanged == 0 {
		t.Errorf("no PropertiesChanged on %s", wantPath)
	}
}

// With the default layout (the Varlink socket inside state_dir, as
// /run/porto/io.porto.Manager is inside /run/porto) every user can reach the
// socket, and the caller is who the kernel says.
func TestVarlinkDefaultLayout(t *testing.T) {
	e := NewEnvWith(t, []string{"varlink_socket = {state}/io.porto.Manager"})
	e.Varlink = true
	e.CleanupContainers(t)
	for _, u := range users(t) {
		r := e.Ctl(u, "list")
		if r.Code != 0 {
			t.Errorf("as %s: portoctl --transport=varlink list with the socket in state_dir: %s", u.Name, r)
			continue
		}
		e.OK(t, u, "run", "vl-"+u.Name, "command=id -u")
		e.WaitState(t, u, "vl-"+u.Name, "dead")
		e.Expect(t, u, u.Name, "get", "vl-"+u.Name, "owner_user")
		e.OK(t, u, "destroy", "vl-"+u.Name)
	}
}
