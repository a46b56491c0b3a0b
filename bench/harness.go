package bench

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/porto-dev/porto/api"
	"github.com/porto-dev/porto/api/client"
)

// Options configures an Env.
type Options struct {
	// Bin holds portod, portoctl and porto-init (make build puts them in
	// bin/).
	Bin string
	// Conf lines ("key = value") replace the harness's own line for key.
	Conf []string
	// Pprof, when set, is passed to portod as $PORTO_PPROF (a directory;
	// see Env.Profile).
	Pprof string
	// Log receives dbus-daemon's and portod's output; nil discards it.
	Log io.Writer
	// StateOnDisk keeps state_dir on the file system of $TMPDIR. By
	// default it is a private tmpfs, as /run (the default state_dir's
	// parent) is on a standard systemd host; this machine's /run is not.
	StateOnDisk bool
}

// Env is one private dbus-daemon plus one portod (master and worker) with
// its own state dir, Varlink socket and cgroup root. Close removes all of
// it.
type Env struct {
	Bin        string
	Dir        string // 0755 temp dir holding everything
	BusAddr    string
	Conf       string
	StateDir   string
	Varlink    string // the Varlink socket
	CgroupRoot string

	bus    *exec.Cmd
	portod *exec.Cmd
	tmpfs  string     // mounted by Start
	done   chan error // portod's Wait

	mu    sync.Mutex
	conns []*dbus.Conn // of D-Bus clients, closed by Close
}

// EchoName is a well-known name the bus config lets root own and anyone
// call: the "empty method call" server of the get-state comparison.
const EchoName = "org.porto.BenchEcho"

const busConfig = `<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<!-- A private bus configured like /usr/share/dbus-1/system.conf. -->
<busconfig>
  <type>system</type>
  <auth>EXTERNAL</auth>
  <listen>unix:path=%s</listen>
  <limit name="max_connections_per_user">2048</limit>
  <policy context="default">
    <allow user="*"/>
    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
    <allow send_destination="org.freedesktop.DBus"
           send_interface="org.freedesktop.DBus" />
    <allow send_destination="org.freedesktop.DBus"
           send_interface="org.freedesktop.DBus.Introspectable"/>
    <allow send_destination="org.freedesktop.DBus"
           send_interface="org.freedesktop.DBus.Properties"/>
    <allow send_destination="` + EchoName + `"/>
  </policy>
  <policy user="root">
    <allow own="` + EchoName + `"/>
  </policy>
  <!-- porto's own policy, exactly as installed. -->
  <include>%s</include>
</busconfig>
`

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// RepoRoot finds the repository root (the directory holding go.mod and
// packaging/) from the working directory upwards.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "packaging", "org.porto.Manager.conf")); err == nil {
			return dir, nil
		}
		up := filepath.Dir(dir)
		if up == dir {
			return "", errors.New("not inside the porto repository (no packaging/org.porto.Manager.conf above the working directory)")
		}
		dir = up
	}
}

// Start starts a private bus and portod and waits until portod answers
// on both transports.
func Start(o Options) (e *Env, err error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("bench: needs root (real cgroups and namespaces)")
	}
	root, err := RepoRoot()
	if err != nil {
		return nil, err
	}
	if o.Bin == "" {
		o.Bin = filepath.Join(root, "bin")
	}
	for _, b := range []string{"portod", "portoctl", "porto-init", "porto-stage"} {
		if _, err := os.Stat(filepath.Join(o.Bin, b)); err != nil {
			return nil, fmt.Errorf("%s: run 'make build' first: %w", b, err)
		}
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	dir, err := os.MkdirTemp("", "porto-bench-")
	if err != nil {
		return nil, err
	}
	e = &Env{
		Bin:        o.Bin,
		Dir:        dir,
		StateDir:   filepath.Join(dir, "state"),
		Varlink:    filepath.Join(dir, "varlink.sock"),
		CgroupRoot: "bench-" + randHex(4), // not "porto*"
	}
	defer func() {
		if err != nil {
			e.Close()
			e = nil
		}
	}()
	if err := os.Chmod(dir, 0o755); err != nil {
		return e, err
	}
	if !o.StateOnDisk {
		if err := os.Mkdir(e.StateDir, 0o755); err != nil {
			return e, err
		}
		if err := syscall.Mount("porto-bench-state", e.StateDir, "tmpfs", syscall.MS_NOSUID|syscall.MS_NODEV, "mode=0755,size=256m"); err != nil {
			return e, fmt.Errorf("tmpfs for state_dir: %w", err)
		}
		e.tmpfs = e.StateDir
	}
	if err := e.startBus(root, o.Log); err != nil {
		return e, err
	}
	if err := e.writeConf(o.Conf); err != nil {
		return e, err
	}
	return e, e.startPortod(o)
}

func (e *Env) startBus(root string, log io.Writer) error {
	sock := filepath.Join(e.Dir, "system_bus_socket")
	conf := filepath.Join(e.Dir, "bus.conf")
	policy := filepath.Join(root, "packaging", "org.porto.Manager.conf")
	if err := os.WriteFile(conf, fmt.Appendf(nil, busConfig, sock, policy), 0o644); err != nil {
		return err
	}
	cmd := exec.Command("dbus-daemon", "--config-file="+conf, "--nofork", "--nopidfile", "--print-address")
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	cmd.Stderr = log
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("dbus-daemon: %w", err)
	}
	e.bus = cmd
	line := make(chan string, 1)
	go func() {
		r := bufio.NewReader(out)
		s, _ := r.ReadString('\n')
		line <- strings.TrimSpace(s)
		io.Copy(io.Discard, r)
	}()
	select {
	case e.BusAddr = <-line:
		if e.BusAddr == "" {
			return errors.New("dbus-daemon printed no address")
		}
		return nil
	case <-time.After(10 * time.Second):
		return errors.New("dbus-daemon did not start in 10s")
	}
}

func (e *Env) writeConf(extra []string) error {
	e.Conf = filepath.Join(e.Dir, "porto.conf")
	lines := []string{
		"# written by bench/",
		"state_dir = " + e.StateDir,
		"place = " + filepath.Join(e.Dir, "place"),
		"cgroup_root = " + e.CgroupRoot,
		"cgroup_driver = cgroupfs",
		"varlink_socket = " + e.Varlink,
		"porto_init = " + filepath.Join(e.Bin, "porto-init"),
		"porto_stage = " + filepath.Join(e.Bin, "porto-stage"),
		"stop_timeout = 10s",
		"log_level = info",
		"network = false", // never shape the host's devices from a benchmark
	}
	for _, x := range extra {
		k, _, _ := strings.Cut(x, "=")
		k = strings.TrimSpace(k)
		kept := lines[:0]
		for _, l := range lines {
			if lk, _, ok := strings.Cut(l, "="); !ok || strings.TrimSpace(lk) != k {
				kept = append(kept, l)
			}
		}
		lines = append(kept, x)
		if k == "varlink_socket" {
			_, v, _ := strings.Cut(x, "=")
			e.Varlink = strings.TrimSpace(v)
		}
	}
	return os.WriteFile(e.Conf, []byte(strings.Join(lines, "\n")+"\n"), 0o644)
}

// Environ is the environment of a client of this env (portoctl).
func (e *Env) Environ() []string {
	return []string{
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"DBUS_SYSTEM_BUS_ADDRESS=" + e.BusAddr,
		client.VarlinkSocketEnv + "=" + e.Varlink,
		"HOME=/root",
		"LANG=C",
	}
}

func (e *Env) startPortod(o Options) error {
	cmd := exec.Command(filepath.Join(e.Bin, "portod"), "--config", e.Conf)
	cmd.Env = e.Environ()
	if o.Pprof != "" {
		cmd.Env = append(cmd.Env, "PORTO_PPROF="+o.Pprof)
	}
	cmd.Dir = e.Dir
	cmd.Stdout, cmd.Stderr = o.Log, o.Log
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("portod: %w", err)
	}
	e.portod = cmd
	e.done = make(chan error, 1)
	go func() { e.done <- cmd.Wait() }()

	deadline := time.Now().Add(20 * time.Second)
	for {
		conn, err := e.DialBus()
		if err == nil {
			_, err = client.NewWithConn(conn).Version(context.Background())
			conn.Close()
		}
		if err == nil {
			var c *client.Client
			if c, err = e.Client(client.TransportVarlink); err == nil {
				_, err = c.Version(context.Background())
				c.Close()
			}
		}
		if err == nil {
			return nil
		}
		select {
		case werr := <-e.done:
			e.done <- werr
			return fmt.Errorf("portod exited before answering: %v", werr)
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("portod did not answer in 20s: %w", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Client connects to this env's portod over transport
// (client.TransportDBus or client.TransportVarlink). A D-Bus client has a
// private connection of its own, closed by Env.Close at the latest.
func (e *Env) Client(transport string) (*client.Client, error) {
	if transport == client.TransportVarlink {
		return client.NewVarlink(e.Varlink)
	}
	conn, err := e.DialBus()
	if err != nil {
		return nil, err
	}
	e.mu.Lock()
	e.conns = append(e.conns, conn)
	e.mu.Unlock()
	return client.NewWithConn(conn), nil
}

// DialBus opens a new private connection to this env's bus (Hello done).
func (e *Env) DialBus() (*dbus.Conn, error) {
	conn, err := dbus.Dial(e.BusAddr)
	if err != nil {
		return nil, err
	}
	if err := conn.Auth(nil); err != nil {
		conn.Close()
		return nil, err
	}
	if err := conn.Hello(); err != nil {
		conn.Close()
		return nil, err
	}
	return conn, nil
}

// Ctl is a portoctl command against this env.
func (e *Env) Ctl(args ...string) *exec.Cmd {
	cmd := exec.Command(filepath.Join(e.Bin, "portoctl"), args...)
	cmd.Env = e.Environ()
	return cmd
}

// RunCtl runs portoctl and returns an error carrying its output on
// failure.
func (e *Env) RunCtl(args ...string) error {
	out, err := e.Ctl(args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("portoctl %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return nil
}

// MasterPID is the pid of the portod master.
func (e *Env) MasterPID() int {
	if e.portod == nil || e.portod.Process == nil {
		return 0
	}
	return e.portod.Process.Pid
}

// WorkerPID is the pid of the current portod worker: the master's child
// running "portod __worker".
func (e *Env) WorkerPID() (int, error) {
	master := e.MasterPID()
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return 0, err
	}
	for _, ent := range ents {
		pid, err := strconv.Atoi(ent.Name())
		if err != nil {
			continue
		}
		if ppid, _ := statusField(pid, "PPid"); ppid != int64(master) {
			continue
		}
		cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if strings.Contains(string(cmdline), "\x00__worker\x00") {
			return pid, nil
		}
	}
	return 0, errors.New("no portod worker found")
}

// statusField reads a numeric field of /proc/pid/status (the first
// number after "Name:").
func statusField(pid int, name string) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, name+":"); ok {
			f := strings.Fields(v)
			if len(f) == 0 {
				break
			}
			return strconv.ParseInt(f[0], 10, 64)
		}
	}
	return 0, fmt.Errorf("/proc/%d/status: no %s", pid, name)
}

// RSS is VmRSS of pid in kB.
func RSS(pid int) (int64, error) { return statusField(pid, "VmRSS") }

// DaemonRSS is the VmRSS of the master and of the worker, in kB.
func (e *Env) DaemonRSS() (master, worker int64, err error) {
	w, err := e.WorkerPID()
	if err != nil {
		return 0, 0, err
	}
	if master, err = RSS(e.MasterPID()); err != nil {
		return 0, 0, err
	}
	worker, err = RSS(w)
	return master, worker, err
}

// Profile toggles the worker's CPU profile (Options.Pprof must be set):
// call it once to start and once more to stop; the stop waits until the
// profile is written and returns the CPU profile's path.
func (e *Env) Profile(dir string, stop bool) (string, error) {
	w, err := e.WorkerPID()
	if err != nil {
		return "", err
	}
	before, _ := filepath.Glob(filepath.Join(dir, fmt.Sprintf("worker-%d-*.heap.pprof", w)))
	if err := syscall.Kill(w, syscall.SIGUSR2); err != nil {
		return "", err
	}
	if !stop {
		time.Sleep(20 * time.Millisecond) // let the profile start
		return "", nil
	}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		heaps, _ := filepath.Glob(filepath.Join(dir, fmt.Sprintf("worker-%d-*.heap.pprof", w)))
		if len(heaps) > len(before) {
			h := heaps[len(heaps)-1]
			for _, x := range heaps {
				if !containsStr(before, x) {
					h = x
				}
			}
			return strings.TrimSuffix(h, ".heap.pprof") + ".cpu.pprof", nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return "", errors.New("the worker wrote no profile in 10s")
}

func containsStr(s []string, x string) bool {
	for _, y := range s {
		if y == x {
			return true
		}
	}
	return false
}

// DestroyAll destroys every container (first-level ones take their
// children with them).
func (e *Env) DestroyAll(ctx context.Context) error {
	c, err := e.Client(client.TransportVarlink)
	if err != nil {
		return err
	}
	defer c.Close()
	names, err := c.List(ctx)
	if err != nil {
		return err
	}
	var first error
	for _, n := range names {
		if strings.Contains(n, "/") {
			continue
		}
		if err := c.Destroy(ctx, n); err != nil && api.CodeOf(err) != api.ContainerDoesNotExist && first == nil {
			first = err
		}
	}
	return first
}

// Close destroys every container, stops portod and the bus, kills any
// process left in the env's cgroups, removes them and the temp dir.
func (e *Env) Close() error {
	var errs []error
	if e.portod != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		if err := e.DestroyAll(ctx); err != nil {
			errs = append(errs, fmt.Errorf("destroy all: %w", err))
		}
		cancel()
		e.portod.Process.Signal(syscall.SIGTERM)
		select {
		case <-e.done:
		case <-time.After(20 * time.Second):
			e.portod.Process.Kill()
			<-e.done
			errs = append(errs, errors.New("portod did not exit in 20s of SIGTERM; killed it"))
		}
		e.portod = nil
	}
	e.mu.Lock()
	for _, c := range e.conns {
		c.Close()
	}
	e.conns = nil
	e.mu.Unlock()
	if e.bus != nil {
		e.bus.Process.Signal(syscall.SIGTERM)
		e.bus.Wait()
		e.bus = nil
	}
	if e.CgroupRoot != "" {
		errs = append(errs, removeCgroups(e.CgroupRoot)...)
	}
	if e.tmpfs != "" {
		if err := syscall.Unmount(e.tmpfs, syscall.MNT_DETACH); err != nil {
			errs = append(errs, fmt.Errorf("unmount %s: %w", e.tmpfs, err))
		} else {
			e.tmpfs = ""
		}
	}
	if e.Dir != "" && e.tmpfs == "" {
		if err := os.RemoveAll(e.Dir); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// removeCgroups kills whatever is left under /<root> in every hierarchy
// (there should be nothing) and removes the cgroups bottom-up.
func removeCgroups(root string) []error {
	var errs []error
	hs, _ := os.ReadDir("/sys/fs/cgroup")
	for _, h := range hs {
		top := filepath.Join("/sys/fs/cgroup", h.Name(), root)
		var dirs []string
		filepath.WalkDir(top, func(path string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, path)
			}
			return nil
		})
		for i := len(dirs) - 1; i >= 0; i-- {
			if b, _ := os.ReadFile(filepath.Join(dirs[i], "cgroup.procs")); len(strings.TrimSpace(string(b))) > 0 {
				errs = append(errs, fmt.Errorf("processes left in %s: %s", dirs[i], strings.Fields(string(b))))
				for _, p := range strings.Fields(string(b)) {
					if pid, err := strconv.Atoi(p); err == nil && pid > 1 {
						syscall.Kill(pid, syscall.SIGKILL)
					}
				}
				time.Sleep(100 * time.Millisecond)
			}
			if err := os.Remove(dirs[i]); err != nil && !os.IsNotExist(err) {
				errs = append(errs, err)
			}
		}
	}
	return errs
}

// CPUTime is the user+system CPU time pid has used (/proc/pid/stat, in
// clock ticks of 10 ms).
func CPUTime(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: no comm", pid)
	}
	f := strings.Fields(s[i+1:]) // f[0] is field 3 (state)
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: short", pid)
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, err
	}
	return time.Duration(ut+st) * 10 * time.Millisecond, nil
}

// DaemonCPU is the CPU time used so far by the master and the worker.
func (e *Env) DaemonCPU() (master, worker time.Duration, err error) {
	w, err := e.WorkerPID()
	if err != nil {
		return 0, 0, err
	}
	if master, err = CPUTime(e.MasterPID()); err != nil {
		return 0, 0, err
	}
	worker, err = CPUTime(w)
	return master, worker, err
}

// Tasks is the number of tasks (threads included) in porto's cgroup
// subtree: pids.current of its root in the pids hierarchy.
func (e *Env) Tasks() (int, error) {
	b, err := os.ReadFile(filepath.Join("/sys/fs/cgroup/pids", e.CgroupRoot, "pids.current"))
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(string(b)))
}
