package dbusapi

import (
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"
	"github.com/godbus/dbus/v5/introspect"
	"golang.org/x/sys/unix"

	"github.com/porto-dev/porto/api"
	"github.com/porto-dev/porto/api/client"
	"github.com/porto-dev/porto/apiserver"
	"github.com/porto-dev/porto/service"
)

func wantCode(t *testing.T, err error, code api.Code) *api.Error {
	t.Helper()
	var ae *api.Error
	if !errors.As(err, &ae) {
		t.Fatalf("got %v (%T), want an *api.Error %s", err, err, code)
	}
	if ae.Code != code {
		t.Fatalf("got %s (%q), want %s", ae.Code, ae.Message(), code)
	}
	return ae
}

func TestLifecycle(t *testing.T) {
	f := newFake()
	e := startEnv(t, f, Options{})
	c, ctx := e.client, e.ctx

	if v, err := c.Version(ctx); err != nil || v != api.Version {
		t.Fatalf("Version = %q, %v", v, err)
	}
	if err := c.Create(ctx, "demo"); err != nil {
		t.Fatal(err)
	}
	wantCode(t, c.Create(ctx, "demo"), api.ContainerAlreadyExists)
	wantCode(t, c.Create(ctx, "bad/../name"), api.InvalidValue)
	wantCode(t, c.Create(ctx, "nope/child"), api.ContainerDoesNotExist)
	if err := c.SetProperty(ctx, "demo", "command", "sleep 1000"); err != nil {
		t.Fatal(err)
	}
	if v, err := c.GetProperty(ctx, "demo", "command"); err != nil || v != "sleep 1000" {
		t.Fatalf("GetProperty = %q, %v", v, err)
	}
	_, err := c.GetProperty(ctx, "demo", "no_such_prop")
	wantCode(t, err, api.InvalidProperty)
	names, err := c.List(ctx)
	if err != nil || !slices.Equal(names, []string{"demo"}) {
		t.Fatalf("List = %q, %v", names, err)
	}
	if err := c.Start(ctx, "demo"); err != nil {
		t.Fatal(err)
	}
	wantCode(t, c.Start(ctx, "demo"), api.InvalidState)
	if err := c.Pause(ctx, "demo"); err != nil {
		t.Fatal(err)
	}
	if err := c.Resume(ctx, "demo"); err != nil {
		t.Fatal(err)
	}
	if got, err := c.Wait(ctx, []string{"demo"}, 0); err != nil || got != "" {
		t.Fatalf("Wait(timeout 0) = %q, %v", got, err)
	}
	if err := c.Kill(ctx, "demo", 9); err != nil {
		t.Fatal(err)
	}
	if got, err := c.Wait(ctx, []string{"demo"}, -1); err != nil || got != "demo" {
		t.Fatalf("Wait = %q, %v", got, err)
	}
	res, err := c.Get(ctx, []string{"demo", "ghost"}, []string{"exit_status", "bogus"})
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 4 {
		t.Fatalf("Get returned %d cells: %+v", len(res), res)
	}
	if res[0].Value != "9" || res[0].Err != nil {
		t.Errorf("cell 0 = %+v", res[0])
	}
	for i, code := range []api.Code{api.Success, api.InvalidProperty, api.ContainerDoesNotExist, api.ContainerDoesNotExist} {
		if got := api.CodeOf(errOrNil(res[i].Err)); got != code {
			t.Errorf("cell %d (%s %s): code %s, want %s", i, res[i].Container, res[i].Key, got, code)
		}
	}
	if err := c.Stop(ctx, "demo", -1); err != nil {
		t.Fatal(err)
	}
	ps, err := c.ListProperties(ctx)
	if err != nil || len(ps) != 3 || ps[1].Name != "state" || !ps[1].ReadOnly {
		t.Fatalf("ListProperties = %+v, %v", ps, err)
	}
	if err := c.Destroy(ctx, "demo"); err != nil {
		t.Fatal(err)
	}
	wantCode(t, c.Destroy(ctx, "demo"), api.ContainerDoesNotExist)
	if names, err := c.List(ctx); err != nil || len(names) != 0 {
		t.Fatalf("List after destroy = %q, %v", names, err)
	}
}

func errOrNil(e *api.Error) error {
	if e == nil {
		return nil
	}
	return e
}

// Every Code survives server -> D-Bus -> client with its message.
func TestErrorRoundTrip(t *testing.T) {
	f := newFake()
	var plain = errors.New("disk on fire")
	f.hook = func(ctx context.Context, method string, c service.Caller, args []string) error {
		if method != "Create" {
			return nil
		}
		if args[0] == "plain" {
			return fmt.Errorf("create: %w", plain)
		}
		var code int
		if _, err := fmt.Sscanf(args[0], "code%d", &code); err == nil {
			return fmt.Errorf("wrapped: %w", api.Errorf(api.Code(code), "message of %d", code))
		}
		return nil
	}
	e := startEnv(t, f, Options{})
	for _, code := range api.Codes() {
		if code == api.Success {
			continue
		}
		err := e.client.Create(e.ctx, fmt.Sprintf("code%d", code))
		ae := wantCode(t, err, code)
		if want := fmt.Sprintf("message of %d", code); ae.Message() != want {
			t.Errorf("%s: message %q, want %q", code, ae.Message(), want)
		}
	}
	// An unclassified error is Unknown with its text.
	ae := wantCode(t, e.client.Create(e.ctx, "plain"), api.Unknown)
	if ae.Message() != "create: disk on fire" {
		t.Errorf("unknown error message %q", ae.Message())
	}
	// A Code the table does not know is Unknown too.
	f.mu.Lock()
	f.hook = func(context.Context, string, service.Caller, []string) error {
		return &api.Error{Code: 999, Msg: "odd"}
	}
	f.mu.Unlock()
	wantCode(t, e.client.Create(e.ctx, "x"), api.Unknown)
}

func TestPanicRecovered(t *testing.T) {
	f := newFake()
	f.hook = func(ctx context.Context, method string, c service.Caller, args []string) error {
		if method == "Start" {
			var m map[string]int
			m["boom"]++ // nil map write: a real runtime panic
		}
		return nil
	}
	e := startEnv(t, f, Options{})
	if err := e.client.Create(e.ctx, "p"); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		ae := wantCode(t, e.client.Start(e.ctx, "p"), api.Unknown)
		if !strings.Contains(ae.Message(), "internal error in Start") {
			t.Errorf("panic message %q", ae.Message())
		}
	}
	if _, err := e.client.Version(e.ctx); err != nil {
		t.Fatalf("server dead after panic: %v", err)
	}
	if err := e.client.Destroy(e.ctx, "p"); err != nil {
		t.Fatal(err)
	}
}

func TestIdentityFromBus(t *testing.T) {
	f := newFake()
	e := startEnv(t, f, Options{})
	if err := e.client.Create(e.ctx, "who"); err != nil {
		t.Fatal(err)
	}
	c := f.lastCaller()
	if c.UID != uint32(os.Getuid()) {
		t.Errorf("caller uid %d, want %d", c.UID, os.Getuid())
	}
	if c.Pid != int32(os.Getpid()) {
		t.Errorf("caller pid %d, want %d", c.Pid, os.Getpid())
	}
	if c.GID != uint32(os.Getegid()) {
		t.Errorf("caller gid %d, want %d", c.GID, os.Getegid())
	}
	// The identity is cached per sender and dropped when it leaves.
	sender := e.cconn.Names()[0]
	e.srv.mu.Lock()
	_, cached := e.srv.peers[sender]
	e.srv.mu.Unlock()
	if !cached {
		t.Fatalf("identity of %s not cached", sender)
	}
	_ = e.cconn.Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		e.srv.mu.Lock()
		_, cached = e.srv.peers[sender]
		e.srv.mu.Unlock()
		if !cached {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("identity not forgotten after disconnect")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

type fakeAuth struct {
	mu    sync.Mutex
	asked []string // "sender action interactive"
	allow bool
}

func (a *fakeAuth) Authorize(ctx context.Context, sender, action string, interactive bool) (bool, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.asked = append(a.asked, fmt.Sprintf("%s %s %v", sender, action, interactive))
	return a.allow, nil
}

func TestAuthorizer(t *testing.T) {
	for _, interactive := range []bool{false, true} {
		t.Run(fmt.Sprint("interactive=", interactive), func(t *testing.T) {
			f := newFake()
			f.hook = func(ctx context.Context, method string, c service.Caller, args []string) error {
				if method != "Kill" {
					return nil
				}
				ok, err := c.Authorize(ctx, api.ActionManageAny)
				if err != nil {
					return err
				}
				if !ok {
					return api.Errorf(api.Permission, "Permission error")
				}
				return nil
			}
			auth := &fakeAuth{}
			e := startEnv(t, f, Options{Authorizer: auth}, client.WithInteractive(interactive))
			if err := e.client.Create(e.ctx, "k"); err != nil {
				t.Fatal(err)
			}
			if err := e.client.Start(e.ctx, "k"); err != nil {
				t.Fatal(err)
			}
			wantCode(t, e.client.Kill(e.ctx, "k", 15), api.Permission)
			auth.mu.Lock()
			auth.allow = true
			auth.mu.Unlock()
			if err := e.client.Kill(e.ctx, "k", 15); err != nil {
				t.Fatal(err)
			}
			want := fmt.Sprintf("%s %s %v", e.cconn.Names()[0], api.ActionManageAny, interactive)
			auth.mu.Lock()
			defer auth.mu.Unlock()
			if len(auth.asked) != 2 || auth.asked[0] != want || auth.asked[1] != want {
				t.Errorf("authorizer asked %q, want twice %q", auth.asked, want)
			}
		})
	}
}

// Without polkitd on the bus the real Authorizer says no, without error.
func TestPolkitAbsent(t *testing.T) {
	addr := startBus(t)
	conn := connect(t, addr)
	ok, err := NewPolkit(conn).Authorize(context.Background(), conn.Names()[0], api.ActionManageAny, true)
	if ok || err != nil {
		t.Fatalf("Authorize without polkitd = %v, %v; want false, nil", ok, err)
	}
}

// The real polkit Authorizer sends the subject and flags polkit expects.
func TestPolkitCall(t *testing.T) {
	addr := startBus(t)
	pk := connect(t, addr)
	got := make(chan string, 4)
	authority := &fakeAuthority{got: got}
	if err := pk.Export(authority, polkitPath, polkitInterface); err != nil {
		t.Fatal(err)
	}
	if r, err := pk.RequestName(polkitBusName, dbus.NameFlagDoNotQueue); err != nil || r != dbus.RequestNameReplyPrimaryOwner {
		t.Fatalf("RequestName polkit: %v %v", r, err)
	}
	conn := connect(t, addr)
	p := NewPolkit(conn)
	ok, err := p.Authorize(context.Background(), ":1.42", api.ActionSetPrivileged, true)
	if err != nil || !ok {
		t.Fatalf("Authorize = %v, %v", ok, err)
	}
	if g := <-got; g != "system-bus-name :1.42 org.porto.set-privileged 1" {
		t.Errorf("polkit got %q", g)
	}
	ok, err = p.Authorize(context.Background(), ":1.43", api.ActionManageAny, false)
	if err != nil || ok {
		t.Fatalf("Authorize = %v, %v", ok, err)
	}
	if g := <-got; g != "system-bus-name :1.43 org.porto.manage-any 0" {
		t.Errorf("polkit got %q", g)
	}
	// The Varlink edge's subject: a process, with typed details.
	ok, err = p.AuthorizeProcess(context.Background(), apiserver.Process{Pid: 4242, StartTime: 987654321, UID: 1000, Pidfd: -1}, api.ActionSetPrivileged, true)
	if err != nil || !ok {
		t.Fatalf("AuthorizeProcess = %v, %v", ok, err)
	}
	if g := <-got; g != "unix-process pid=4242,start-time=987654321,uid=1000 org.porto.set-privileged 1" {
		t.Errorf("polkit got %q", g)
	}
	// With a pidfd (here: of this process) it goes along as a unix fd.
	pidfd, err := unix.PidfdOpen(os.Getpid(), 0)
	if err != nil {
		t.Skipf("pidfd_open: %v", err)
	}
	defer unix.Close(pidfd)
	if _, err := p.AuthorizeProcess(context.Background(), apiserver.Process{Pid: int32(os.Getpid()), StartTime: 1, UID: 0, Pidfd: pidfd}, api.ActionManageAny, false); err != nil {
		t.Fatal(err)
	}
	if g := <-got; g != fmt.Sprintf("unix-process pid=%d,start-time=1,uid=0,pidfd-of=%d org.porto.manage-any 0", os.Getpid(), os.Getpid()) {
		t.Errorf("polkit got %q", g)
	}
}

type fakeAuthority struct{ got chan string }

func (a *fakeAuthority) CheckAuthorization(subject polkitSubject, action string, details map[string]string, flags uint32, cancel string) (polkitResult, *dbus.Error) {
	name, _ := subject.Details["name"].Value().(string)
	if subject.Kind == "unix-process" {
		pid, _ := subject.Details["pid"].Value().(uint32)
		start, _ := subject.Details["start-time"].Value().(uint64)
		uid, _ := subject.Details["uid"].Value().(int32)
		name = fmt.Sprintf("pid=%d,start-time=%d,uid=%d", pid, start, uid)
		if v, ok := subject.Details["pidfd"]; ok {
			fd, _ := v.Value().(dbus.UnixFD)
			name += fmt.Sprintf(",pidfd-of=%d", pidOfFD(int(fd)))
			unix.Close(int(fd))
		}
	}
	a.got <- fmt.Sprintf("%s %s %s %d", subject.Kind, name, action, flags)
	return polkitResult{IsAuthorized: action == api.ActionSetPrivileged, Details: map[string]string{}}, nil
}

// A call whose sender disconnects has its context cancelled.
func TestDisconnectCancelsCall(t *testing.T) {
	f := newFake()
	cancelled := make(chan struct{})
	f.hook = func(ctx context.Context, method string, c service.Caller, args []string) error {
		if method == "Wait" {
			<-ctx.Done()
			close(cancelled)
			return ctx.Err()
		}
		return nil
	}
	e := startEnv(t, f, Options{})
	if err := e.client.Create(e.ctx, "w"); err != nil {
		t.Fatal(err)
	}
	other := connect(t, e.addr)
	go func() { _, _ = client.NewWithConn(other).Wait(context.Background(), []string{"w"}, -1) }()
	time.Sleep(200 * time.Millisecond)
	_ = other.Close()
	select {
	case <-cancelled:
	case <-time.After(5 * time.Second):
		t.Fatal("Wait not cancelled after its caller left the bus")
	}
}

func TestInputLimits(t *testing.T) {
	f := newFake()
	e := startEnv(t, f, Options{})
	c, ctx := e.client, e.ctx
	before := f.callCount()
	big := strings.Repeat("a", 1<<20)
	wantCode(t, c.Create(ctx, big), api.InvalidValue)
	wantCode(t, c.SetProperty(ctx, "x", "command", big), api.InvalidValue)
	many := make([]string, DefaultMaxListLen+1)
	for i := range many {
		many[i] = fmt.Sprint("c", i)
	}
	_, err := c.Get(ctx, many, []string{"state"})
	wantCode(t, err, api.InvalidValue)
	_, err = c.Get(ctx, []string{"x"}, many)
	wantCode(t, err, api.InvalidValue)
	_, err = c.Wait(ctx, many, 0)
	wantCode(t, err, api.InvalidValue)
	_, err = c.Get(ctx, many[:5000], many[:5000])
	wantCode(t, err, api.InvalidValue)
	if n := f.callCount(); n != before {
		t.Errorf("oversized input reached the service (%d calls)", n-before)
	}
	// Still responsive.
	if err := c.Create(ctx, strings.Repeat("n", 128)); err != nil {
		t.Fatal(err)
	}
}

func TestWrongSignatures(t *testing.T) {
	f := newFake()
	e := startEnv(t, f, Options{})
	before := f.callCount()
	obj := e.cconn.Object(api.BusName, api.ManagerPath)
	cases := []struct {
		method string
		args   []any
		want   string
	}{
		{"Create", []any{int32(5)}, "org.freedesktop.DBus.Error.InvalidArgs"},
		{"Create", nil, "org.freedesktop.DBus.Error.InvalidArgs"},
		{"Create", []any{"a", "b"}, "org.freedesktop.DBus.Error.InvalidArgs"},
		{"Stop", []any{"a", "b"}, "org.freedesktop.DBus.Error.InvalidArgs"},
		{"Get", []any{"a", "b"}, "org.freedesktop.DBus.Error.InvalidArgs"},
		{"Wait", []any{[]int32{1}, int32(1)}, "org.freedesktop.DBus.Error.InvalidArgs"},
		{"NoSuchMethod", nil, "org.freedesktop.DBus.Error.UnknownMethod"},
	}
	for _, tc := range cases {
		err := obj.Call(api.ManagerInterface+"."+tc.method, 0, tc.args...).Err
		var de dbus.Error
		if !errors.As(err, &de) || de.Name != tc.want {
			t.Errorf("%s%v: got %v, want %s", tc.method, tc.args, err, tc.want)
		}
	}
	err := obj.Call("org.porto.NoSuchInterface.Create", 0, "x").Err
	var de dbus.Error
	if !errors.As(err, &de) || de.Name != "org.freedesktop.DBus.Error.UnknownInterface" {
		t.Errorf("unknown interface: %v", err)
	}
	err = e.cconn.Object(api.BusName, "/org/porto/Nothing").Call(api.ManagerInterface+".Create", 0, "x").Err
	if err == nil {
		t.Errorf("call on a missing object succeeded")
	}
	if n := f.callCount(); n != before {
		t.Errorf("%d malformed calls reached the service", n-before)
	}
	// The client maps them to InvalidMethod.
	if _, err := e.client.Version(e.ctx); err != nil {
		t.Fatal(err)
	}
}

// busctl, as an administrator would use it: create, set, start, get,
// destroy, plus wrong types and unknown methods.
func TestBusctl(t *testing.T) {
	busctl, err := exec.LookPath("busctl")
	if err != nil {
		t.Skip("busctl not installed")
	}
	f := newFake()
	e := startEnv(t, f, Options{})
	run := func(args ...string) (string, error) {
		cmd := exec.Command(busctl, append([]string{"--address=" + e.addr}, args...)...)
		out, err := cmd.CombinedOutput()
		return strings.TrimSpace(string(out)), err
	}
	call := func(args ...string) (string, error) {
		return run(append([]string{"call", api.BusName, api.ManagerPath, api.ManagerInterface}, args...)...)
	}
	for _, args := range [][]string{
		{"Create", "s", "demo"},
		{"SetProperty", "sss", "demo", "command", "sleep 1000"},
		{"Start", "s", "demo"},
	} {
		if out, err := call(args...); err != nil {
			t.Fatalf("busctl call %v: %v: %s", args, err, out)
		}
	}
	if out, err := call("GetProperty", "ss", "demo", "state"); err != nil || out != `s "running"` {
		t.Fatalf("GetProperty: %q, %v", out, err)
	}
	if out, err := call("Get", "asas", "1", "demo", "2", "state", "bogus"); err != nil || !strings.Contains(out, "org.porto.Error.InvalidProperty") {
		t.Fatalf("Get: %q, %v", out, err)
	}
	if out, err := call("Create", "s", "demo"); err == nil || !strings.Contains(out, "already exists") {
		t.Fatalf("duplicate Create: %q, %v", out, err)
	}
	if out, err := call("Create", "i", "5"); err == nil {
		t.Fatalf("Create with an int succeeded: %q", out)
	}
	if out, err := call("Frobnicate"); err == nil {
		t.Fatalf("unknown method succeeded: %q", out)
	}
	if out, err := run("get-property", api.BusName, api.ContainerPath("demo"), api.ContainerInterface, api.PropState); err != nil || out != `s "running"` {
		t.Fatalf("get-property State: %q, %v", out, err)
	}
	if out, err := run("set-property", api.BusName, api.ContainerPath("demo"), api.ContainerInterface, api.PropState, "s", "dead"); err == nil {
		t.Fatalf("set-property succeeded: %q", out)
	}
	out, err := run("introspect", api.BusName, api.ManagerPath)
	if err != nil || !strings.Contains(out, ".SetProperty") || !strings.Contains(out, ".StateChanged") {
		t.Fatalf("introspect: %v\n%s", err, out)
	}
	if out, err := call("Destroy", "s", "demo"); err != nil {
		t.Fatalf("Destroy: %v: %s", err, out)
	}
	if _, err := e.client.Version(e.ctx); err != nil {
		t.Fatal(err)
	}
}

func introspectNode(t *testing.T, conn *dbus.Conn, path string) *introspect.Node {
	t.Helper()
	var s string
	if err := conn.Object(api.BusName, dbus.ObjectPath(path)).Call(introspectableInterface+".Introspect", 0).Store(&s); err != nil {
		t.Fatalf("Introspect %s: %v", path, err)
	}
	var n introspect.Node
	if err := xml.Unmarshal([]byte(s), &n); err != nil {
		t.Fatalf("introspection of %s: %v\n%s", path, err, s)
	}
	return &n
}

func findIface(n *introspect.Node, name string) *introspect.Interface {
	for i := range n.Interfaces {
		if n.Interfaces[i].Name == name {
			return &n.Interfaces[i]
		}
	}
	return nil
}

func TestIntrospection(t *testing.T) {
	f := newFake()
	e := startEnv(t, f, Options{})
	if err := e.client.Create(e.ctx, "a"); err != nil {
		t.Fatal(err)
	}
	n := introspectNode(t, e.cconn, api.ManagerPath)
	mi := findIface(n, api.ManagerInterface)
	if mi == nil {
		t.Fatalf("no %s in introspection", api.ManagerInterface)
	}
	if len(mi.Methods) != 14 || len(mi.Signals) != 1 {
		t.Fatalf("%d methods, %d signals", len(mi.Methods), len(mi.Signals))
	}
	for _, m := range mi.Methods {
		for _, a := range m.Args {
			if a.Name == "" {
				t.Errorf("%s has an unnamed argument", m.Name)
			}
		}
	}
	waitFor(t, func() bool { return e.srv.hasObject("a") })
	cn := introspectNode(t, e.cconn, api.ContainerPath("a"))
	ci := findIface(cn, api.ContainerInterface)
	if ci == nil || len(ci.Properties) != 7 || findIface(cn, propertiesInterface) == nil {
		t.Fatalf("container introspection: %+v", cn)
	}
	parent := introspectNode(t, e.cconn, api.ContainerPathPrefix)
	if len(parent.Children) != 1 || parent.Children[0].Name != api.EscapePath("a") {
		t.Errorf("children of %s: %+v", api.ContainerPathPrefix, parent.Children)
	}
}

func (s *Server) hasObject(name string) bool {
	s.propMu.RLock()
	defer s.propMu.RUnlock()
	_, ok := s.props[name]
	return ok
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached in 5s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestContainerObjectsAndSignals(t *testing.T) {
	f := newFake()
	if err := f.Create(context.Background(), service.Root, "old"); err != nil {
		t.Fatal(err)
	}
	e := startEnv(t, f, Options{})
	c, ctx := e.client, e.ctx
	// Objects exist for containers that existed at Export time.
	if !e.srv.hasObject("old") {
		t.Fatal("no object for a container created before Export")
	}
	wctx, wcancel := context.WithCancel(ctx)
	defer wcancel()
	changes, err := c.Watch(wctx)
	if err != nil {
		t.Fatal(err)
	}
	propsChanged := make(chan *dbus.Signal, 64)
	if err := e.cconn.AddMatchSignal(dbus.WithMatchInterface(propertiesInterface), dbus.WithMatchMember("PropertiesChanged")); err != nil {
		t.Fatal(err)
	}
	e.cconn.Signal(propsChanged)

	next := func() client.StateChange {
		t.Helper()
		select {
		case sc := <-changes:
			return sc
		case <-time.After(5 * time.Second):
			t.Fatal("no StateChanged signal")
		}
		return client.StateChange{}
	}
	if err := c.Create(ctx, "x/y"); !errors.Is(err, api.ErrContainerDoesNotExist) {
		t.Fatalf("Create x/y: %v", err)
	}
	if err := c.Create(ctx, "w"); err != nil {
		t.Fatal(err)
	}
	if sc := next(); sc.Name != "w" || sc.State != api.StateStopped || sc.Path != dbus.ObjectPath(api.ContainerPath("w")) {
		t.Fatalf("signal %+v", sc)
	}
	obj := e.cconn.Object(api.BusName, dbus.ObjectPath(api.ContainerPath("w")))
	getProp := func(name string) any {
		t.Helper()
		v, err := obj.GetProperty(api.ContainerInterface + "." + name)
		if err != nil {
			t.Fatalf("GetProperty %s: %v", name, err)
		}
		return v.Value()
	}
	if got := getProp(api.PropState); got != "stopped" {
		t.Fatalf("State = %v", got)
	}
	if got := getProp(api.PropParent); got != "/" {
		t.Fatalf("Parent = %v", got)
	}
	if err := c.SetProperty(ctx, "w", "command", "sleep 1"); err != nil {
		t.Fatal(err)
	}
	if err := c.Start(ctx, "w"); err != nil {
		t.Fatal(err)
	}
	if sc := next(); sc.Name != "w" || sc.State != api.StateRunning {
		t.Fatalf("signal %+v", sc)
	}
	if got := getProp(api.PropState); got != "running" {
		t.Fatalf("State = %v", got)
	}
	if got := getProp(api.PropRootPid); got != int32(4242) {
		t.Fatalf("RootPid = %#v", got)
	}
	if got := getProp(api.PropCommand); got != "sleep 1" {
		t.Fatalf("Command = %#v", got)
	}
	// PropertiesChanged carried the new state.
	deadline := time.After(5 * time.Second)
	for found := false; !found; {
		select {
		case sig := <-propsChanged:
			if sig.Path != obj.Path() || len(sig.Body) != 3 {
				continue
			}
			changed, _ := sig.Body[1].(map[string]dbus.Variant)
			if v, ok := changed[api.PropState]; ok && v.Value() == "running" {
				found = true
			}
		case <-deadline:
			t.Fatal("no PropertiesChanged with State=running")
		}
	}
	all := map[string]dbus.Variant{}
	if err := obj.Call(propertiesInterface+".GetAll", 0, api.ContainerInterface).Store(&all); err != nil || len(all) != 7 {
		t.Fatalf("GetAll = %v, %v", all, err)
	}
	err = obj.Call(propertiesInterface+".Set", 0, api.ContainerInterface, api.PropState, dbus.MakeVariant("dead")).Err
	var de dbus.Error
	if !errors.As(err, &de) || de.Name != "org.freedesktop.DBus.Error.PropertyReadOnly" {
		t.Fatalf("Set: %v", err)
	}
	if err := c.Destroy(ctx, "w"); err != nil {
		t.Fatal(err)
	}
	if sc := next(); sc.Name != "w" || !sc.Destroyed || sc.State != api.StateDestroyed {
		t.Fatalf("signal %+v", sc)
	}
	if _, err := obj.GetProperty(api.ContainerInterface + "." + api.PropState); err == nil {
		t.Fatal("object still answers after destroy")
	}
	wcancel()
	for range changes {
	}
}

// Events dropped by the service are caught up by the periodic resync.
func TestResync(t *testing.T) {
	f := newFake()
	e := startEnv(t, f, Options{ResyncInterval: 50 * time.Millisecond})
	f.mu.Lock()
	f.cts["ghost"] = &fakeCT{state: api.StateRunning, exit: -1} // no event
	f.mu.Unlock()
	waitFor(t, func() bool { return e.srv.hasObject("ghost") })
	f.mu.Lock()
	delete(f.cts, "ghost") // no event either
	f.mu.Unlock()
	waitFor(t, func() bool { return !e.srv.hasObject("ghost") })
}

func TestRequestNameTaken(t *testing.T) {
	f := newFake()
	e := startEnv(t, f, Options{})
	conn2 := connect(t, e.addr)
	s2 := newServer(newFake(), Options{Logger: testLogger(t)})
	defer s2.Close()
	if err := s2.Export(conn2); err != nil {
		t.Fatal(err)
	}
	err := s2.RequestName()
	if err == nil || !strings.Contains(err.Error(), "already taken") {
		t.Fatalf("second RequestName: %v", err)
	}
}

// Without anyone owning the name the client says porto is not running.
func TestClientNotRunning(t *testing.T) {
	addr := startBus(t)
	c := client.NewWithConn(connect(t, addr))
	_, err := c.Version(context.Background())
	ae := wantCode(t, err, api.Unknown)
	if !strings.Contains(ae.Message(), "porto is not running") {
		t.Errorf("message %q", ae.Message())
	}
}

func TestClientNew(t *testing.T) {
	addr := startBus(t)
	t.Setenv("DBUS_SYSTEM_BUS_ADDRESS", addr)
	c, err := client.New()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	conn, err := ConnectSystemBus()
	if err != nil {
		t.Fatal(err)
	}
	conn.Close()
	t.Setenv("DBUS_SYSTEM_BUS_ADDRESS", "unix:path=/nonexistent/porto-test-bus")
	if _, err := client.New(); api.CodeOf(err) != api.Unknown || !strings.Contains(err.Error(), "/nonexistent/porto-test-bus") {
		t.Errorf("New on a missing bus: %v", err)
	}
	if _, err := ConnectSystemBus(); err == nil || !strings.Contains(err.Error(), "/nonexistent/porto-test-bus") {
		t.Errorf("ConnectSystemBus on a missing bus: %v", err)
	}
}

// A reply over the bus's message limit would get portod disconnected by
// dbus-daemon: such calls fail instead, and the daemon stays on the bus.
func TestReplySizeCap(t *testing.T) {
	f := newFake()
	e := startEnv(t, f, Options{})
	c, ctx := e.client, e.ctx
	for _, n := range []string{"a", "b", "c"} {
		if err := c.Create(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	f.mu.Lock()
	f.cts["a"].command = strings.Repeat("x", 40<<20)
	f.cts["b"].command = strings.Repeat("y", 10<<20)
	f.cts["c"].command = strings.Repeat("z", 10<<20)
	f.mu.Unlock()
	_, err := c.GetProperty(ctx, "a", "command")
	ae := wantCode(t, err, api.ResourceNotAvailable)
	if !strings.Contains(ae.Message(), "41943040 bytes") {
		t.Errorf("message %q", ae.Message())
	}
	if v, err := c.GetProperty(ctx, "b", "command"); err != nil || len(v) != 10<<20 {
		t.Fatalf("10 MiB GetProperty: %d, %v", len(v), err)
	}
	_, err = c.Get(ctx, []string{"b", "c"}, []string{"command"})
	wantCode(t, err, api.ResourceNotAvailable)
	_, err = c.Get(ctx, []string{"b", "b"}, []string{"command"})
	wantCode(t, err, api.ResourceNotAvailable)
	if res, err := c.Get(ctx, []string{"b"}, []string{"command", "state"}); err != nil || len(res) != 2 {
		t.Fatalf("Get under the cap: %v", err)
	}
	if _, err := c.Version(ctx); err != nil {
		t.Fatalf("portod lost the bus: %v", err)
	}
}

func TestServeReturnsWhenBusCloses(t *testing.T) {
	addr := startBus(t)
	conn := connect(t, addr)
	s := newServer(newFake(), Options{Logger: testLogger(t)})
	defer s.Close()
	if err := s.Export(conn); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(context.Background()) }()
	conn.Close()
	select {
	case err := <-done:
		if !errors.Is(err, ErrBusClosed) {
			t.Fatalf("Serve = %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return after the bus connection closed")
	}
}

// pidOfFD is the pid a pidfd refers to (the Pid: line of its fdinfo), -1
// if it is not a pidfd.
func pidOfFD(fd int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/self/fdinfo/%d", fd))
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "Pid:"); ok {
			var pid int
			if _, err := fmt.Sscan(strings.TrimSpace(v), &pid); err == nil {
				return pid
			}
		}
	}
	return -1
}
