package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/porto-dev/porto/api"
	"github.com/porto-dev/porto/api/client"
)

// Root-gated Go benchmarks over the same harness as portobench, for
// `go test -bench` and benchstat:
//
//	sudo PORTO_ROOT_TESTS=1 go test ./bench -run XXX -bench . -count 5
//
// One env (private bus + portod from ../bin or $PORTO_BIN) is shared by
// the benchmarks of one process and torn down by TestMain.

func requireRoot(tb testing.TB) {
	tb.Helper()
	if os.Getenv("PORTO_ROOT_TESTS") != "1" || os.Geteuid() != 0 {
		tb.Skip("needs root and PORTO_ROOT_TESTS=1 (real cgroups, namespaces, a private bus and portod)")
	}
}

var (
	shared    *Env
	sharedErr error
	sharedMu  sync.Mutex
)

func env(tb testing.TB) *Env {
	tb.Helper()
	requireRoot(tb)
	sharedMu.Lock()
	defer sharedMu.Unlock()
	if shared == nil && sharedErr == nil {
		shared, sharedErr = Start(Options{Bin: os.Getenv("PORTO_BIN")})
	}
	if sharedErr != nil {
		tb.Fatal(sharedErr)
	}
	return shared
}

func TestMain(m *testing.M) {
	code := m.Run()
	if shared != nil {
		if err := shared.Close(); err != nil {
			fmt.Fprintln(os.Stderr, "bench teardown:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// TestEnv: an env answers on both transports, runs a container, and
// leaves nothing behind.
func TestEnv(t *testing.T) {
	requireRoot(t)
	e, err := Start(Options{Bin: os.Getenv("PORTO_BIN")})
	if err != nil {
		t.Fatal(err)
	}
	dir, root := e.Dir, e.CgroupRoot
	for _, tr := range []string{client.TransportDBus, client.TransportVarlink} {
		c, err := e.Client(tr)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Create(context.Background(), "x-"+tr); err != nil {
			t.Fatal(err)
		}
		if err := c.SetProperty(context.Background(), "x-"+tr, "command", "sleep 100"); err != nil {
			t.Fatal(err)
		}
		if err := c.Start(context.Background(), "x-"+tr); err != nil {
			t.Fatal(err)
		}
	}
	if m, w, err := e.DaemonRSS(); err != nil || m == 0 || w == 0 {
		t.Errorf("DaemonRSS %d %d %v", m, w, err)
	}
	if err := e.Close(); err != nil { // destroys both running containers
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("%s left behind: %v", dir, err)
	}
	if m, _ := filepath.Glob("/sys/fs/cgroup/*/" + root); len(m) > 0 {
		t.Errorf("cgroups left behind: %v", m)
	}
}

func benchLifecycle(b *testing.B, transport string) {
	c, err := env(b).Client(transport)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	for i := 0; b.Loop(); i++ {
		n := fmt.Sprintf("b-%s-%d", transport, i)
		if err := c.Create(ctx, n); err != nil {
			b.Fatal(err)
		}
		if err := c.SetProperty(ctx, n, "command", "true"); err != nil {
			b.Fatal(err)
		}
		if err := c.Start(ctx, n); err != nil {
			b.Fatal(err)
		}
		if _, err := c.Wait(ctx, []string{n}, 20*time.Second); err != nil {
			b.Fatal(err)
		}
		if err := c.Destroy(ctx, n); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkLifecycleVarlink(b *testing.B) { benchLifecycle(b, client.TransportVarlink) }
func BenchmarkLifecycleDBus(b *testing.B)    { benchLifecycle(b, client.TransportDBus) }

func benchGetState(b *testing.B, transport string, parallel bool) {
	e := env(b)
	c, err := e.Client(transport)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	if err := c.Create(ctx, "bget"); err != nil && api.CodeOf(err) != api.ContainerAlreadyExists {
		b.Fatal(err)
	}
	get := func() {
		if v, err := c.GetProperty(ctx, "bget", "state"); err != nil || v != "stopped" {
			b.Fatal(v, err)
		}
	}
	if !parallel {
		for b.Loop() {
			get()
		}
		return
	}
	b.SetParallelism(4) // 8 goroutines on 2 CPUs, sharing the client
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			get()
		}
	})
}

func BenchmarkGetStateVarlink(b *testing.B)         { benchGetState(b, client.TransportVarlink, false) }
func BenchmarkGetStateDBus(b *testing.B)            { benchGetState(b, client.TransportDBus, false) }
func BenchmarkGetStateVarlinkParallel(b *testing.B) { benchGetState(b, client.TransportVarlink, true) }
func BenchmarkGetStateDBusParallel(b *testing.B)    { benchGetState(b, client.TransportDBus, true) }

// BenchmarkPing: the empty D-Bus round trip to portod's connection
// (answered by godbus itself), the baseline of BenchmarkGetStateDBus.
func BenchmarkPing(b *testing.B) {
	conn, err := env(b).DialBus()
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	obj := conn.Object(api.BusName, dbus.ObjectPath(api.ManagerPath))
	for b.Loop() {
		if err := obj.Call("org.freedesktop.DBus.Peer.Ping", 0).Err; err != nil {
			b.Fatal(err)
		}
	}
}
