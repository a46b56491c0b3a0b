package client

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/porto-dev/porto/api"
)

func TestVarlinkError(t *testing.T) {
	for _, code := range api.Codes() {
		if code == api.Success {
			continue
		}
		e := varlinkError(VarlinkErrorPrefix+code.String(), json.RawMessage(`{"message":"msg"}`))
		if e.Code != code || e.Msg != "msg" {
			t.Errorf("%s: got %v", code, e)
		}
	}
	cases := []struct {
		name, params string
		code         api.Code
		msg          string
	}{
		{"io.porto.Manager.Brandnew", `{"message":"m"}`, api.Unknown, "Brandnew: m"},
		{"org.varlink.service.MethodNotFound", `{"method":"io.porto.Manager.X"}`, api.InvalidMethod, "MethodNotFound (method io.porto.Manager.X)"},
		{"org.varlink.service.InvalidParameter", `{"parameter":"name"}`, api.InvalidMethod, "InvalidParameter (parameter name)"},
		{"com.example.Odd", `null`, api.Unknown, "com.example.Odd"},
	}
	for _, tc := range cases {
		e := varlinkError(tc.name, json.RawMessage(tc.params))
		if e.Code != tc.code || e.Msg != tc.msg {
			t.Errorf("%s: got %v %q", tc.name, e.Code, e.Msg)
		}
	}
}

// fakeVarlink answers every call with reply (or never, if reply is "").
func fakeVarlink(t *testing.T, reply string) string {
	dir, err := os.MkdirTemp("", "vlc")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "sock")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				for {
					if _, err := r.ReadBytes(0); err != nil {
						return
					}
					if reply != "" {
						c.Write([]byte(reply + "\x00"))
					}
				}
			}()
		}
	}()
	return path
}

func TestTransportChoice(t *testing.T) {
	sock := fakeVarlink(t, `{"parameters":{"version":"9.9"}}`)
	t.Setenv("DBUS_SYSTEM_BUS_ADDRESS", "unix:path=/nonexistent/bus")
	t.Setenv(VarlinkSocketEnv, sock)
	ctx := context.Background()

	c, err := New()
	if err != nil {
		t.Fatal(err)
	}
	if c.Transport() != TransportVarlink {
		t.Fatalf("auto with a named socket chose %s", c.Transport())
	}
	if v, err := c.Version(ctx); err != nil || v != "9.9" {
		t.Fatalf("Version = %q, %v", v, err)
	}
	c.Close()
	if _, err := c.Version(ctx); err == nil {
		t.Fatal("call after Close")
	}

	// Forced D-Bus: the (missing) bus, not the socket.
	if _, err := New(WithTransport(TransportDBus)); err == nil || !strings.Contains(err.Error(), "system bus") {
		t.Fatalf("dbus: %v", err)
	}
	// No socket: auto falls back to the bus; forced Varlink fails naming it.
	t.Setenv(VarlinkSocketEnv, "/nonexistent/sock")
	if _, err := New(); err == nil || !strings.Contains(err.Error(), "system bus") {
		t.Fatalf("auto without a socket: %v", err)
	}
	if _, err := New(WithTransport(TransportVarlink)); err == nil || !strings.Contains(err.Error(), "/nonexistent/sock") {
		t.Fatalf("varlink without a socket: %v", err)
	}
	if _, err := NewVarlink(sock); err != nil {
		t.Fatal(err)
	}
	if _, err := New(WithTransport("smoke")); api.CodeOf(err) != api.InvalidValue {
		t.Fatalf("bogus transport: %v", err)
	}
}

// A call whose context ends returns at once; the client keeps working.
// Both ways of doing I/O: on the poller, and direct.
func TestVarlinkCancel(t *testing.T) {
	for _, direct := range []bool{false, true} {
		t.Run(fmt.Sprintf("direct=%v", direct), func(t *testing.T) { testVarlinkCancel(t, WithDirectIO(direct)) })
	}
}

func testVarlinkCancel(t *testing.T, opts ...Option) {
	silent := fakeVarlink(t, "")
	c, err := NewVarlink(silent, opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	t0 := time.Now()
	_, err = c.Wait(ctx, []string{"x"}, -1)
	if err == nil || time.Since(t0) > 5*time.Second {
		t.Fatalf("Wait = %v after %v", err, time.Since(t0))
	}
	if !strings.Contains(err.Error(), "timed out") {
		t.Errorf("error %v", err)
	}
	// Errors from the daemon come back as *api.Error.
	bad := fakeVarlink(t, `{"error":"io.porto.Manager.ContainerDoesNotExist","parameters":{"message":"no x"}}`)
	c2, err := NewVarlink(bad, opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	for range 3 { // the connection is reused after an error reply
		if err := c2.Start(context.Background(), "x"); api.CodeOf(err) != api.ContainerDoesNotExist || api.AsError(err).Message() != "no x" {
			t.Fatalf("Start = %v", err)
		}
	}
	// Concurrent calls each get a connection; a long reply arrives whole.
	long := strings.Repeat("x", 100<<10)
	big := fakeVarlink(t, `{"parameters":{"value":"`+long+`"}}`)
	c3, err := NewVarlink(big, opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer c3.Close()
	errs := make(chan error, 8)
	for range 8 {
		go func() {
			for range 5 {
				v, err := c3.GetProperty(context.Background(), "c", "stdout")
				if err == nil && v != long {
					err = fmt.Errorf("got %d bytes", len(v))
				}
				if err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for range 8 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	// A Watch stream ends when its context does.
	wctx, wcancel := context.WithCancel(context.Background())
	ws := fakeVarlink(t, `{"parameters":{},"continues":true}`)
	c4, err := NewVarlink(ws, opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer c4.Close()
	ch, err := c4.Watch(wctx)
	if err != nil {
		t.Fatal(err)
	}
	wcancel()
	select {
	case _, ok := <-ch:
		if ok {
			t.Fatal("event from a silent stream")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Watch did not end with its context")
	}
}
