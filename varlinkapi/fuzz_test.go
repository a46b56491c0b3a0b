package varlinkapi

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/porto-dev/porto/apiserver"
	"github.com/porto-dev/porto/apiserver/apitest"
	"github.com/porto-dev/porto/service"
)

// socketPair returns two connected unix stream connections.
func socketPair(t testing.TB) (*net.UnixConn, *net.UnixConn) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	conv := func(fd int) *net.UnixConn {
		f := os.NewFile(uintptr(fd), "pair")
		defer f.Close()
		c, err := net.FileConn(f)
		if err != nil {
			t.Fatal(err)
		}
		return c.(*net.UnixConn)
	}
	return conv(fds[0]), conv(fds[1])
}

// FuzzServe sends arbitrary bytes as a whole connection to a server over
// the real service: every reply is a well-formed message, the server
// closes the connection when the client is done, and it never panics.
func FuzzServe(f *testing.F) {
	for _, s := range []string{
		`{"method":"io.porto.Manager.List"}` + "\x00",
		`{"method":"io.porto.Manager.Create","parameters":{"name":"a"}}` + "\x00" +
			`{"method":"io.porto.Manager.Get","parameters":{"names":["a","/"],"keys":["state","x"]}}` + "\x00",
		`{"method":"io.porto.Manager.SetProperty","parameters":{"name":"a","key":"command","value":"x"},"oneway":true}` + "\x00",
		`{"method":"org.varlink.service.GetInterfaceDescription","parameters":{"interface":"io.porto.Manager"}}` + "\x00",
		`{"method":"io.porto.Manager.Wait","parameters":{"names":["a"],"timeout_ms":1}}` + "\x00",
		`{"method":"io.porto.Manager.Watch","more":true}` + "\x00",
		"{\x00}\x00garbage",
	} {
		f.Add([]byte(s))
	}
	s := newServer(shortWait{apitest.NewManager(f, nil)}, Options{Logger: quiet, MaxMessageSize: 4096,
		MessageTimeout: 200 * time.Millisecond, WriteTimeout: time.Second})
	f.Cleanup(func() { s.Close() })
	f.Fuzz(func(t *testing.T, data []byte) {
		client, server := socketPair(t)
		defer client.Close()
		c := &conn{s: s, nc: server}
		s.mu.Lock()
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		done := make(chan struct{})
		go func() {
			defer close(done)
			c.serve()
		}()
		if bytes.Contains(data, []byte("Watch")) {
			// A stream may be live: write, then hang up entirely; the
			// server must notice and end the connection.
			client.Write(data)
			client.Close()
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				t.Fatal("connection not ended after the client left")
			}
			return
		}
		go func() {
			client.Write(data)
			client.CloseWrite()
		}()
		client.SetReadDeadline(time.Now().Add(5 * time.Second))
		out, err := io.ReadAll(client)
		if err != nil {
			t.Fatalf("reading replies: %v", err)
		}
		if len(out) > 0 && out[len(out)-1] != 0 {
			t.Fatalf("reply stream does not end with a terminator: %q", out)
		}
		for _, m := range bytes.Split(bytes.TrimSuffix(out, []byte{0}), []byte{0}) {
			if len(out) == 0 {
				break
			}
			var r struct {
				Parameters json.RawMessage `json:"parameters"`
				Error      string          `json:"error"`
			}
			if err := json.Unmarshal(m, &r); err != nil {
				t.Fatalf("malformed reply %q: %v", m, err)
			}
		}
	})
}

// shortWait caps Wait at 50 ms, so that a fuzzed forever-Wait on a running
// container cannot stall an input.
type shortWait struct{ apiserver.Backend }

func (b shortWait) Wait(ctx context.Context, c service.Caller, names []string, timeout time.Duration) (string, error) {
	if timeout < 0 || timeout > 50*time.Millisecond {
		timeout = 50 * time.Millisecond
	}
	return b.Backend.Wait(ctx, c, names, timeout)
}
