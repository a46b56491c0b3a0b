package dbusapi

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/godbus/dbus/v5"

	"github.com/porto-dev/porto/api"
	"github.com/porto-dev/porto/api/client"
	"github.com/porto-dev/porto/apiserver/apitest"
	"github.com/porto-dev/porto/isolation"
	"github.com/porto-dev/porto/service"
	"github.com/porto-dev/porto/units"
)

// fakeSpawner never runs anything: these tests stop short of Start.
type fakeSpawner struct{ exits chan isolation.Exit }

func (s *fakeSpawner) Spawn(isolation.LaunchSpec, []*os.File) (int, error) {
	return 0, api.Errorf(api.NotSupported, "the test spawner does not spawn")
}
func (s *fakeSpawner) Exits() <-chan isolation.Exit { return s.exits }
func (s *fakeSpawner) Ack(int) error                { return nil }
func (s *fakeSpawner) SupervisorPid() int           { return os.Getpid() }

// fakeCgroups keeps cgroups in a set.
type fakeCgroups struct {
	mu  sync.Mutex
	cgs map[string]bool
}

func (c *fakeCgroups) Create(name string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cgs[name] = true
	return nil
}
func (c *fakeCgroups) Attach(string, int) error          { return nil }
func (c *fakeCgroups) Procs(string) ([]int, error)       { return nil, nil }
func (c *fakeCgroups) Kill(string, syscall.Signal) error { return nil }
func (c *fakeCgroups) Freeze(string) error               { return nil }
func (c *fakeCgroups) Thaw(string) error                 { return nil }
func (c *fakeCgroups) Frozen(string) (bool, error)       { return false, nil }
func (c *fakeCgroups) Apply(string, units.Limits) error  { return nil }
func (c *fakeCgroups) Stats(string) (units.Stats, error) { return units.Stats{}, nil }
func (c *fakeCgroups) OOMKills(string) (uint64, error)   { return 0, nil }
func (c *fakeCgroups) Remove(name string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.cgs, name)
	return nil
}
func (c *fakeCgroups) Exists(name string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cgs[name]
}

func newRealManager(t *testing.T) *service.Manager {
	t.Helper()
	cfg := service.DefaultConfig()
	cfg.StateDir = t.TempDir()
	cfg.Place = t.TempDir()
	m, err := service.New(cfg, &fakeSpawner{exits: make(chan isolation.Exit)}, &fakeCgroups{cgs: map[string]bool{}}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Restore(context.Background()); err != nil {
		t.Fatal(err)
	}
	m.Run()
	t.Cleanup(m.Close)
	return m
}

func skipIfNotImplemented(t *testing.T, err error) {
	t.Helper()
	if err != nil && api.CodeOf(err) == api.NotSupported && strings.Contains(err.Error(), "not implemented") {
		t.Skipf("service not implemented yet: %v", err)
	}
}

// The real service.Manager behind the real D-Bus edge.
func TestRealService(t *testing.T) {
	m := newRealManager(t)
	e := startEnv(t, m, Options{})
	c, ctx := e.client, e.ctx
	err := c.Create(ctx, "demo")
	skipIfNotImplemented(t, err)
	if err != nil {
		t.Fatal(err)
	}
	wantCode(t, c.Create(ctx, "demo"), api.ContainerAlreadyExists)
	wantCode(t, c.Create(ctx, "a/../b"), api.InvalidValue)
	wantCode(t, c.Create(ctx, "missing/child"), api.ContainerDoesNotExist)
	if err := c.SetProperty(ctx, "demo", "command", "sleep 1000"); err != nil {
		t.Fatal(err)
	}
	if v, err := c.GetProperty(ctx, "demo", "command"); err != nil || v != "sleep 1000" {
		t.Fatalf("GetProperty command = %q, %v", v, err)
	}
	if v, err := c.GetProperty(ctx, "demo", "state"); err != nil || v != "stopped" {
		t.Fatalf("GetProperty state = %q, %v", v, err)
	}
	_, err = c.GetProperty(ctx, "demo", "no_such_property")
	wantCode(t, err, api.InvalidProperty)
	_, err = c.GetProperty(ctx, "nobody", "state")
	wantCode(t, err, api.ContainerDoesNotExist)
	res, err := c.Get(ctx, []string{"demo"}, []string{"state", "no_such_property"})
	if err != nil || len(res) != 2 || res[0].Value != "stopped" || res[0].Err != nil || res[1].Err == nil || res[1].Err.Code != api.InvalidProperty {
		t.Fatalf("Get = %+v, %v", res, err)
	}
	names, err := c.List(ctx)
	if err != nil || len(names) != 1 || names[0] != "demo" {
		t.Fatalf("List = %q, %v", names, err)
	}
	ps, err := c.ListProperties(ctx)
	if err != nil || len(ps) == 0 {
		t.Fatalf("ListProperties: %d, %v", len(ps), err)
	}
	// The container's object shows the typed properties.
	waitFor(t, func() bool { return e.srv.hasObject("demo") })
	obj := e.cconn.Object(api.BusName, dbus.ObjectPath(api.ContainerPath("demo")))
	if v, err := obj.GetProperty(api.ContainerInterface + "." + api.PropState); err != nil || v.Value() != "stopped" {
		t.Fatalf("State property = %v, %v", v, err)
	}
	waitFor(t, func() bool {
		v, err := obj.GetProperty(api.ContainerInterface + "." + api.PropCommand)
		return err == nil && v.Value() == "sleep 1000"
	})
	if err := c.Destroy(ctx, "demo"); err != nil {
		t.Fatal(err)
	}
	wantCode(t, c.Destroy(ctx, "demo"), api.ContainerDoesNotExist)
	waitFor(t, func() bool { return !e.srv.hasObject("demo") })
}

// A non-root caller (identity faked where the bus would give it) meets the
// service's permission checks, and polkit (faked) can lift them.
func TestRealServicePermissions(t *testing.T) {
	m := newRealManager(t)
	auth := &fakeAuth{}
	e := startEnv(t, m, Options{Authorizer: auth})
	c, ctx := e.client, e.ctx
	if err := c.Create(ctx, "roots"); err != nil {
		skipIfNotImplemented(t, err)
		t.Fatal(err)
	}
	e.srv.mu.Lock()
	e.srv.identify = func(context.Context, *dbus.Conn, string) (identity, error) {
		return identity{UID: 4321, GID: 4321, Groups: []uint32{4321}}, nil
	}
	clear(e.srv.peers)
	e.srv.mu.Unlock()

	ae := wantCode(t, c.Destroy(ctx, "roots"), api.Permission)
	if ae.Message() != "Permission error" {
		t.Errorf("destroy message %q", ae.Message())
	}
	if err := c.Create(ctx, "mine"); err != nil {
		t.Fatal(err)
	}
	ae = wantCode(t, c.SetProperty(ctx, "mine", "user", "root"), api.Permission)
	if ae.Message() != "Only root can change this property" {
		t.Errorf("set user message %q", ae.Message())
	}
	auth.mu.Lock()
	auth.allow = true
	auth.mu.Unlock()
	if err := c.SetProperty(ctx, "mine", "user", "root"); err != nil {
		t.Fatalf("polkit-authorized set user: %v", err)
	}
	if err := c.Destroy(ctx, "roots"); err != nil {
		t.Fatalf("polkit-authorized destroy: %v", err)
	}
	if err := c.Destroy(ctx, "mine"); err != nil {
		t.Fatal(err)
	}
}

// Odd and hostile names get errors, never a crash, and the daemon keeps
// answering; concurrent clients are served.
func TestRealServiceHostileAndConcurrent(t *testing.T) {
	m := newRealManager(t)
	e := startEnv(t, m, Options{})
	c, ctx := e.client, e.ctx
	if err := c.Create(ctx, "ok"); err != nil {
		skipIfNotImplemented(t, err)
		t.Fatal(err)
	}
	for _, name := range []string{
		"", "/", "/x", "x/", "a//b", "..", "ok/..", "ok/.", "sp ace", "semi;colon", "dollar$", "é",
		strings.Repeat("a", 129), strings.Repeat("a/", 100) + "a", strings.Repeat("b", 201),
		"ok/" + strings.Repeat("x/", 20) + "y", "\t", "a\nb",
	} {
		err := c.Create(ctx, name)
		if code := api.CodeOf(err); code != api.InvalidValue && code != api.ContainerDoesNotExist && code != api.Permission && code != api.ContainerAlreadyExists {
			t.Errorf("Create(%q) = %v", name, err)
		}
		if _, err := c.GetProperty(ctx, name, "state"); err == nil && name != "/" {
			t.Errorf("GetProperty(%q) succeeded", name)
		}
	}
	// Invalid UTF-8 never reaches porto: the bus or godbus refuses it.
	if err := e.cconn.Object(api.BusName, api.ManagerPath).Call(api.ManagerInterface+".Create", 0, "\xff\xfe").Err; err == nil {
		t.Error("Create with invalid UTF-8 succeeded")
	}
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for i := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn, err := dbus.Connect(e.addr)
			if err != nil {
				errs <- err
				return
			}
			defer conn.Close()
			cl := clientFor(conn)
			for j := range 10 {
				name := fmt.Sprintf("c%d-%d", i, j)
				if err := cl.Create(ctx, name); err != nil {
					errs <- err
					return
				}
				if err := cl.SetProperty(ctx, name, "command", "true"); err != nil {
					errs <- err
					return
				}
				if v, err := cl.GetProperty(ctx, name, "command"); err != nil || v != "true" {
					errs <- fmt.Errorf("get %s: %q %v", name, v, err)
					return
				}
				if err := cl.Destroy(ctx, name); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if names, err := c.List(ctx); err != nil || len(names) != 1 {
		t.Fatalf("List after the concurrent run = %q, %v", names, err)
	}
}

func clientFor(conn *dbus.Conn) *client.Client { return client.NewWithConn(conn) }

// The shared permission table (apitest.PermTable, also run over Varlink by
// varlinkapi's tests) gives the same answers over D-Bus.
func TestPermissionTable(t *testing.T) {
	for _, interactive := range []bool{false, true} {
		t.Run(fmt.Sprint("interactive=", interactive), func(t *testing.T) {
			m := apitest.NewManager(t, testLogger(t))
			auth := &fakeAuth{}
			e := startEnv(t, m, Options{Authorizer: auth}, client.WithInteractive(interactive))
			otherConn := connect(t, e.addr)
			otherName := otherConn.Names()[0]
			e.srv.mu.Lock()
			e.srv.identify = func(ctx context.Context, conn *dbus.Conn, sender string) (identity, error) {
				if sender == otherName {
					return identity{UID: apitest.Other, GID: apitest.Other, Groups: []uint32{apitest.Other}}, nil
				}
				return busIdentify(ctx, conn, sender)
			}
			clear(e.srv.peers)
			e.srv.mu.Unlock()
			apitest.RunPermissions(t, apitest.PermEnv{
				Owner: e.client,
				Become: func(uint32) apitest.Client {
					return client.NewWithConn(otherConn, client.WithInteractive(interactive))
				},
				Allow: func(ok bool) {
					auth.mu.Lock()
					auth.allow = ok
					auth.mu.Unlock()
				},
				Asked: func() []string {
					auth.mu.Lock()
					asked := auth.asked
					auth.asked = nil
					auth.mu.Unlock()
					var actions []string
					for _, a := range asked {
						f := strings.Fields(a) // sender action interactive
						if f[0] != otherName || f[2] != fmt.Sprint(interactive) {
							t.Errorf("polkit asked %q", a)
						}
						actions = append(actions, f[1])
					}
					return actions
				},
			})
		})
	}
}
