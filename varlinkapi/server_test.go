package varlinkapi

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/porto-dev/porto/api"
	"github.com/porto-dev/porto/api/client"
	"github.com/porto-dev/porto/apiserver"
	"github.com/porto-dev/porto/apiserver/apitest"
	"github.com/porto-dev/porto/service"
)

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// sockDir is a short temporary directory (socket paths are limited to 108
// bytes, which t.TempDir() can exceed).
func sockDir(t testing.TB) string {
	d, err := os.MkdirTemp("", "vl")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

type env struct {
	srv  *Server
	path string
	m    *service.Manager
	ctx  context.Context
}

// start serves b (a real manager over fakes when nil) on a new socket.
func start(t testing.TB, b apiserver.Backend, opts Options, mods ...func(*Server)) *env {
	t.Helper()
	e := &env{}
	if b == nil {
		e.m = apitest.NewManager(t, nil)
		b = e.m
	}
	if opts.Logger == nil {
		opts.Logger = testLogger(t)
	}
	e.srv = newServer(b, opts)
	for _, m := range mods {
		m(e.srv)
	}
	e.path = filepath.Join(sockDir(t), "io.porto.Manager")
	l, err := Listen(e.path)
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- e.srv.Serve(l) }()
	t.Cleanup(func() {
		e.srv.Close()
		if err := <-served; !errors.Is(err, ErrServerClosed) {
			t.Errorf("Serve returned %v", err)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	e.ctx = ctx
	return e
}

func (e *env) client(t testing.TB, opts ...client.Option) *client.Client {
	t.Helper()
	c, err := client.NewVarlink(e.path, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if c.Transport() != client.TransportVarlink {
		t.Fatalf("transport %s", c.Transport())
	}
	return c
}

// raw is a bare protocol connection.
type raw struct {
	t  testing.TB
	nc net.Conn
	r  *bufio.Reader
}

func (e *env) raw(t testing.TB) *raw {
	t.Helper()
	nc, err := net.Dial("unix", e.path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	return &raw{t: t, nc: nc, r: bufio.NewReader(nc)}
}

func (r *raw) send(s string) {
	r.t.Helper()
	if _, err := r.nc.Write([]byte(s)); err != nil {
		r.t.Fatal(err)
	}
}

func (r *raw) call(method string, params any, more bool) {
	r.t.Helper()
	b, _ := json.Marshal(map[string]any{"method": method, "parameters": params, "more": more})
	r.send(string(b) + "\x00")
}

type rawReply struct {
	Parameters map[string]any `json:"parameters"`
	Continues  bool           `json:"continues"`
	Error      string         `json:"error"`
}

// recv reads one reply; io.EOF when the server closed the connection.
func (r *raw) recv() (rawReply, error) {
	r.nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	line, err := r.r.ReadBytes(0)
	if err != nil {
		return rawReply{}, err
	}
	var rep rawReply
	if err := json.Unmarshal(line[:len(line)-1], &rep); err != nil {
		r.t.Fatalf("bad reply %q: %v", line, err)
	}
	return rep, nil
}

func (r *raw) must() rawReply {
	r.t.Helper()
	rep, err := r.recv()
	if err != nil {
		r.t.Fatalf("no reply: %v", err)
	}
	return rep
}

func (r *raw) wantError(name string) rawReply {
	r.t.Helper()
	rep := r.must()
	if rep.Error != name {
		r.t.Fatalf("reply %+v, want error %s", rep, name)
	}
	return rep
}

func (r *raw) wantClosed() {
	r.t.Helper()
	if rep, err := r.recv(); err == nil {
		r.t.Fatalf("reply %+v, want the connection closed", rep)
	} else if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) && !strings.Contains(err.Error(), "reset") {
		r.t.Fatalf("read: %v, want EOF", err)
	}
}

// needRoot skips a test that starts containers: as non-root the service
// switches file-system credentials to the owner, which needs root.
func needRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("starting a container needs root (the service takes the owner's file-system credentials)")
	}
}

// waiter is the real service but for Wait, which waits as on a container
// that never finishes: until its timeout or until the call is cancelled
// (counted).
type waiter struct {
	apiserver.Backend
	mu        sync.Mutex
	started   int
	cancelled int
}

func (w *waiter) Wait(ctx context.Context, c service.Caller, names []string, timeout time.Duration) (string, error) {
	w.mu.Lock()
	w.started++
	w.mu.Unlock()
	var tc <-chan time.Time
	if timeout >= 0 {
		tc = time.After(timeout)
	}
	select {
	case <-tc:
		return "", nil
	case <-ctx.Done():
		w.mu.Lock()
		w.cancelled++
		w.mu.Unlock()
		return "", ctx.Err()
	}
}

func (w *waiter) starts() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.started
}

func (w *waiter) cancels() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.cancelled
}

func wantCode(t testing.TB, err error, code api.Code) *api.Error {
	t.Helper()
	if api.CodeOf(err) != code {
		t.Fatalf("got %v, want %v", err, code)
	}
	return api.AsError(err)
}

// The whole API through api/client over Varlink, against the real
// service.
func TestClientLifecycle(t *testing.T) {
	needRoot(t)
	e := start(t, nil, Options{})
	c := e.client(t)
	ctx := e.ctx
	if v, err := c.Version(ctx); err != nil || v != api.Version {
		t.Fatalf("Version = %q, %v", v, err)
	}
	events, err := c.Watch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Create(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	wantCode(t, c.Create(ctx, "a"), api.ContainerAlreadyExists)
	wantCode(t, c.Create(ctx, "a/../b"), api.InvalidValue)
	if err := c.SetProperty(ctx, "a", "command", "true"); err != nil {
		t.Fatal(err)
	}
	if err := c.Start(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if got, err := c.Wait(ctx, []string{"a"}, 10*time.Second); err != nil || got != "a" {
		t.Fatalf("Wait = %q, %v", got, err)
	}
	res, err := c.Get(ctx, []string{"a", "nope"}, []string{"state", "exit_status"})
	if err != nil || len(res) != 4 {
		t.Fatalf("Get = %+v, %v", res, err)
	}
	if res[0].Value != "dead" || res[1].Value != "0" || res[2].Err == nil || res[2].Err.Code != api.ContainerDoesNotExist {
		t.Fatalf("Get = %+v", res)
	}
	_, err = c.GetProperty(ctx, "a", "no_such_property")
	wantCode(t, err, api.InvalidProperty)
	if names, err := c.List(ctx); err != nil || !slices.Equal(names, []string{"a"}) {
		t.Fatalf("List = %q, %v", names, err)
	}
	if ps, err := c.ListProperties(ctx); err != nil || len(ps) == 0 {
		t.Fatalf("ListProperties = %d, %v", len(ps), err)
	}
	wantCode(t, c.Kill(ctx, "a", 9), api.InvalidState)
	wantCode(t, c.Pause(ctx, "nope"), api.ContainerDoesNotExist)
	if err := c.Stop(ctx, "a", time.Second); err != nil {
		t.Fatal(err)
	}
	if err := c.Destroy(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if got, err := c.Wait(ctx, []string{"a"}, 0); api.CodeOf(err) != api.ContainerDoesNotExist && got != "" {
		t.Fatalf("Wait on destroyed = %q, %v", got, err)
	}
	// The stream saw the whole story, ending with destroyed.
	var seen []string
	timeout := time.After(5 * time.Second)
	for len(seen) == 0 || seen[len(seen)-1] != "destroyed" {
		select {
		case sc, ok := <-events:
			if !ok {
				t.Fatalf("watch ended after %q", seen)
			}
			if sc.Name != "a" || string(sc.Path) != api.ContainerPath("a") {
				t.Fatalf("event %+v", sc)
			}
			seen = append(seen, string(sc.State))
		case <-timeout:
			t.Fatalf("events so far %q", seen)
		}
	}
	if seen[0] != "stopped" || !slices.Contains(seen, "running") || !slices.Contains(seen, "dead") {
		t.Errorf("events %q", seen)
	}
}

// The interface description parses, and it is exactly what is served:
// every method has a handler, every error is an api.Code.
func TestInterfaceDescription(t *testing.T) {
	if !strings.Contains(Description, "interface "+Interface+"\n") {
		t.Fatal("no interface line")
	}
	var idlMethods []string
	var idlErrors []string
	for _, line := range strings.Split(Description, "\n") {
		if f := strings.Fields(line); len(f) > 1 && f[0] == "method" {
			idlMethods = append(idlMethods, f[1][:strings.IndexByte(f[1], '(')])
		} else if len(f) > 1 && f[0] == "error" {
			idlErrors = append(idlErrors, f[1])
			if !strings.HasSuffix(line, "(message: string)") {
				t.Errorf("error %s: want (message: string)", f[1])
			}
		}
	}
	var served []string
	for m := range methods {
		served = append(served, m)
	}
	served = append(served, methodWatch)
	sort.Strings(idlMethods)
	sort.Strings(served)
	if !slices.Equal(idlMethods, served) {
		t.Errorf("IDL methods %q, served %q", idlMethods, served)
	}
	// The same methods as D-Bus (api's names), plus Watch for the signal.
	for _, m := range []string{api.MethodCreate, api.MethodDestroy, api.MethodStart, api.MethodStop, api.MethodKill,
		api.MethodPause, api.MethodResume, api.MethodWait, api.MethodList, api.MethodGet, api.MethodGetProperty,
		api.MethodSetProperty, api.MethodListProperties, api.MethodVersion} {
		if !slices.Contains(idlMethods, m) {
			t.Errorf("IDL lacks %s", m)
		}
	}
	var codes []string
	for _, c := range api.Codes() {
		if c != api.Success {
			codes = append(codes, c.String())
			if got, ok := CodeByErrorName(ErrorName(c)); !ok || got != c {
				t.Errorf("%v does not round-trip", c)
			}
		}
	}
	sort.Strings(codes)
	sort.Strings(idlErrors)
	if !slices.Equal(codes, idlErrors) {
		t.Errorf("IDL errors %q, codes %q", idlErrors, codes)
	}
	if client.VarlinkInterface != Interface || client.DefaultVarlinkSocket != DefaultSocket || client.VarlinkErrorPrefix != ErrorPrefix {
		t.Error("api/client's Varlink names differ from varlinkapi's")
	}
}

func TestProtocolErrors(t *testing.T) {
	e := start(t, nil, Options{MaxMessageSize: 4096})

	t.Run("errors keep the connection", func(t *testing.T) {
		r := e.raw(t)
		r.call("io.porto.Manager.Nope", nil, false)
		if rep := r.wantError(errMethodNotFound); rep.Parameters["method"] != "io.porto.Manager.Nope" {
			t.Errorf("%+v", rep)
		}
		r.call("com.example.X", nil, false)
		if rep := r.wantError(errInterfaceNotFound); rep.Parameters["interface"] != "com.example" {
			t.Errorf("%+v", rep)
		}
		r.call("Create", nil, false)
		r.wantError(errInterfaceNotFound)
		r.call("io.porto.Manager.Create", map[string]any{"name": 5}, false)
		if rep := r.wantError(errInvalidParameter); rep.Parameters["parameter"] != "name" {
			t.Errorf("%+v", rep)
		}
		r.call("io.porto.Manager.Create", map[string]any{}, false)
		if rep := r.wantError(errInvalidParameter); rep.Parameters["parameter"] != "name" {
			t.Errorf("%+v", rep)
		}
		r.call("io.porto.Manager.Create", map[string]any{"name": "x", "bogus": 1}, false)
		if rep := r.wantError(errInvalidParameter); rep.Parameters["parameter"] != "bogus" {
			t.Errorf("%+v", rep)
		}
		r.call("io.porto.Manager.Stop", map[string]any{"name": "x"}, false)
		if rep := r.wantError(errInvalidParameter); rep.Parameters["parameter"] != "timeout_ms" {
			t.Errorf("%+v", rep)
		}
		r.call("io.porto.Manager.Watch", nil, false)
		r.wantError(errExpectedMore)
		r.send(`{"method":"io.porto.Manager.Version","upgrade":true}` + "\x00")
		r.wantError(errInvalidParameter)
		r.call("io.porto.Manager.Create", map[string]any{"name": strings.Repeat("n", 200)}, false)
		if rep := r.wantError(ErrorName(api.InvalidValue)); rep.Parameters["message"] == "" {
			t.Errorf("%+v", rep)
		}
		// Oneway: no reply, but done.
		r.send(`{"method":"io.porto.Manager.Create","parameters":{"name":"ow"},"oneway":true}` + "\x00")
		r.call("io.porto.Manager.GetProperty", map[string]any{"name": "ow", "key": "state"}, false)
		if rep := r.must(); rep.Error != "" || rep.Parameters["value"] != "stopped" {
			t.Errorf("after oneway: %+v", rep)
		}
		// Pipelined calls are answered in order.
		var batch strings.Builder
		for i := range 20 {
			fmt.Fprintf(&batch, `{"method":"io.porto.Manager.GetProperty","parameters":{"name":"ow","key":"%s"}}`+"\x00",
				[]string{"state", "nope"}[i%2])
		}
		r.send(batch.String())
		for i := range 20 {
			rep := r.must()
			if (i%2 == 0) != (rep.Error == "") {
				t.Fatalf("reply %d out of order: %+v", i, rep)
			}
		}
		r.call("org.varlink.service.GetInfo", nil, false)
		if rep := r.must(); rep.Error != "" || rep.Parameters["product"] != "portod" {
			t.Errorf("GetInfo %+v", rep)
		}
	})
	for _, tc := range []struct {
		name, send string
		closeWrite bool
		want       string
	}{
		{"invalid JSON", "{\"method\":\x00", false, ErrorName(api.InvalidData)},
		{"not an object", "[1,2]\x00", false, ErrorName(api.InvalidData)},
		{"no method", `{"parameters":{}}` + "\x00", false, ErrorName(api.InvalidData)},
		{"too large", `{"method":"` + strings.Repeat("x", 5000) + `"}` + "\x00", false, ErrorName(api.InvalidData)},
		{"too large, never terminated", strings.Repeat("x", 100<<10), false, ErrorName(api.InvalidData)},
		{"no NUL at EOF", `{"method":"io.porto.Manager.Version"}`, true, ErrorName(api.InvalidData)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := e.raw(t)
			// Earlier calls are answered first.
			r.call("io.porto.Manager.Version", nil, false)
			r.send(tc.send)
			if tc.closeWrite {
				r.nc.(*net.UnixConn).CloseWrite()
			}
			if rep := r.must(); rep.Error != "" {
				t.Fatalf("first call: %+v", rep)
			}
			rep := r.wantError(tc.want)
			t.Logf("%s: %v", tc.name, rep.Parameters["message"])
			r.wantClosed()
		})
	}
	// Still serving.
	if _, err := e.client(t).Version(e.ctx); err != nil {
		t.Fatal(err)
	}
}

// A client that sends half a message and stalls is dropped after the
// message timeout; one that stops reading is dropped after the write
// timeout; neither holds up anyone else.
func TestSlowClients(t *testing.T) {
	e := start(t, nil, Options{MessageTimeout: 300 * time.Millisecond, WriteTimeout: 300 * time.Millisecond})
	c := e.client(t)
	if err := c.Create(e.ctx, "big"); err != nil {
		t.Fatal(err)
	}
	if err := c.SetProperty(e.ctx, "big", "command", "x "+strings.Repeat("y", 60<<10)); err != nil {
		t.Fatal(err)
	}

	stall := e.raw(t)
	stall.send(`{"method":"io.porto.Manager.Vers`)
	t0 := time.Now()

	// A reader that never reads: pipeline many big replies.
	deaf := e.raw(t)
	deaf.nc.(*net.UnixConn).SetReadBuffer(4096)
	var batch strings.Builder
	for range 30 {
		batch.WriteString(`{"method":"io.porto.Manager.GetProperty","parameters":{"name":"big","key":"command"}}` + "\x00")
	}
	go deaf.nc.Write([]byte(batch.String()))

	// Others are served meanwhile.
	for range 10 {
		if _, err := c.GetProperty(e.ctx, "big", "state"); err != nil {
			t.Fatal(err)
		}
	}
	stall.wantError(ErrorName(api.InvalidData))
	stall.wantClosed()
	if d := time.Since(t0); d > 5*time.Second {
		t.Errorf("stalled client dropped after %v", d)
	}
	deadline := time.Now().Add(10 * time.Second)
	for e.srv.Connections() > 1 {
		if time.Now().After(deadline) {
			t.Fatalf("%d connections left; the deaf one was not dropped", e.srv.Connections())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := c.Version(e.ctx); err != nil {
		t.Fatal(err)
	}
}

// A client that goes away in the middle of a long call has the call
// cancelled: its connection is gone at once.
func TestVanishedClient(t *testing.T) {
	w := &waiter{Backend: apitest.NewManager(t, nil)}
	e := start(t, w, Options{})
	for i, how := range []string{"close", "half-close then close", "watch"} {
		t.Run(how, func(t *testing.T) {
			r := e.raw(t)
			if how == "watch" {
				r.call("io.porto.Manager.Watch", nil, true)
				if rep := r.must(); !rep.Continues {
					t.Fatalf("first Watch reply %+v", rep)
				}
			} else {
				r.call("io.porto.Manager.Wait", map[string]any{"names": []string{"s"}, "timeout_ms": -1}, false)
				deadline := time.Now().Add(5 * time.Second)
				for w.starts() != i+1 && time.Now().Before(deadline) {
					time.Sleep(time.Millisecond)
				}
			}
			waitConns(t, e, 1)
			if how == "half-close then close" {
				r.nc.(*net.UnixConn).CloseWrite()
				time.Sleep(100 * time.Millisecond)
				if n := e.srv.Connections(); n != 1 {
					t.Fatalf("half-closed client dropped (%d connections)", n)
				}
			}
			r.nc.Close()
			waitConns(t, e, 0)
			if how != "watch" && w.cancels() != i+1 {
				t.Errorf("Wait cancelled %d times, want %d", w.cancels(), i+1)
			}
		})
	}
}

func waitConns(t *testing.T, e *env, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for e.srv.Connections() != n {
		if time.Now().After(deadline) {
			t.Fatalf("%d connections, want %d", e.srv.Connections(), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// 1000 clients at once are all served.
func TestThousandConnections(t *testing.T) {
	// Non-root test runs would meet the per-user cap first.
	e := start(t, nil, Options{Logger: quiet, MaxConnectionsPerUser: 2000})
	const n = 1000
	var wg sync.WaitGroup
	errs := make(chan error, n)
	conns := make([]net.Conn, n)
	for i := range n {
		nc, err := net.Dial("unix", e.path)
		if err != nil {
			t.Fatalf("dial %d: %v", i, err)
		}
		conns[i] = nc
		defer nc.Close()
	}
	for i, nc := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			name := fmt.Sprintf("c%d", i)
			msg := fmt.Sprintf(`{"method":"io.porto.Manager.Create","parameters":{"name":%q}}`+"\x00"+
				`{"method":"io.porto.Manager.GetProperty","parameters":{"name":%q,"key":"state"}}`+"\x00", name, name)
			if _, err := nc.Write([]byte(msg)); err != nil {
				errs <- err
				return
			}
			r := bufio.NewReader(nc)
			for j := range 2 {
				nc.SetReadDeadline(time.Now().Add(30 * time.Second))
				line, err := r.ReadBytes(0)
				if err != nil {
					errs <- fmt.Errorf("%s reply %d: %w", name, j, err)
					return
				}
				if strings.Contains(string(line), `"error"`) {
					errs <- fmt.Errorf("%s: %s", name, line)
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
	if names, err := e.m.List(e.ctx, service.Root); err != nil || len(names) != n {
		t.Fatalf("%d containers, %v", len(names), err)
	}
}

// Beyond MaxConnections a client gets ResourceNotAvailable and is closed;
// when one leaves, the next is served.
func TestConnectionCap(t *testing.T) {
	e := start(t, nil, Options{MaxConnections: 5})
	var held []*raw
	for range 5 {
		r := e.raw(t)
		r.call("io.porto.Manager.Version", nil, false)
		r.must()
		held = append(held, r)
	}
	over := e.raw(t)
	over.wantError(ErrorName(api.ResourceNotAvailable))
	over.wantClosed()
	held[0].nc.Close()
	waitConns(t, e, 4)
	if _, err := e.client(t).Version(e.ctx); err != nil {
		t.Fatal(err)
	}
}

// One uid (but root) may hold at most MaxConnectionsPerUser connections.
func TestConnectionCapPerUser(t *testing.T) {
	e := start(t, nil, Options{MaxConnectionsPerUser: 3}, func(s *Server) {
		s.adjustPeer = func(c *net.UnixConn, p *peer) { p.id.UID = apitest.Other }
	})
	var held []*raw
	for range 3 {
		r := e.raw(t)
		r.call("io.porto.Manager.Version", nil, false)
		r.must()
		held = append(held, r)
	}
	over := e.raw(t)
	if rep := over.wantError(ErrorName(api.ResourceNotAvailable)); !strings.Contains(fmt.Sprint(rep.Parameters["message"]), "uid 4321") {
		t.Errorf("%+v", rep)
	}
	over.wantClosed()
	held[0].nc.Close()
	waitConns(t, e, 2)
	r := e.raw(t)
	r.call("io.porto.Manager.Version", nil, false)
	if rep := r.must(); rep.Error != "" {
		t.Fatalf("after one left: %+v", rep)
	}
}

// A client may pipeline at most MaxInFlight calls: the one beyond is
// refused and the connection closed once the rest are answered.
func TestInFlightCap(t *testing.T) {
	e := start(t, &waiter{Backend: apitest.NewManager(t, nil)}, Options{MaxInFlight: 4})
	r := e.raw(t)
	var batch strings.Builder
	// A Wait that lasts (s runs) holds the queue while the rest arrive.
	batch.WriteString(`{"method":"io.porto.Manager.Wait","parameters":{"names":["s"],"timeout_ms":300}}` + "\x00")
	for range 10 {
		batch.WriteString(`{"method":"io.porto.Manager.Version"}` + "\x00")
	}
	r.send(batch.String())
	ok, refused := 0, 0
	for {
		rep, err := r.recv()
		if err != nil {
			break
		}
		switch rep.Error {
		case "":
			ok++
		case ErrorName(api.ResourceNotAvailable):
			refused++
		default:
			t.Fatalf("reply %+v", rep)
		}
	}
	if refused != 1 || ok < 4 || ok > 5 {
		t.Fatalf("%d answered, %d refused", ok, refused)
	}
}

// recorder records the callers the service sees.
type recorder struct {
	apiserver.Backend
	mu      sync.Mutex
	callers []service.Caller
}

func (r *recorder) Create(ctx context.Context, c service.Caller, name string) error {
	r.mu.Lock()
	r.callers = append(r.callers, c)
	r.mu.Unlock()
	return r.Backend.Create(ctx, c, name)
}

// The caller is who the kernel says connected.
func TestIdentity(t *testing.T) {
	rec := &recorder{Backend: apitest.NewManager(t, nil)}
	auth := &fakeAuth{}
	e := start(t, rec, Options{Authorizer: auth})
	if err := e.client(t).Create(e.ctx, "who"); err != nil {
		t.Fatal(err)
	}
	c := rec.callers[0]
	groups, _ := os.Getgroups()
	var want []uint32
	for _, g := range groups {
		want = append(want, uint32(g))
	}
	slices.Sort(want)
	got := slices.Clone(c.Groups)
	slices.Sort(got)
	if c.UID != uint32(os.Geteuid()) || c.GID != uint32(os.Getegid()) || c.Pid != int32(os.Getpid()) || !slices.Equal(got, want) {
		t.Errorf("caller %+v; want uid %d gid %d pid %d groups %v", c, os.Geteuid(), os.Getegid(), os.Getpid(), want)
	}
	// polkit gets a unix-process subject: our pid, start time and uid.
	if c.Authorize == nil {
		t.Fatal("no Authorize")
	}
	if _, err := c.Authorize(e.ctx, api.ActionManageAny); err != nil {
		t.Fatal(err)
	}
	st, _ := apiserver.ProcStartTime(int32(os.Getpid()))
	if a := auth.take(); len(a) != 1 || a[0] != fmt.Sprintf("%d %d %d %s false", os.Getpid(), st, os.Geteuid(), api.ActionManageAny) {
		t.Errorf("asked %q", a)
	}
	// The kernel's pidfd of the caller goes along (SO_PEERPIDFD, Linux 6.5+).
	if len(auth.pidfds) == 1 {
		if pid, err := pidOfPidfd(auth.pidfds[0]); err != nil || pid != os.Getpid() {
			t.Errorf("pidfd is of pid %d (%v), want %d", pid, err, os.Getpid())
		}
	} else {
		t.Logf("no pidfd (kernel without SO_PEERPIDFD?)")
	}
	// Without an Authorizer there is no authority (only root may).
	rec2 := &recorder{Backend: apitest.NewManager(t, nil)}
	e2 := start(t, rec2, Options{})
	if err := e2.client(t).Create(e2.ctx, "who"); err != nil {
		t.Fatal(err)
	}
	if rec2.callers[0].Authorize != nil {
		t.Error("Authorize set without an authority")
	}
}

type fakeAuth struct {
	mu     sync.Mutex
	allow  bool
	asked  []string
	pidfds []int
}

func (a *fakeAuth) AuthorizeProcess(ctx context.Context, p apiserver.Process, action string, interactive bool) (bool, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.asked = append(a.asked, fmt.Sprintf("%d %d %d %s %v", p.Pid, p.StartTime, p.UID, action, interactive))
	if p.Pidfd >= 0 {
		a.pidfds = append(a.pidfds, p.Pidfd)
	}
	return a.allow, nil
}

func (a *fakeAuth) take() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := a.asked
	a.asked = nil
	return out
}

// The shared permission table (apitest.PermTable, also run over D-Bus by
// dbusapi's tests) gives the same answers over Varlink.
func TestPermissions(t *testing.T) {
	for _, interactive := range []bool{false, true} {
		t.Run(fmt.Sprint("interactive=", interactive), func(t *testing.T) {
			auth := &fakeAuth{}
			// A second socket on the same server: whoever connects to it
			// is treated as uid apitest.Other.
			otherPath := filepath.Join(sockDir(t), "other")
			e := start(t, nil, Options{Authorizer: auth}, func(s *Server) {
				s.adjustPeer = func(c *net.UnixConn, p *peer) {
					if c.LocalAddr().String() == otherPath {
						p.id = apiserver.Identity{UID: apitest.Other, GID: apitest.Other, Groups: []uint32{apitest.Other}, Pid: p.id.Pid}
					}
				}
			})
			l, err := Listen(otherPath)
			if err != nil {
				t.Fatal(err)
			}
			go e.srv.Serve(l)
			apitest.RunPermissions(t, apitest.PermEnv{
				Owner: e.client(t, client.WithInteractive(interactive)),
				Become: func(uid uint32) apitest.Client {
					c, err := client.NewVarlink(otherPath, client.WithInteractive(interactive))
					if err != nil {
						t.Fatal(err)
					}
					t.Cleanup(func() { c.Close() })
					return c
				},
				Allow: func(ok bool) {
					auth.mu.Lock()
					auth.allow = ok
					auth.mu.Unlock()
				},
				Asked: func() []string {
					var actions []string
					for _, a := range auth.take() {
						f := strings.Fields(a)
						if f[2] != fmt.Sprint(apitest.Other) || f[4] != fmt.Sprint(interactive) {
							t.Errorf("polkit asked %q", a)
						}
						actions = append(actions, f[3])
					}
					return actions
				},
			})
		})
	}
}

func TestListen(t *testing.T) {
	dir := sockDir(t)
	path := filepath.Join(dir, "sub", "io.porto.Manager")
	l, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o666 || fi.Mode().Type() != os.ModeSocket {
		t.Fatalf("socket %v %v", fi.Mode(), err)
	}
	// Its directory may be a 0700 state dir: it becomes searchable.
	private := filepath.Join(dir, "state")
	os.Mkdir(private, 0o700)
	pl, err := Listen(filepath.Join(private, "sock"))
	if err != nil {
		t.Fatal(err)
	}
	pl.Close()
	if fi, _ := os.Stat(private); fi.Mode().Perm() != 0o711 {
		t.Errorf("state dir mode %v, want 0711", fi.Mode().Perm())
	}
	// A live socket is not taken over.
	go func(l net.Listener) {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}(l)
	if _, err := Listen(path); err == nil || !strings.Contains(err.Error(), "another process") {
		t.Fatalf("Listen on a live socket: %v", err)
	}
	l.Close()
	if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("socket left after Close: %v", err)
	}
	// A stale socket is replaced.
	ul, _ := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	ul.SetUnlinkOnClose(false)
	ul.Close()
	l, err = Listen(path)
	if err != nil {
		t.Fatalf("Listen over a stale socket: %v", err)
	}
	l.Close()
	// Anything else is left alone.
	os.WriteFile(path, []byte("x"), 0o644)
	if _, err := Listen(path); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Fatalf("Listen over a file: %v", err)
	}
	if b, _ := os.ReadFile(path); string(b) != "x" {
		t.Fatal("file clobbered")
	}
}

func TestRegistry(t *testing.T) {
	dir := sockDir(t)
	old, oldPrefix := RegistryDir, registryPrefix
	RegistryDir, registryPrefix = filepath.Join(dir, "registry"), dir+"/"
	defer func() { RegistryDir, registryPrefix = old, oldPrefix }()
	path := filepath.Join(dir, "io.porto.Manager")
	link := filepath.Join(RegistryDir, Interface)
	l, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	if tgt, err := os.Readlink(link); err != nil || tgt != path {
		t.Fatalf("registry link %q %v", tgt, err)
	}
	// A link to another live socket is left alone.
	other := filepath.Join(dir, "other")
	ol, _ := net.Listen("unix", other)
	defer ol.Close()
	os.Remove(link)
	os.Symlink(other, link)
	l2path := filepath.Join(dir, "second")
	l2, err := Listen(l2path)
	if err != nil {
		t.Fatal(err)
	}
	l2.Close()
	if tgt, _ := os.Readlink(link); tgt != other {
		t.Fatalf("registry link taken over: %q", tgt)
	}
	os.Remove(link)
	os.Symlink(path, link)
	l.Close()
	if _, err := os.Lstat(link); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("registry link left after Close")
	}
}

// Unanswered input over all connections is capped: beyond it a client is
// refused and closed, and the server still serves others.
func TestBufferedBytesCap(t *testing.T) {
	e := start(t, &waiter{Backend: apitest.NewManager(t, nil)}, Options{MaxBufferedBytes: 600})
	c := e.client(t)
	if err := c.Create(e.ctx, "s"); err != nil {
		t.Fatal(err)
	}
	r := e.raw(t)
	var batch strings.Builder
	batch.WriteString(`{"method":"io.porto.Manager.Wait","parameters":{"names":["s"],"timeout_ms":300}}` + "\x00")
	for range 20 {
		batch.WriteString(`{"method":"io.porto.Manager.GetProperty","parameters":{"name":"s","key":"state"}}` + "\x00")
	}
	r.send(batch.String())
	ok, refused := 0, 0
	for {
		rep, err := r.recv()
		if err != nil {
			break
		}
		switch {
		case rep.Error == "":
			ok++
		case rep.Error == ErrorName(api.ResourceNotAvailable) && strings.Contains(fmt.Sprint(rep.Parameters["message"]), "busy"):
			refused++
		default:
			t.Fatalf("reply %+v", rep)
		}
	}
	if refused != 1 || ok < 2 || ok > 10 {
		t.Fatalf("%d answered, %d refused", ok, refused)
	}
	if e.srv.buffered.Load() != 0 {
		t.Errorf("%d bytes still counted", e.srv.buffered.Load())
	}
	if _, err := c.Version(e.ctx); err != nil {
		t.Fatal(err)
	}
}

// Watch streams are capped; a stream's end frees its place.
func TestWatchCap(t *testing.T) {
	e := start(t, nil, Options{MaxWatchers: 2})
	var rs []*raw
	for range 2 {
		r := e.raw(t)
		r.call("io.porto.Manager.Watch", nil, true)
		if rep := r.must(); !rep.Continues || rep.Error != "" {
			t.Fatalf("Watch %+v", rep)
		}
		rs = append(rs, r)
	}
	over := e.raw(t)
	over.call("io.porto.Manager.Watch", nil, true)
	over.wantError(ErrorName(api.ResourceNotAvailable))
	rs[0].nc.Close()
	waitConns(t, e, 2)
	over.call("io.porto.Manager.Watch", nil, true)
	if rep := over.must(); !rep.Continues || rep.Error != "" {
		t.Fatalf("Watch after one left: %+v", rep)
	}
}

// pidOfPidfd reads the Pid: line of /proc/self/fdinfo/FD.
func pidOfPidfd(fd int) (int, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/self/fdinfo/%d", fd))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "Pid:"); ok {
			var pid int
			_, err := fmt.Sscan(strings.TrimSpace(v), &pid)
			return pid, err
		}
	}
	return 0, fmt.Errorf("no Pid: in fdinfo")
}
