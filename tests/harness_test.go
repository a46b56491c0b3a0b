package tests

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// rootTests is true when the privileged tier was asked for.
var rootTests = os.Getenv("PORTO_ROOT_TESTS") == "1"

// requireRoot skips t unless the privileged tier is enabled.
func requireRoot(t *testing.T) {
	t.Helper()
	if !rootTests {
		t.Skip("privileged integration test: set PORTO_ROOT_TESTS=1 and run as root (sudo make check)")
	}
	if os.Geteuid() != 0 {
		t.Skip("privileged integration test: needs root (sudo make check)")
	}
}

// binDir is where the binaries under test are: $PORTO_BIN or ../bin.
func binDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("PORTO_BIN")
	if dir == "" {
		dir = "../bin"
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range []string{"portod", "portoctl", "porto-init", "porto-stage"} {
		if _, err := os.Stat(filepath.Join(abs, b)); err != nil {
			t.Fatalf("%s: run 'make build' first (or set PORTO_BIN): %v", b, err)
		}
	}
	return abs
}

// repoFile is the absolute path of a file of the repository.
func repoFile(t *testing.T, rel string) string {
	t.Helper()
	abs, err := filepath.Abs(filepath.Join("..", rel))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(abs); err != nil {
		t.Fatal(err)
	}
	return abs
}

// User is an identity the tests run portoctl as.
type User struct {
	Name  string
	Group string // primary group name
	UID   int
	GID   int
}

// Root reports whether u is root.
func (u *User) Root() bool { return u.UID == 0 }

// PsName is how ps(1) prints u in its USER column.
func (u *User) PsName() string {
	if len(u.Name) > 8 {
		return u.Name[:7] + "+"
	}
	return u.Name
}

var rootUser = &User{Name: "root", Group: "root", UID: 0, GID: 0}

func lookupUser(t *testing.T, name string) *User {
	t.Helper()
	u, err := user.Lookup(name)
	if err != nil {
		t.Fatalf("user %s: %v (create it as .ci/run does: groupadd porto; useradd -m -G porto %s)", name, err, name)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	g, err := user.LookupGroupId(u.Gid)
	if err != nil {
		t.Fatalf("group of %s: %v", name, err)
	}
	return &User{Name: name, Group: g.Name, UID: uid, GID: gid}
}

func alice(t *testing.T) *User { return lookupUser(t, "porto-alice") }
func bob(t *testing.T) *User   { return lookupUser(t, "porto-bob") }

// users is root and porto-alice: the callers every transcript is replayed as.
func users(t *testing.T) []*User { return []*User{rootUser, alice(t)} }

// Result is what one command printed and how it exited.
type Result struct {
	Args   []string
	Stdout string
	Stderr string
	Code   int
}

func (r Result) String() string {
	return fmt.Sprintf("%q: exit %d\nstdout: %q\nstderr: %q", r.Args, r.Code, r.Stdout, r.Stderr)
}

// Env is one private bus plus one portod, unique to a test.
type Env struct {
	t          *testing.T
	Bin        string
	Dir        string // 0755 temp dir holding everything below
	BusAddr    string
	Conf       string
	StateDir   string
	Place      string
	CgroupRoot string
	Log        string // portod's stdout+stderr

	// NetNS is the named network namespace portod runs in (NewEnvNet).
	NetNS string

	// Varlink makes Ctl talk to portod over its Varlink socket
	// (--transport=varlink) instead of the private bus.
	Varlink     bool
	varlinkPath string // varlink_socket, when the test chose it

	bus       *exec.Cmd
	busDone   chan error
	portod    *exec.Cmd
	portodErr chan error

	mountsBefore map[string]bool
	stateBefore  []string
	mu           sync.Mutex
	closed       bool
}

// cgroupHierarchies lists the mounted hierarchies under /sys/fs/cgroup.
func cgroupHierarchies() []string {
	ents, _ := os.ReadDir("/sys/fs/cgroup")
	var out []string
	for _, e := range ents {
		if e.IsDir() {
			out = append(out, filepath.Join("/sys/fs/cgroup", e.Name()))
		}
	}
	return out
}

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// NewEnv starts a private system-like bus and portod, waits until
// org.porto.Manager answers, and registers teardown with leak checks.
func NewEnv(t *testing.T) *Env {
	t.Helper()
	return NewEnvWith(t, nil)
}

// NewEnvWith is NewEnv with porto.conf settings of the caller's: each
// "key = value" in conf replaces the harness's own line for key. Values may
// use {dir} and {state} for the env's directory and state_dir.
func NewEnvWith(t *testing.T, conf []string) *Env {
	t.Helper()
	return newEnv(t, conf, false)
}

// NewEnvNet is NewEnvWith for a portod with traffic control, in a network
// namespace of its own (the host's devices are never touched): there the
// device em1 (one end of a veth pair, 198.51.100.1/24) is up, and
// 198.51.100.2 has a permanent neighbour entry, so datagrams sent to it
// leave through em1's qdisc at once. porto.conf manages em1 only.
func NewEnvNet(t *testing.T, conf []string) *Env {
	t.Helper()
	return newEnv(t, append([]string{"network = true", "network_devices = em1"}, conf...), true)
}

func newEnv(t *testing.T, conf []string, netns bool) *Env {
	t.Helper()
	requireRoot(t)
	e := &Env{t: t, Bin: binDir(t)}
	dir, err := os.MkdirTemp("", "porto-itest-")
	if err != nil {
		t.Fatal(err)
	}
	// Every user must reach the bus socket and the binaries' arguments.
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	e.Dir = dir
	e.StateDir = filepath.Join(dir, "state")
	e.Place = filepath.Join(dir, "place")
	// Not "porto*": a Porto-like daemon on the host may reap such cgroups.
	e.CgroupRoot = "itest-" + randHex(4)
	e.Log = filepath.Join(dir, "portod.log")
	e.mountsBefore = mountPoints()
	t.Cleanup(e.Close)

	e.startBus()
	if netns {
		e.makeNetNS()
	}
	e.writeConf(conf)
	e.StartPortod()
	e.stateBefore = listFiles(e.StateDir)
	return e
}

// makeNetNS creates the network namespace of NewEnvNet.
func (e *Env) makeNetNS() {
	t := e.t
	name := "porto-itest-" + randHex(4)
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v: %s", err, out)
	}
	e.NetNS = name
	for _, args := range [][]string{
		{"link", "add", "em1", "type", "veth", "peer", "name", "em1p"},
		{"link", "set", "lo", "up"},
		{"link", "set", "em1p", "up"},
		{"link", "set", "em1", "up"},
		{"addr", "add", "198.51.100.1/24", "dev", "em1"},
		{"neigh", "add", "198.51.100.2", "lladdr", "02:00:00:00:00:02", "dev", "em1", "nud", "permanent"},
	} {
		if out, err := exec.Command("ip", append([]string{"-n", name}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("ip -n %s %v: %v: %s", name, args, err, out)
		}
	}
}

// NetExec runs argv in the env's network namespace (tc, ip).
func (e *Env) NetExec(argv ...string) (string, error) {
	out, err := exec.Command("nsenter", append([]string{"--net=/run/netns/" + e.NetNS, "--"}, argv...)...).CombinedOutput()
	return string(out), err
}

// VarlinkSocket is where this env's portod serves Varlink.
func (e *Env) VarlinkSocket() string {
	if e.varlinkPath != "" {
		return e.varlinkPath
	}
	return filepath.Join(e.Dir, "varlink.sock")
}

// writeConf writes porto.conf for this env; extra lines override defaults.
func (e *Env) writeConf(extra []string) {
	e.Conf = filepath.Join(e.Dir, "porto.conf")
	driver := os.Getenv("PORTO_TEST_CGROUP_DRIVER")
	if driver == "" {
		driver = "cgroupfs"
	}
	lines := []string{
		"# written by the integration tests",
		"state_dir = " + e.StateDir,
		"place = " + e.Place,
		"cgroup_root = " + e.CgroupRoot,
		"cgroup_driver = " + driver,
		"varlink_socket = " + e.VarlinkSocket(),
		"porto_init = " + filepath.Join(e.Bin, "porto-init"),
		"porto_stage = " + filepath.Join(e.Bin, "porto-stage"),
		"stop_timeout = 10s",
		"log_level = debug",
		// Traffic control only in a network namespace of the test's own
		// (NewEnvNet): never on the host's devices.
		"network = false",
	}
	for _, x := range extra {
		x = strings.NewReplacer("{dir}", e.Dir, "{state}", e.StateDir).Replace(x)
		k, _, _ := strings.Cut(x, "=")
		k = strings.TrimSpace(k)
		lines = slices.DeleteFunc(lines, func(l string) bool {
			lk, _, ok := strings.Cut(l, "=")
			return ok && strings.TrimSpace(lk) == k
		})
		lines = append(lines, x)
		if k == "varlink_socket" {
			_, v, _ := strings.Cut(x, "=")
			e.varlinkPath = strings.TrimSpace(v)
		}
	}
	if err := os.WriteFile(e.Conf, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		e.t.Fatal(err)
	}
}

const busConfig = `<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<!-- A private bus configured like /usr/share/dbus-1/system.conf. -->
<busconfig>
  <type>system</type>
  <auth>EXTERNAL</auth>
  <listen>unix:path=%s</listen>
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
    <deny send_destination="org.freedesktop.DBus"
          send_interface="org.freedesktop.DBus"
          send_member="UpdateActivationEnvironment"/>
    <deny send_destination="org.freedesktop.DBus"
          send_interface="org.freedesktop.DBus.Debug.Stats"/>
    <deny send_destination="org.freedesktop.DBus"
          send_interface="org.freedesktop.systemd1.Activator"/>
  </policy>
  <policy user="root">
    <allow send_destination="org.freedesktop.DBus"
           send_interface="org.freedesktop.DBus.Monitoring"/>
  </policy>
  <!-- The project's own policy, exactly as installed. -->
  <include>%s</include>
</busconfig>
`

func (e *Env) startBus() {
	t := e.t
	sock := filepath.Join(e.Dir, "system_bus_socket")
	conf := filepath.Join(e.Dir, "bus.conf")
	policy := repoFile(t, "packaging/org.porto.Manager.conf")
	if err := os.WriteFile(conf, fmt.Appendf(nil, busConfig, sock, policy), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("dbus-daemon", "--config-file="+conf, "--nofork", "--nopidfile", "--print-address")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	logf, err := os.Create(filepath.Join(e.Dir, "dbus-daemon.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = logf
	if err := cmd.Start(); err != nil {
		t.Fatalf("dbus-daemon: %v", err)
	}
	e.bus = cmd
	e.busDone = make(chan error, 1)
	line := make(chan string, 1)
	go func() {
		r := bufio.NewReader(out)
		s, _ := r.ReadString('\n')
		line <- strings.TrimSpace(s)
		io.Copy(io.Discard, r)
		e.busDone <- cmd.Wait()
	}()
	select {
	case addr := <-line:
		if addr == "" {
			b, _ := os.ReadFile(filepath.Join(e.Dir, "dbus-daemon.log"))
			t.Fatalf("dbus-daemon printed no address: %s", b)
		}
		e.BusAddr = addr
	case <-time.After(10 * time.Second):
		t.Fatal("dbus-daemon did not start in 10s")
	}
}

// StartPortod starts bin/portod on the private bus and waits until
// org.porto.Manager answers.
func (e *Env) StartPortod() {
	t := e.t
	t.Helper()
	logf, err := os.OpenFile(e.Log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd := e.portodCmd()
	cmd.Env = []string{
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"DBUS_SYSTEM_BUS_ADDRESS=" + e.BusAddr,
		"LANG=C",
		// Marks portod's processes so that teardown can find leftovers.
		"PORTO_ITEST=" + e.CgroupRoot,
	}
	cmd.Dir = e.Dir
	cmd.Stdout = logf
	cmd.Stderr = logf
	if err := cmd.Start(); err != nil {
		t.Fatalf("portod: %v", err)
	}
	e.mu.Lock()
	e.portod = cmd
	e.portodErr = make(chan error, 1)
	done := e.portodErr
	e.mu.Unlock()
	go func() { done <- cmd.Wait() }()

	deadline := time.Now().Add(15 * time.Second)
	for {
		r := e.Busctl(rootUser, "call", "org.porto.Manager", "/org/porto/Manager", "org.porto.Manager", "Version")
		if r.Code == 0 {
			return
		}
		select {
		case err := <-done:
			done <- err
			t.Fatalf("portod exited before owning org.porto.Manager: %v\n%s", err, e.LogTail())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("org.porto.Manager did not answer in 15s: %s\n%s", r, e.LogTail())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// portodCmd is the command that starts portod (in the env's network
// namespace, if it has one).
func (e *Env) portodCmd() *exec.Cmd {
	if e.NetNS != "" {
		return exec.Command("nsenter", "--net=/run/netns/"+e.NetNS, "--", filepath.Join(e.Bin, "portod"), "--config", e.Conf)
	}
	return exec.Command(filepath.Join(e.Bin, "portod"), "--config", e.Conf)
}

// PortodAlive reports whether the portod master is still running.
func (e *Env) PortodAlive() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.portod == nil {
		return false
	}
	select {
	case err := <-e.portodErr:
		e.portodErr <- err
		return false
	default:
		return true
	}
}

// StopPortod sends SIGTERM to the portod master and waits for it to exit.
func (e *Env) StopPortod() error {
	e.mu.Lock()
	cmd, done := e.portod, e.portodErr
	e.portod = nil
	e.mu.Unlock()
	if cmd == nil {
		return nil
	}
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-done:
		var ee *exec.ExitError
		if errors.As(err, &ee) && ee.ExitCode() == -1 {
			if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signal() == syscall.SIGTERM {
				return nil // killed by the SIGTERM we sent: acceptable
			}
		}
		if err != nil {
			return fmt.Errorf("portod exited with %v after SIGTERM", err)
		}
		return nil
	case <-time.After(20 * time.Second):
		cmd.Process.Kill()
		<-done
		return errors.New("portod did not exit within 20s of SIGTERM; killed it")
	}
}

// LogTail is the end of portod's log, for failure messages.
func (e *Env) LogTail() string {
	b, _ := os.ReadFile(e.Log)
	if len(b) > 8000 {
		b = b[len(b)-8000:]
	}
	return "--- portod log (tail) ---\n" + string(b)
}

// Close destroys every container, stops portod and the bus, and checks that
// nothing is left behind. It runs as a t.Cleanup.
func (e *Env) Close() {
	t := e.t
	if e.closed {
		return
	}
	e.closed = true
	if e.PortodAlive() {
		e.DestroyAll(t)
		e.AssertClean()
		if e.NetNS != "" {
			// Only porto's own traffic classes are left: 1:1 and 1:2.
			out, err := e.NetExec("tc", "class", "show", "dev", "em1")
			if n := len(strings.Split(strings.TrimSpace(out), "\n")); err != nil || n != 2 {
				t.Errorf("traffic classes left on em1 after every container was destroyed (%v):\n%s", err, out)
			}
		}
	} else if e.portod != nil {
		t.Errorf("portod died during the test\n%s", e.LogTail())
	}
	if err := e.StopPortod(); err != nil {
		t.Errorf("%v\n%s", err, e.LogTail())
	}
	if e.NetNS != "" {
		if out, err := exec.Command("ip", "netns", "del", e.NetNS).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v: %s", e.NetNS, err, out)
		}
	}
	if e.bus != nil {
		e.bus.Process.Signal(syscall.SIGTERM)
		select {
		case <-e.busDone:
		case <-time.After(5 * time.Second):
			e.bus.Process.Kill()
			<-e.busDone
		}
	}
	// After portod is gone: no process of it, no cgroup, no mount.
	for _, p := range e.StrayProcs() {
		t.Errorf("process left behind after portod exited: pid %d %q (cgroups %v)", p.pid, p.cmdline, p.cgroups)
		syscall.Kill(p.pid, syscall.SIGKILL)
	}
	for _, cg := range e.Cgroups() {
		t.Errorf("cgroup left behind after portod exited: %s", cg)
	}
	e.removeCgroupRoots()
	leakedMounts := false
	for _, m := range e.NewMounts() {
		if strings.HasPrefix(m, e.Dir) || strings.Contains(m, e.CgroupRoot) {
			t.Errorf("mount left behind after portod exited: %s", m)
			leakedMounts = true
		} else {
			t.Logf("note: new mount on the host during the test (not ours?): %s", m)
		}
	}
	if t.Failed() {
		t.Logf("%s", e.LogTail())
	}
	if os.Getenv("PORTO_TEST_KEEP") != "" || leakedMounts {
		t.Logf("test files kept in %s", e.Dir)
		return
	}
	os.RemoveAll(e.Dir)
}

// --- running things --------------------------------------------------------

// command builds a command that runs argv as u, with a clean environment
// pointing at the private bus.
func (e *Env) command(ctx context.Context, u *User, argv ...string) *exec.Cmd {
	if !u.Root() {
		argv = append([]string{"setpriv",
			"--reuid=" + strconv.Itoa(u.UID), "--regid=" + strconv.Itoa(u.GID), "--init-groups", "--"}, argv...)
	}
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	home := "/root"
	if !u.Root() {
		home = "/"
		if pw, err := user.Lookup(u.Name); err == nil {
			home = pw.HomeDir
		}
	}
	cmd.Env = []string{
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"DBUS_SYSTEM_BUS_ADDRESS=" + e.BusAddr,
		"HOME=" + home,
		"USER=" + u.Name,
		"LOGNAME=" + u.Name,
		"LANG=C",
		"LC_ALL=C",
	}
	if e.Varlink {
		cmd.Env = append(cmd.Env, "PORTO_VARLINK_SOCKET="+e.VarlinkSocket())
	}
	cmd.Dir = e.Dir
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// Exec runs argv as u (with a 2 minute timeout) and returns what it printed.
func (e *Env) Exec(u *User, argv ...string) Result {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := e.command(ctx, u, argv...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	err := cmd.Run()
	r := Result{Args: argv, Stdout: stdout.String(), Stderr: stderr.String()}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		r.Code = ee.ExitCode()
		if r.Code == -1 {
			r.Code = 128 + int(ee.Sys().(syscall.WaitStatus).Signal())
		}
	default:
		r.Code = -1
		r.Stderr += err.Error()
	}
	if ctx.Err() != nil {
		r.Stderr += " [timed out after 2m]"
	}
	return r
}

// Ctl runs bin/portoctl as u, over the private bus (or the Varlink socket
// when e.Varlink).
func (e *Env) Ctl(u *User, args ...string) Result {
	argv := []string{filepath.Join(e.Bin, "portoctl")}
	if e.Varlink {
		argv = append(argv, "--transport=varlink")
	}
	r := e.Exec(u, append(argv, args...)...)
	r.Args = args
	return r
}

// forEachTransport runs f once over D-Bus and once over Varlink, each with
// its own env.
func forEachTransport(t *testing.T, f func(t *testing.T, e *Env)) {
	for _, tr := range []string{"dbus", "varlink"} {
		t.Run(tr, func(t *testing.T) {
			e := NewEnv(t)
			e.Varlink = tr == "varlink"
			f(t, e)
		})
	}
}

// Busctl runs busctl against the private bus as u.
func (e *Env) Busctl(u *User, args ...string) Result {
	return e.Exec(u, append([]string{"busctl", "--address=" + e.BusAddr, "--timeout=60"}, args...)...)
}

// Sh runs a shell command line as u.
func (e *Env) Sh(u *User, script string) Result { return e.Exec(u, "bash", "-c", script) }

// OK runs portoctl and expects success with no output at all (create, set,
// start, run, destroy... print nothing in the seed).
func (e *Env) OK(t *testing.T, u *User, args ...string) {
	t.Helper()
	r := e.Ctl(u, args...)
	if r.Code != 0 || r.Stdout != "" || r.Stderr != "" {
		t.Fatalf("as %s: portoctl %s: want silent success, got %s", u.Name, shellJoin(args), r)
	}
}

// Out runs portoctl, expects success and returns stdout without its final
// newline.
func (e *Env) Out(t *testing.T, u *User, args ...string) string {
	t.Helper()
	r := e.Ctl(u, args...)
	if r.Code != 0 || r.Stderr != "" {
		t.Fatalf("as %s: portoctl %s: want success, got %s", u.Name, shellJoin(args), r)
	}
	return strings.TrimSuffix(r.Stdout, "\n")
}

// Expect runs portoctl and expects success printing want (final newline
// aside).
func (e *Env) Expect(t *testing.T, u *User, want string, args ...string) {
	t.Helper()
	if got := e.Out(t, u, args...); strings.TrimRight(got, "\n") != strings.TrimRight(want, "\n") {
		t.Errorf("as %s: portoctl %s:\n got: %q\nwant: %q", u.Name, shellJoin(args), got, want)
	}
}

// Fail runs portoctl and expects a non-zero exit with exactly the error
// line want on stderr and nothing on stdout.
func (e *Env) Fail(t *testing.T, u *User, want string, args ...string) Result {
	t.Helper()
	r := e.Ctl(u, args...)
	if r.Code == 0 {
		t.Errorf("as %s: portoctl %s: want failure %q, got success: %s", u.Name, shellJoin(args), want, r)
		return r
	}
	if got := strings.TrimRight(r.Stderr, "\n"); got != want || r.Stdout != "" {
		t.Errorf("as %s: portoctl %s:\n got: %s\nwant stderr: %q", u.Name, shellJoin(args), r, want)
	}
	return r
}

// FailWith runs portoctl and expects a non-zero exit with an error line
// naming the EError code.
func (e *Env) FailWith(t *testing.T, u *User, code string, args ...string) Result {
	t.Helper()
	r := e.Ctl(u, args...)
	if r.Code == 0 || !strings.Contains(r.Stderr, ": "+code+" (") {
		t.Errorf("as %s: portoctl %s: want a %s error, got %s", u.Name, shellJoin(args), code, r)
	}
	return r
}

// WaitState polls until the container reaches state (10s).
func (e *Env) WaitState(t *testing.T, u *User, name, state string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	var last Result
	for time.Now().Before(deadline) {
		last = e.Ctl(u, "get", name, "state")
		if last.Code == 0 && strings.TrimSpace(last.Stdout) == state {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("container %s did not become %s in 10s: %s", name, state, last)
}

// GetStateAfterRun replays "portoctl get NAME state" right after a run of a
// short command: the seed shows "dead"; a few milliseconds of "running" are
// tolerated (and logged) since the command may not have finished yet.
func (e *Env) GetStateAfterRun(t *testing.T, u *User, name string) {
	t.Helper()
	r := e.Ctl(u, "get", name, "state")
	if r.Code == 0 && strings.TrimSpace(r.Stdout) == "running" {
		t.Logf("%s still running right after run; waiting for it", name)
		e.WaitState(t, u, name, "dead")
		return
	}
	if r.Code != 0 || strings.TrimSpace(r.Stdout) != "dead" {
		t.Errorf("portoctl get %s state: want dead, got %s", name, r)
	}
}

// DestroyAll destroys every first-level container, as root over busctl.
func (e *Env) DestroyAll(t *testing.T) {
	t.Helper()
	names, err := e.List()
	if err != nil {
		t.Errorf("List: %v", err)
		return
	}
	for _, n := range names {
		if n == "/" || strings.Contains(n, "/") {
			continue
		}
		if r := e.Busctl(rootUser, "call", "org.porto.Manager", "/org/porto/Manager", "org.porto.Manager", "Destroy", "s", n); r.Code != 0 {
			t.Errorf("cleanup: Destroy %s: %s", n, r)
		}
	}
}

// List returns every container name (over busctl, as root).
func (e *Env) List() ([]string, error) {
	r := e.Busctl(rootUser, "--json=short", "call", "org.porto.Manager", "/org/porto/Manager", "org.porto.Manager", "List")
	if r.Code != 0 {
		return nil, errors.New(r.String())
	}
	var v struct {
		Type string     `json:"type"`
		Data [][]string `json:"data"`
	}
	if err := json.Unmarshal([]byte(r.Stdout), &v); err != nil || len(v.Data) != 1 {
		return nil, fmt.Errorf("List: unexpected reply %q: %v", r.Stdout, err)
	}
	out := slices.DeleteFunc(v.Data[0], func(s string) bool { return s == "/" })
	return out, nil
}

// --- leak checks -------------------------------------------------------------

type proc struct {
	pid     int
	ppid    int
	state   string
	cmdline string
	cgroups []string // "controllers:path"
}

func readProc(pid int) (proc, bool) {
	p := proc{pid: pid}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return p, false
	}
	s := string(stat)
	if i := strings.LastIndexByte(s, ')'); i > 0 {
		f := strings.Fields(s[i+1:])
		if len(f) > 2 {
			p.state = f[0]
			p.ppid, _ = strconv.Atoi(f[1])
		}
	}
	cl, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	p.cmdline = strings.TrimSpace(strings.ReplaceAll(string(cl), "\x00", " "))
	cg, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	for line := range strings.SplitSeq(strings.TrimSpace(string(cg)), "\n") {
		if _, rest, ok := strings.Cut(line, ":"); ok {
			p.cgroups = append(p.cgroups, rest)
		}
	}
	return p, true
}

func allProcs() []proc {
	ents, _ := os.ReadDir("/proc")
	var out []proc
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if p, ok := readProc(pid); ok {
			out = append(out, p)
		}
	}
	return out
}

// ProcsByCmdline returns live processes whose command line is exactly cmdline.
func ProcsByCmdline(cmdline string) []proc {
	var out []proc
	for _, p := range allProcs() {
		if p.cmdline == cmdline && p.state != "Z" {
			out = append(out, p)
		}
	}
	return out
}

// inRoot reports whether a /proc/PID/cgroup path is inside porto's subtree.
func (e *Env) inRoot(path string) bool {
	r := "/" + e.CgroupRoot
	return path == r || strings.HasPrefix(path, r+"/") || strings.Contains(path, "/"+e.CgroupRoot+"/") || strings.HasSuffix(path, "/"+e.CgroupRoot)
}

// ProcsInCgroups returns the live processes in any cgroup of porto's subtree.
func (e *Env) ProcsInCgroups() []proc {
	var out []proc
	for _, p := range allProcs() {
		if p.state == "Z" {
			continue
		}
		for _, cg := range p.cgroups {
			_, path, _ := strings.Cut(cg, ":")
			if e.inRoot(path) {
				out = append(out, p)
				break
			}
		}
	}
	return out
}

// ContainerCgroups returns the cgroup paths of pid, by hierarchy.
func ContainerCgroups(pid int) map[string]string {
	p, ok := readProc(pid)
	if !ok {
		return nil
	}
	out := map[string]string{}
	for _, cg := range p.cgroups {
		ctrls, path, _ := strings.Cut(cg, ":")
		if ctrls == "" {
			ctrls = "unified"
		}
		for c := range strings.SplitSeq(ctrls, ",") {
			out[c] = path
		}
	}
	return out
}

// Cgroups returns every cgroup directory below porto's cgroup_root, in every
// hierarchy (the roots themselves excluded).
func (e *Env) Cgroups() []string {
	var out []string
	for _, h := range cgroupHierarchies() {
		root := filepath.Join(h, e.CgroupRoot)
		filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() && path != root {
				out = append(out, path)
			}
			return nil
		})
	}
	return out
}

// removeCgroupRoots removes the (empty) cgroup_root directories porto left.
func (e *Env) removeCgroupRoots() {
	for _, h := range cgroupHierarchies() {
		root := filepath.Join(h, e.CgroupRoot)
		// Bottom-up, in case something was left (already reported).
		var dirs []string
		filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, path)
			}
			return nil
		})
		for i := len(dirs) - 1; i >= 0; i-- {
			if err := os.Remove(dirs[i]); err != nil && !os.IsNotExist(err) {
				e.t.Logf("rmdir %s: %v", dirs[i], err)
			}
		}
	}
}

func mountPoints() map[string]bool {
	m := map[string]bool{}
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return m
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) > 4 {
			m[fs[4]] = true
		}
	}
	return m
}

// NewMounts returns mount points that appeared since the env started.
func (e *Env) NewMounts() []string {
	var out []string
	for m := range mountPoints() {
		if !e.mountsBefore[m] {
			out = append(out, m)
		}
	}
	slices.Sort(out)
	return out
}

func listFiles(dir string) []string {
	var out []string
	filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			out = append(out, path)
		}
		return nil
	})
	slices.Sort(out)
	return out
}

// StrayProcs returns the live processes that belong to this env: in porto's
// cgroups, working in the env's directory, or carrying the env's marker in
// their environment (portod's master and workers inherit it).
func (e *Env) StrayProcs() []proc {
	deadline := time.Now().Add(3 * time.Second)
	for {
		var out []proc
		marker := []byte("PORTO_ITEST=" + e.CgroupRoot + "\x00")
		for _, p := range allProcs() {
			if p.state == "Z" || p.pid == os.Getpid() {
				continue
			}
			stray := false
			for _, cg := range p.cgroups {
				if _, path, _ := strings.Cut(cg, ":"); e.inRoot(path) {
					stray = true
				}
			}
			if cwd, err := os.Readlink(fmt.Sprintf("/proc/%d/cwd", p.pid)); err == nil && (cwd == e.Dir || strings.HasPrefix(cwd, e.Dir+"/")) {
				stray = true
			}
			if env, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", p.pid)); err == nil && bytes.Contains(env, marker) {
				stray = true
			}
			if stray {
				out = append(out, p)
			}
		}
		if len(out) == 0 || time.Now().After(deadline) {
			return out
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// AssertClean checks that, with no containers left, porto left nothing
// behind: no container, no cgroup below cgroup_root, no process in porto's
// cgroups, no directory in place, no state file beyond the daemon's own.
func (e *Env) AssertClean() {
	t := e.t
	t.Helper()
	e.assertCleanT(t)
}

func (e *Env) assertCleanT(t *testing.T) {
	t.Helper()
	if names, err := e.List(); err != nil {
		t.Errorf("%v", err)
	} else if len(names) > 0 {
		t.Errorf("containers left: %q", names)
	}
	// Processes and cgroups go away asynchronously after destroy returns
	// at worst for a short moment; give them a second.
	deadline := time.Now().Add(2 * time.Second)
	for {
		procs, cgs := e.ProcsInCgroups(), e.Cgroups()
		if len(procs) == 0 && len(cgs) == 0 {
			break
		}
		if time.Now().After(deadline) {
			for _, p := range procs {
				t.Errorf("process left in porto's cgroups: pid %d %q %v", p.pid, p.cmdline, p.cgroups)
			}
			for _, cg := range cgs {
				t.Errorf("cgroup left: %s", cg)
			}
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if ents, err := os.ReadDir(e.Place); err == nil {
		for _, d := range ents {
			t.Errorf("left in place %s: %s", e.Place, d.Name())
		}
	}
	if files := listFiles(e.StateDir); !slices.Equal(files, e.stateBefore) {
		t.Errorf("state files left: %q (at start: %q)", files, e.stateBefore)
	}
}

// CleanupContainers registers, on t, destruction of every container and a
// leak check when t ends (for one transcript).
func (e *Env) CleanupContainers(t *testing.T) {
	t.Cleanup(func() {
		if !e.PortodAlive() {
			t.Errorf("portod is not running\n%s", e.LogTail())
			return
		}
		e.DestroyAll(t)
		e.assertCleanT(t)
	})
}

// shellJoin quotes args for messages.
func shellJoin(args []string) string {
	var b strings.Builder
	for i, a := range args {
		if i > 0 {
			b.WriteByte(' ')
		}
		if a == "" || strings.ContainsAny(a, " \t'\"$;&|<>()\\*?") {
			b.WriteString(strconv.Quote(a))
		} else {
			b.WriteString(a)
		}
	}
	return b.String()
}
