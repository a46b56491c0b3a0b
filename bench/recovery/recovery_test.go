package recovery

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/porto-dev/porto/api"
	"github.com/porto-dev/porto/api/client"
)

func requireRoot(tb testing.TB) {
	tb.Helper()
	if os.Getenv("PORTO_ROOT_TESTS") != "1" || os.Geteuid() != 0 || os.Getenv("PORTO_BENCH") != "1" {
		tb.Skip("privileged benchmark: run as root with PORTO_ROOT_TESTS=1 PORTO_BENCH=1")
	}
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// env is a private bus and one portod.
type env struct {
	tb         testing.TB
	bin        string
	dir        string
	busAddr    string
	conf       string
	log        string
	cgroupRoot string
	bus        *exec.Cmd
	portod     *exec.Cmd
	portodDone chan error
	conn       *dbus.Conn
	cl         *client.Client
}

const busConfig = `<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <auth>EXTERNAL</auth>
  <listen>unix:path=%s</listen>
  <limit name="max_replies_per_connection">50000</limit>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
  </policy>
</busconfig>
`

func newEnv(tb testing.TB) *env {
	tb.Helper()
	bin := os.Getenv("PORTO_BIN")
	if bin == "" {
		bin = "../../bin"
	}
	bin, _ = filepath.Abs(bin)
	for _, f := range []string{"portod", "porto-init"} {
		if _, err := os.Stat(filepath.Join(bin, f)); err != nil {
			tb.Fatalf("%s: run 'make build' first (or set PORTO_BIN): %v", f, err)
		}
	}
	dir, err := os.MkdirTemp("", "porto-bench-recovery-")
	if err != nil {
		tb.Fatal(err)
	}
	os.Chmod(dir, 0o755)
	b := make([]byte, 4)
	rand.Read(b)
	e := &env{tb: tb, bin: bin, dir: dir, cgroupRoot: "bench-" + hex.EncodeToString(b), log: filepath.Join(dir, "portod.log")}
	tb.Cleanup(e.close)
	e.startBus()
	e.conf = filepath.Join(dir, "porto.conf")
	conf := strings.Join([]string{
		"state_dir = " + filepath.Join(dir, "state"),
		"place = " + filepath.Join(dir, "place"),
		"cgroup_root = " + e.cgroupRoot,
		"cgroup_driver = cgroupfs",
		"varlink_socket = " + filepath.Join(dir, "varlink.sock"),
		"porto_init = " + filepath.Join(bin, "porto-init"),
		"log_level = info",
		"network = false", // never shape the host's devices from a benchmark
	}, "\n") + "\n"
	if err := os.WriteFile(e.conf, []byte(conf), 0o644); err != nil {
		tb.Fatal(err)
	}
	e.startPortod()
	return e
}

func (e *env) startBus() {
	sock := filepath.Join(e.dir, "bus.sock")
	conf := filepath.Join(e.dir, "bus.conf")
	if err := os.WriteFile(conf, fmt.Appendf(nil, busConfig, sock), 0o644); err != nil {
		e.tb.Fatal(err)
	}
	cmd := exec.Command("dbus-daemon", "--config-file="+conf, "--nofork", "--nopidfile", "--print-address")
	out, err := cmd.StdoutPipe()
	if err != nil {
		e.tb.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		e.tb.Fatalf("dbus-daemon: %v", err)
	}
	e.bus = cmd
	r := bufio.NewReader(out)
	line, _ := r.ReadString('\n')
	go io.Copy(io.Discard, r)
	e.busAddr = strings.TrimSpace(line)
	if e.busAddr == "" {
		e.tb.Fatal("dbus-daemon printed no address")
	}
	e.conn, err = dbus.Connect(e.busAddr)
	if err != nil {
		e.tb.Fatal(err)
	}
	e.cl = client.NewWithConn(e.conn)
}

func (e *env) startPortod() {
	e.startPortodAsync()
	deadline := time.Now().Add(20 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := e.cl.Version(ctx)
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			e.tb.Fatalf("portod did not answer: %v\n%s", err, e.logTail())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// startPortodAsync starts the master and returns at once.
func (e *env) startPortodAsync() {
	logf, err := os.OpenFile(e.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		e.tb.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command(filepath.Join(e.bin, "portod"), "--config", e.conf)
	cmd.Env = []string{
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"DBUS_SYSTEM_BUS_ADDRESS=" + e.busAddr,
		"LANG=C",
	}
	if v := os.Getenv("PORTO_PPROF"); v != "" {
		cmd.Env = append(cmd.Env, "PORTO_PPROF="+v)
	}
	cmd.Dir = e.dir
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		e.tb.Fatal(err)
	}
	e.portod = cmd
	done := make(chan error, 1)
	e.portodDone = done
	go func() { done <- cmd.Wait() }()
}

func (e *env) logTail() string {
	b, _ := os.ReadFile(e.log)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// destroyAll destroys every first-level container with 8 clients.
func (e *env) destroyAll() {
	ctx := context.Background()
	names, err := e.cl.List(ctx)
	if err != nil {
		e.tb.Errorf("List: %v", err)
		return
	}
	names = slices.DeleteFunc(names, func(n string) bool { return n == "/" || strings.Contains(n, "/") })
	e.parallel(names, func(cl *client.Client, n string) error { return cl.Destroy(ctx, n) })
}

// parallel runs f over names with 8 clients of their own.
func (e *env) parallel(names []string, f func(*client.Client, string) error) {
	work := make(chan string)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	for range 8 {
		conn, err := dbus.Connect(e.busAddr)
		if err != nil {
			e.tb.Fatal(err)
		}
		cl := client.NewWithConn(conn)
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer conn.Close()
			for n := range work {
				if err := f(cl, n); err != nil {
					mu.Lock()
					errs = append(errs, fmt.Errorf("%s: %w", n, err))
					mu.Unlock()
				}
			}
		}()
	}
	for _, n := range names {
		work <- n
	}
	close(work)
	wg.Wait()
	for i, err := range errs {
		if i == 5 {
			e.tb.Errorf("... and %d more errors", len(errs)-5)
			break
		}
		e.tb.Error(err)
	}
}

func (e *env) close() {
	if e.portod != nil {
		select {
		case <-e.portodDone:
		default:
			e.destroyAll()
			e.portod.Process.Signal(syscall.SIGTERM)
			select {
			case <-e.portodDone:
			case <-time.After(20 * time.Second):
				e.portod.Process.Kill()
				<-e.portodDone
			}
		}
	}
	if e.conn != nil {
		e.conn.Close()
	}
	if e.bus != nil {
		e.bus.Process.Signal(syscall.SIGTERM)
		e.bus.Wait()
	}
	ents, _ := os.ReadDir("/sys/fs/cgroup")
	for _, h := range ents {
		root := filepath.Join("/sys/fs/cgroup", h.Name(), e.cgroupRoot)
		if sub, _ := os.ReadDir(root); len(sub) > 0 {
			for _, s := range sub {
				if s.IsDir() {
					e.tb.Errorf("cgroup left: %s/%s", root, s.Name())
				}
			}
		}
		os.Remove(root)
	}
	if e.tb.Failed() || os.Getenv("PORTO_TEST_KEEP") != "" {
		e.tb.Logf("files kept in %s", e.dir)
		return
	}
	os.RemoveAll(e.dir)
}

// ownerPid is the pid owning org.porto.Manager (the worker), 0 if none.
func (e *env) ownerPid() int {
	var pid uint32
	if err := e.conn.BusObject().Call("org.freedesktop.DBus.GetConnectionUnixProcessID", 0, api.BusName).Store(&pid); err != nil {
		return 0
	}
	return int(pid)
}

// procAge is how long pid has been running.
func procAge(pid int) time.Duration {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	start, _ := strconv.ParseFloat(f[19], 64)
	u, _ := os.ReadFile("/proc/uptime")
	up, _ := strconv.ParseFloat(strings.Fields(string(u))[0], 64)
	return time.Duration((up - start/100) * float64(time.Second)) // USER_HZ is 100 on Linux
}

var (
	restoredRE = regexp.MustCompile(`msg="containers restored".* took=(\S+)`)
	timeRE     = regexp.MustCompile(`^time=(\S+) `)
)

// phases are the moments of one recovery, from portod's log, relative to
// the kill (or to the start of a fresh portod).
type phases struct {
	started time.Duration // the master started the new worker
	restore time.Duration // how long the worker's restore took
	serving time.Duration // the worker owns the bus name
}

func (e *env) phasesSince(off int64, t0 time.Time) phases {
	var p phases
	f, err := os.Open(e.log)
	if err != nil {
		return p
	}
	defer f.Close()
	f.Seek(off, io.SeekStart)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		var at time.Duration
		if m := timeRE.FindStringSubmatch(line); m != nil {
			if ts, err := time.Parse(time.RFC3339Nano, m[1]); err == nil {
				at = ts.Sub(t0)
			}
		}
		switch {
		case strings.Contains(line, `msg="supervisor: worker started"`) && p.started == 0:
			p.started = at
		case strings.Contains(line, `msg="containers restored"`):
			if m := restoredRE.FindStringSubmatch(line); m != nil {
				p.restore, _ = time.ParseDuration(m[1])
			}
		case strings.Contains(line, `msg=serving `) && p.serving == 0:
			p.serving = at
		}
	}
	return p
}

// await measures, from t0, the first answer of a worker other than old and
// the first Get that shows every container running with its old root_pid.
func (e *env) await(t *testing.T, t0 time.Time, old int, names []string, want map[string]string) (first, all time.Duration) {
	ctx := context.Background()
	for {
		c, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := e.cl.Version(c)
		cancel()
		if err == nil && e.ownerPid() != old {
			first = time.Since(t0)
			break
		}
		if time.Since(t0) > 60*time.Second {
			t.Fatalf("no answer 60 s after the kill: %v\n%s", err, e.logTail())
		}
		time.Sleep(200 * time.Microsecond)
	}
	for {
		res, err := e.cl.Get(ctx, names, []string{"state", "root_pid"})
		ok := err == nil
		for _, r := range res {
			if r.Err != nil || (r.Key == "state" && r.Value != "running") || (r.Key == "root_pid" && r.Value != want[r.Container]) {
				ok = false
				break
			}
		}
		if ok {
			return first, time.Since(t0)
		}
		if time.Since(t0) > 120*time.Second {
			t.Fatalf("containers not all running with their old root_pid 120 s after the kill: %v", err)
		}
	}
}

func (e *env) logSize() int64 {
	st, err := os.Stat(e.log)
	if err != nil {
		return 0
	}
	return st.Size()
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	return s[len(s)/2]
}

// p90 is the 90th percentile (nearest rank).
func p90(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	i := (len(s)*9+9)/10 - 1
	return s[max(i, 0)]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func TestRecoveryTime(t *testing.T) {
	requireRoot(t)
	n := envInt("PORTO_BENCH_CONTAINERS", 1000)
	runs := envInt("PORTO_BENCH_RUNS", 5)
	e := newEnv(t)
	ctx := context.Background()
	load, _ := os.ReadFile("/proc/loadavg")
	t.Logf("nproc %d, load average at start: %s", runtimeNumCPU(), strings.TrimSpace(string(load)))

	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("r%04d", i)
	}
	t0 := time.Now()
	e.parallel(names, func(cl *client.Client, name string) error {
		if err := cl.Create(ctx, name); err != nil {
			return err
		}
		if err := cl.SetProperty(ctx, name, "command", "sleep 1000"); err != nil {
			return err
		}
		return cl.Start(ctx, name)
	})
	if t.Failed() {
		t.FailNow()
	}
	t.Logf("%d containers started in %v", n, time.Since(t0).Round(time.Millisecond))
	res, err := e.cl.Get(ctx, names, []string{"state", "root_pid"})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{}
	for _, r := range res {
		if r.Err != nil {
			t.Fatalf("%s %s: %v", r.Container, r.Key, r.Err)
		}
		if r.Key == "root_pid" {
			want[r.Container] = r.Value
		} else if r.Value != "running" {
			t.Fatalf("%s is %s", r.Container, r.Value)
		}
	}

	// 1. SIGKILL of the worker; the master restarts it.
	var firsts, alls, restores []time.Duration
	for i := 0; i < runs; i++ {
		worker := e.ownerPid()
		if worker == 0 {
			t.Fatal("nobody owns " + api.BusName)
		}
		// A worker younger than 10 s is restarted with a back-off (a crash
		// loop); wait so the measure is of a plain crash.
		if age := procAge(worker); age < 10500*time.Millisecond {
			time.Sleep(10500*time.Millisecond - age)
		}
		off := e.logSize()
		kill := time.Now()
		if err := syscall.Kill(worker, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		first, all := e.await(t, kill, worker, names, want)
		p := e.phasesSince(off, kill)
		firsts, alls, restores = append(firsts, first), append(alls, all), append(restores, p.restore)
		t.Logf("worker kill %d: first answer %.1f ms, all %d running with their root_pid %.1f ms (new worker started at %.1f ms, restore took %.1f ms, serving at %.1f ms)",
			i+1, ms(first), n, ms(all), ms(p.started), ms(p.restore), ms(p.serving))
	}
	t.Logf("worker kill, median (p90) of %d runs with %d containers: first answer %.1f (%.1f) ms, all running %.1f (%.1f) ms, restore %.1f (%.1f) ms",
		len(firsts), n, ms(median(firsts)), ms(p90(firsts)), ms(median(alls)), ms(p90(alls)), ms(median(restores)), ms(p90(restores)))

	// 2. Every porto process killed; a fresh portod re-attaches the
	// containers (as foreign processes: no longer the master's children).
	firsts, alls, restores = nil, nil, nil
	for i := 0; i < min(runs, 3); i++ {
		worker := e.ownerPid()
		e.portod.Process.Kill()
		syscall.Kill(worker, syscall.SIGKILL)
		<-e.portodDone
		for procAlive(worker) {
			time.Sleep(time.Millisecond)
		}
		off := e.logSize()
		start := time.Now()
		e.startPortodAsync()
		first, all := e.await(t, start, worker, names, want)
		p := e.phasesSince(off, start)
		firsts, alls, restores = append(firsts, first), append(alls, all), append(restores, p.restore)
		t.Logf("fresh portod %d: first answer %.1f ms, all %d running with their root_pid %.1f ms (worker started at %.1f ms, restore took %.1f ms, serving at %.1f ms)",
			i+1, ms(first), n, ms(all), ms(p.started), ms(p.restore), ms(p.serving))
	}
	t.Logf("fresh portod, median (p90) of %d runs with %d containers: first answer %.1f (%.1f) ms, all running %.1f (%.1f) ms, restore %.1f (%.1f) ms",
		len(firsts), n, ms(median(firsts)), ms(p90(firsts)), ms(median(alls)), ms(p90(alls)), ms(median(restores)), ms(p90(restores)))

	t0 = time.Now()
	e.destroyAll()
	t.Logf("destroyed %d containers in %v", n, time.Since(t0).Round(time.Millisecond))
}

func procAlive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	return len(f) > 0 && f[0] != "Z" && f[0] != "X"
}

func runtimeNumCPU() int { return runtime.NumCPU() }
