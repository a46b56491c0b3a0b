package dbusapi

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/porto-dev/porto/api/client"
)

// busConfig lets everyone do everything: these tests check porto, not the
// bus policy (packaging/ has its own).
const busConfig = `<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>porto-test</type>
  <listen>unix:path=%s</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_destination="*" eavesdrop="true"/>
    <allow receive_sender="*"/>
    <allow eavesdrop="true"/>
  </policy>
</busconfig>
`

// startBus runs a private dbus-daemon for the test and returns its
// address. It skips the test when dbus-daemon is not installed.
func startBus(t testing.TB) string {
	t.Helper()
	daemon, err := exec.LookPath("dbus-daemon")
	if err != nil {
		t.Skip("dbus-daemon not installed")
	}
	// Not t.TempDir(): subtest names may bring characters that a D-Bus
	// address would need escaped.
	dir, err := os.MkdirTemp("", "porto-bus")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	conf := filepath.Join(dir, "bus.conf")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf(busConfig, filepath.Join(dir, "bus"))), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(daemon, "--config-file="+conf, "--print-address", "--nofork", "--nopidfile")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	lines := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(stdout).ReadString('\n')
		lines <- strings.TrimSpace(line)
		_, _ = io.Copy(io.Discard, stdout)
	}()
	select {
	case addr := <-lines:
		if addr == "" {
			_ = cmd.Wait()
			t.Fatalf("dbus-daemon printed no address: %s", stderr.String())
		}
		return addr
	case <-time.After(10 * time.Second):
		t.Fatal("dbus-daemon did not start")
	}
	return ""
}

func connect(t testing.TB, addr string) *dbus.Conn {
	t.Helper()
	conn, err := dbus.Connect(addr)
	if err != nil {
		t.Fatalf("connect to test bus: %v", err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// testEnv is a private bus with a served Server and a client.
type testEnv struct {
	addr   string
	srv    *Server
	sconn  *dbus.Conn
	cconn  *dbus.Conn
	client *client.Client
	ctx    context.Context
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func startEnv(t *testing.T, b backend, opts Options, copts ...client.Option) *testEnv {
	t.Helper()
	addr := startBus(t)
	if opts.Logger == nil {
		opts.Logger = testLogger(t)
	}
	e := &testEnv{addr: addr}
	e.sconn = connect(t, addr)
	e.srv = newServer(b, opts)
	if err := e.srv.Export(e.sconn); err != nil {
		t.Fatalf("Export: %v", err)
	}
	if err := e.srv.RequestName(); err != nil {
		t.Fatalf("RequestName: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- e.srv.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-served
		_ = e.srv.Close()
	})
	e.cconn = connect(t, addr)
	e.client = client.NewWithConn(e.cconn, copts...)
	tctx, tcancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(tcancel)
	e.ctx = tctx
	return e
}
