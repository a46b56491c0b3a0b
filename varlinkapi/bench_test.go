package varlinkapi

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/porto-dev/porto/api/client"
	"github.com/porto-dev/porto/apiserver/apitest"
	"github.com/porto-dev/porto/dbusapi"
)

// Get-state latency over both transports, against the real service
// (apitest.NewManager: the real service.Manager over fake processes), or
// against a running portod when $PORTO_BENCH_VARLINK_SOCKET and
// $PORTO_BENCH_BUS name its socket and bus (a container "bench" is
// created there and destroyed after):
//
//	go test ./varlinkapi -run XXX -bench GetState -benchtime 20000x
//
// Each reports the median and p90 of single calls (one client, one call at
// a time) besides ns/op. The goal (issue 9/10): Varlink ≤ 0.05 ms median.

func BenchmarkGetStateVarlink(b *testing.B) {
	c := benchClient(b, client.TransportVarlink)
	benchGet(b, c)
}

func BenchmarkGetStateDBus(b *testing.B) {
	c := benchClient(b, client.TransportDBus)
	benchGet(b, c)
}

// BenchmarkGetStateVarlinkParallel: 8 goroutines sharing one client (its
// connection pool).
func BenchmarkGetStateVarlinkParallel(b *testing.B) {
	c := benchClient(b, client.TransportVarlink)
	b.SetParallelism(8)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := c.GetProperty(context.Background(), "bench", "state"); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

func BenchmarkGetStateDBusParallel(b *testing.B) {
	c := benchClient(b, client.TransportDBus)
	b.SetParallelism(8)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := c.GetProperty(context.Background(), "bench", "state"); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

func benchGet(b *testing.B, c *client.Client) {
	ctx := context.Background()
	for range 200 { // warm up
		if _, err := c.GetProperty(ctx, "bench", "state"); err != nil {
			b.Fatal(err)
		}
	}
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for range b.N {
		t0 := time.Now()
		v, err := c.GetProperty(ctx, "bench", "state")
		lat = append(lat, time.Since(t0))
		if err != nil || v == "" {
			b.Fatalf("%q %v", v, err)
		}
	}
	b.StopTimer()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	b.ReportMetric(float64(lat[len(lat)/2].Nanoseconds())/1e6, "ms-median")
	b.ReportMetric(float64(lat[len(lat)*9/10].Nanoseconds())/1e6, "ms-p90")
}

// benchClient connects over transport to a running portod (see above) or
// to the real service served in this process on both transports.
func benchClient(b *testing.B, transport string) *client.Client {
	b.Helper()
	sock, bus := os.Getenv("PORTO_BENCH_VARLINK_SOCKET"), os.Getenv("PORTO_BENCH_BUS")
	if sock == "" || bus == "" {
		sock, bus = serveBoth(b)
	}
	var c *client.Client
	var err error
	if transport == client.TransportVarlink {
		c, err = client.NewVarlink(sock)
	} else {
		var conn *dbus.Conn
		conn, err = dbus.Connect(bus)
		if err == nil {
			c = client.NewWithConn(conn)
			b.Cleanup(func() { conn.Close() })
		}
	}
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	ctx := context.Background()
	if err := c.Create(ctx, "bench"); err != nil && !strings.Contains(err.Error(), "exists") {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Destroy(ctx, "bench") })
	return c
}

// serveBoth serves one real service on a Varlink socket and on a private
// bus, and returns their addresses.
func serveBoth(b *testing.B) (sock, bus string) {
	m := apitest.NewManager(b, nil)
	srv := newServer(m, Options{Logger: quiet})
	sock = filepath.Join(sockDir(b), "io.porto.Manager")
	l, err := Listen(sock)
	if err != nil {
		b.Fatal(err)
	}
	go srv.Serve(l)
	b.Cleanup(func() { srv.Close() })

	bus = startBus(b)
	conn, err := dbus.Connect(bus)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { conn.Close() })
	ds := dbusapi.New(m, dbusapi.Options{Logger: quiet})
	if err := ds.Export(conn); err != nil {
		b.Fatal(err)
	}
	if err := ds.RequestName(); err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go ds.Serve(ctx)
	b.Cleanup(func() { cancel(); ds.Close() })
	return sock, bus
}

const benchBusConfig = `<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>porto-bench</type>
  <listen>unix:path=%s</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/><allow own="*"/><allow send_destination="*"/><allow receive_sender="*"/>
  </policy>
</busconfig>
`

// startBus runs a private dbus-daemon (skipping without one).
func startBus(b testing.TB) string {
	daemon, err := exec.LookPath("dbus-daemon")
	if err != nil {
		b.Skip("dbus-daemon not installed")
	}
	dir := sockDir(b)
	conf := filepath.Join(dir, "bus.conf")
	os.WriteFile(conf, []byte(fmt.Sprintf(benchBusConfig, filepath.Join(dir, "bus"))), 0o644)
	cmd := exec.Command(daemon, "--config-file="+conf, "--print-address", "--nofork", "--nopidfile")
	out, _ := cmd.StdoutPipe()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		b.Fatalf("dbus-daemon: %v %s", err, stderr.String())
	}
	return strings.TrimSpace(line)
}

// BenchmarkLifecycle: create, set command=true, start, wait, destroy
// through the Go client, against a running portod only (it runs real
// processes): $PORTO_BENCH_VARLINK_SOCKET and $PORTO_BENCH_BUS.
func BenchmarkLifecycle(b *testing.B) {
	for _, tr := range []string{client.TransportVarlink, client.TransportDBus} {
		b.Run(tr, func(b *testing.B) {
			if os.Getenv("PORTO_BENCH_VARLINK_SOCKET") == "" || os.Getenv("PORTO_BENCH_BUS") == "" {
				b.Skip("needs a running portod: $PORTO_BENCH_VARLINK_SOCKET and $PORTO_BENCH_BUS")
			}
			c := benchClient(b, tr)
			ctx := context.Background()
			lat := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for i := range b.N {
				name := fmt.Sprintf("bench-lc-%d", i)
				t0 := time.Now()
				if err := c.Create(ctx, name); err != nil {
					b.Fatal(err)
				}
				if err := c.SetProperty(ctx, name, "command", "true"); err != nil {
					b.Fatal(err)
				}
				if err := c.Start(ctx, name); err != nil {
					b.Fatal(err)
				}
				if got, err := c.Wait(ctx, []string{name}, 10*time.Second); err != nil || got != name {
					b.Fatalf("wait %q %v", got, err)
				}
				if err := c.Destroy(ctx, name); err != nil {
					b.Fatal(err)
				}
				lat = append(lat, time.Since(t0))
			}
			b.StopTimer()
			sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
			b.ReportMetric(float64(lat[len(lat)/2].Nanoseconds())/1e6, "ms-median")
			b.ReportMetric(float64(lat[len(lat)*9/10].Nanoseconds())/1e6, "ms-p90")
		})
	}
}
