package isolation_test

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/porto-dev/porto/isolation"
	"github.com/porto-dev/porto/tests/rootfs"
	"golang.org/x/sys/unix"
)

// TestMain dispatches the isolation stage: Launch runs this very test
// binary as "<binary> __isolate".
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == isolation.StageArg {
		isolation.RunStage()
	}
	os.Exit(m.Run())
}

const testPath = "PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"

// requireRoot skips unless the privileged tests were asked for.
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Getenv("PORTO_ROOT_TESTS") != "1" || os.Geteuid() != 0 {
		t.Skip("needs root and PORTO_ROOT_TESTS=1")
	}
	// Nothing a test does may change the host's mount table.
	before := mountTable(t)
	t.Cleanup(func() {
		if after := mountTable(t); after != before {
			t.Errorf("host mount table changed:\nbefore:\n%s\nafter:\n%s", before, after)
		}
	})
}

func mountTable(t *testing.T) string {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

type result struct {
	stdout, stderr string
	status         unix.WaitStatus
	err            error // from WaitExec
}

func (r result) exitCode() int {
	if !r.status.Exited() {
		return -1
	}
	return r.status.ExitStatus()
}

// launch starts a stage for cfg (with spec's join settings) and returns
// its pid and the parent end of the sync socket, already released.
func launch(t *testing.T, cfg isolation.Config, spec isolation.LaunchSpec, stdout, stderr *os.File, extra ...*os.File) (int, *os.File) {
	t.Helper()
	spec.Cloneflags = isolation.CloneFlags(&cfg)
	parent, child, err := isolation.SyncPair()
	if err != nil {
		t.Fatal(err)
	}
	stdin, err := os.Open("/dev/null")
	if err != nil {
		t.Fatal(err)
	}
	defer stdin.Close()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	files := append([]*os.File{stdin, stdout, stderr, child}, extra...)
	var pid int
	if warmMode && spec.JoinPid == 0 {
		var ctl *os.File
		pid, ctl, err = isolation.LaunchWarm(self, spec.Cloneflags)
		if err == nil {
			err = isolation.Hand(ctl, files)
		}
	} else {
		pid, err = isolation.Launch(self, spec, files)
	}
	child.Close()
	if err != nil {
		parent.Close()
		t.Fatalf("Launch: %v", err)
	}
	t.Cleanup(func() {
		// Reap whatever is left if the test gave up early.
		if unix.Kill(pid, 0) == nil {
			unix.Kill(pid, unix.SIGKILL)
			var ws unix.WaitStatus
			unix.Wait4(pid, &ws, 0, nil)
		}
	})
	if err := isolation.Release(parent, &cfg); err != nil {
		parent.Close()
		t.Fatalf("Release: %v", err)
	}
	return pid, parent
}

// run launches cfg, waits for its exit and collects stdout and stderr.
func run(t *testing.T, cfg isolation.Config) result {
	t.Helper()
	dir := t.TempDir()
	out, err := os.Create(filepath.Join(dir, "stdout"))
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	errf, err := os.Create(filepath.Join(dir, "stderr"))
	if err != nil {
		t.Fatal(err)
	}
	defer errf.Close()
	if cfg.Env == nil {
		cfg.Env = []string{testPath}
	}
	pid, parent := launch(t, cfg, isolation.LaunchSpec{}, out, errf)
	var r result
	var cmd int
	cmd, r.err = isolation.WaitExec(parent)
	parent.Close()
	if cmd != 0 {
		t.Errorf("a stage that joined no pid namespace forked pid %d", cmd)
	}
	r.status = wait(t, pid)
	o, _ := os.ReadFile(out.Name())
	e, _ := os.ReadFile(errf.Name())
	r.stdout, r.stderr = string(o), string(e)
	return r
}

// mustRun runs cfg and fails the test unless the command exited 0.
func mustRun(t *testing.T, cfg isolation.Config) string {
	t.Helper()
	r := run(t, cfg)
	if r.err != nil || r.exitCode() != 0 {
		t.Fatalf("%q: start error %v, status %#x, stdout %q, stderr %q", cfg.Argv, r.err, r.status, r.stdout, r.stderr)
	}
	return r.stdout
}

func startError(t *testing.T, r result) *isolation.StartError {
	t.Helper()
	var se *isolation.StartError
	if !errors.As(r.err, &se) {
		t.Fatalf("want a StartError, got %v (status %#x, stderr %q)", r.err, r.status, r.stderr)
	}
	if r.exitCode() != 127 {
		t.Errorf("failed stage exited with %#x, want 127", r.status)
	}
	return se
}

func sh(script string) []string { return []string{"sh", "-c", script} }

func TestIsolatedCommandIsPid1(t *testing.T) {
	requireRoot(t)
	if got := mustRun(t, isolation.Config{Argv: sh("echo $$"), Isolate: true}); got != "1\n" {
		t.Errorf("isolated pid = %q, want 1", got)
	}
	// A fresh /proc: only the container's own processes are visible.
	got := mustRun(t, isolation.Config{Argv: sh("ls /proc | grep -c '^[0-9]'"), Isolate: true})
	if n, _ := strconv.Atoi(strings.TrimSpace(got)); n < 1 || n > 3 {
		t.Errorf("isolated container sees %q processes", got)
	}
	if got := mustRun(t, isolation.Config{Argv: sh("echo $$")}); got == "1\n" {
		t.Errorf("isolate=false still gave pid 1")
	}
}

func TestMissingCommand(t *testing.T) {
	requireRoot(t)
	se := startError(t, run(t, isolation.Config{Argv: []string{"__invalid_command__"}, Isolate: true}))
	if se.Error() != "No such file or directory: execvpe(__invalid_command__)" || se.Errno != 2 {
		t.Errorf("got %q errno %d", se.Error(), se.Errno)
	}
	se = startError(t, run(t, isolation.Config{Argv: []string{"/nonexistent/x"}}))
	if se.Error() != "No such file or directory: execvpe(/nonexistent/x)" || se.Errno != 2 {
		t.Errorf("got %q errno %d", se.Error(), se.Errno)
	}
}

func TestCwdEnv(t *testing.T) {
	requireRoot(t)
	if got := mustRun(t, isolation.Config{Argv: []string{"pwd"}, Cwd: "/tmp"}); got != "/tmp\n" {
		t.Errorf("pwd = %q", got)
	}
	got := mustRun(t, isolation.Config{Argv: sh("echo $A-$B"), Env: []string{testPath, "A=1", "B=x y"}})
	if got != "1-x y\n" {
		t.Errorf("env = %q", got)
	}
	se := startError(t, run(t, isolation.Config{Argv: []string{"true"}, Cwd: "/nonexistent"}))
	if se.Op != "chdir(/nonexistent)" || se.Errno != int(unix.ENOENT) {
		t.Errorf("bad cwd: %v", se)
	}
	// PATH comes from the container's env, not from ours.
	se = startError(t, run(t, isolation.Config{Argv: []string{"true"}, Env: []string{"PATH=/nonexistent"}}))
	if se.Op != "execvpe(true)" || se.Errno != int(unix.ENOENT) {
		t.Errorf("PATH from env: %v", se)
	}
}

func TestCredentials(t *testing.T) {
	requireRoot(t)
	cfg := isolation.Config{Argv: sh("id -u; id -g; id -G"), UID: 65534, GID: 65534, Groups: []int{65534}}
	if got := mustRun(t, cfg); got != "65534\n65534\n65534\n" {
		t.Errorf("id = %q", got)
	}
	// stdout_path is opened with the container's rights, not root's.
	dir := t.TempDir() // 0700, owned by root
	cfg = isolation.Config{Argv: []string{"true"}, UID: 65534, GID: 65534, StdoutPath: filepath.Join(dir, "out")}
	se := startError(t, run(t, cfg))
	if se.Errno != int(unix.EACCES) || !strings.HasPrefix(se.Op, "open(") {
		t.Errorf("nobody opened a root-only path: %v", se)
	}
	if _, err := os.Stat(filepath.Join(dir, "out")); err == nil {
		t.Error("file created on behalf of nobody")
	}
	// And as root it works.
	cfg = isolation.Config{Argv: sh("echo hi"), StdoutPath: filepath.Join(dir, "out")}
	mustRun(t, cfg)
	if b, _ := os.ReadFile(filepath.Join(dir, "out")); string(b) != "hi\n" {
		t.Errorf("stdout_path content %q", b)
	}
}

func TestRlimits(t *testing.T) {
	requireRoot(t)
	cfg := isolation.Config{Argv: sh("ulimit -n; ulimit -Hn"), Rlimits: []isolation.Rlimit{{Resource: unix.RLIMIT_NOFILE, Soft: 4096, Hard: 8192}}}
	if got := mustRun(t, cfg); got != "4096\n8192\n" {
		t.Errorf("nofile = %q", got)
	}
	cfg.Rlimits = []isolation.Rlimit{{Resource: unix.RLIMIT_NOFILE, Soft: 819200, Hard: 1024000}}
	var cur unix.Rlimit
	unix.Getrlimit(unix.RLIMIT_NOFILE, &cur)
	if cur.Max >= 1024000 {
		t.Skip("this host grants nofile 1024000")
	}
	se := startError(t, run(t, cfg))
	if se.Op != "setrlimit(nofile)" || (se.Errno != int(unix.EPERM) && se.Errno != int(unix.EINVAL)) {
		t.Errorf("unreachable nofile: %v (errno %d)", se, se.Errno)
	}
}

func TestCapabilities(t *testing.T) {
	requireRoot(t)
	cfg := isolation.Config{Argv: sh("grep -E 'CapBnd|CapEff' /proc/self/status"), Capabilities: []int{0, 12}}
	got := mustRun(t, cfg)
	if strings.Count(got, "0000000000001001") != 2 {
		t.Errorf("bounding and effective sets %q", got)
	}
	cfg.Argv = sh("grep CapBnd /proc/self/status")
	cfg.Capabilities = []int{}
	if got := mustRun(t, cfg); !strings.HasSuffix(strings.TrimSpace(got), "0000000000000000") {
		t.Errorf("empty bounding set %q", got)
	}
}

func TestHostname(t *testing.T) {
	requireRoot(t)
	host, _ := os.Hostname()
	if got := mustRun(t, isolation.Config{Argv: []string{"hostname"}, Hostname: "porto"}); got != "porto\n" {
		t.Errorf("hostname = %q", got)
	}
	if now, _ := os.Hostname(); now != host {
		t.Errorf("host name changed to %q", now)
	}
}

// buildRoot makes a root with a shell and a few tools.
func buildRoot(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := rootfs.Build(dir, "/bin/sh", "/bin/ls", "/bin/cat", "/bin/touch", "/bin/hostname", "/bin/sleep", "/usr/bin/id"); err != nil {
		t.Fatalf("rootfs.Build: %v", err)
	}
	return dir
}

func TestRoot(t *testing.T) {
	requireRoot(t)
	empty := t.TempDir()
	se := startError(t, run(t, isolation.Config{Argv: []string{"ls"}, Root: empty, Isolate: true}))
	if se.Error() != "No such file or directory: execvpe(ls)" || se.Errno != 2 {
		t.Errorf("empty root: %q errno %d", se.Error(), se.Errno)
	}

	root := buildRoot(t)
	got := mustRun(t, isolation.Config{Argv: []string{"ls", "/"}, Root: root, Isolate: true, Cwd: "/"})
	for _, d := range []string{"bin", "dev", "proc", "sys"} {
		if !strings.Contains("\n"+got, "\n"+d+"\n") {
			t.Errorf("ls / in the root lacks %s:\n%s", d, got)
		}
	}
	if strings.Contains(got, "home\n") || strings.Contains(got, "boot\n") {
		t.Errorf("host root visible:\n%s", got)
	}
	// The minimal /dev, a fresh /proc and a read-only /sys.
	got = mustRun(t, isolation.Config{Argv: []string{"ls", "/dev"}, Root: root, Isolate: true})
	for _, d := range []string{"null", "zero", "full", "random", "urandom", "tty", "ptmx", "pts", "shm"} {
		if !strings.Contains("\n"+got, "\n"+d+"\n") {
			t.Errorf("/dev lacks %s:\n%s", d, got)
		}
	}
	mustRun(t, isolation.Config{Argv: sh("echo x > /dev/null && ls /dev/pts/ptmx && touch /dev/shm/x"), Root: root, Isolate: true})
	if got := mustRun(t, isolation.Config{Argv: sh("echo $$; ls /proc/1/root/"), Root: root, Isolate: true}); !strings.HasPrefix(got, "1\n") || strings.Contains(got, "home\n") {
		t.Errorf("/proc/1 in the root: %q", got)
	}
	r := run(t, isolation.Config{Argv: sh("touch /sys/x"), Root: root, Isolate: true})
	if r.err != nil || r.exitCode() == 0 {
		t.Errorf("/sys is writable: %v %#x", r.err, r.status)
	}
	// ".." from the root stays in the root.
	if got := mustRun(t, isolation.Config{Argv: sh("cd /../../..; ls"), Root: root, Isolate: true}); strings.Contains(got, "home\n") {
		t.Errorf("escaped via ..: %s", got)
	}
}

func TestRootReadonly(t *testing.T) {
	requireRoot(t)
	root := buildRoot(t)
	r := run(t, isolation.Config{Argv: []string{"touch", "a"}, Root: root, Cwd: "/", Isolate: true})
	if r.err != nil || r.exitCode() != 0 {
		t.Fatalf("touch in a writable root: %v %#x %s", r.err, r.status, r.stderr)
	}
	if _, err := os.Stat(filepath.Join(root, "a")); err != nil {
		t.Errorf("touch a did not land in the root: %v", err)
	}
	r = run(t, isolation.Config{Argv: []string{"touch", "b"}, Root: root, Cwd: "/", Isolate: true, RootReadonly: true})
	if r.err != nil || r.exitCode() != 1 {
		t.Errorf("touch in a read-only root: %v %#x", r.err, r.status)
	}
}

func TestBinds(t *testing.T) {
	requireRoot(t)
	root := buildRoot(t)
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "hello"), []byte("hello\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := isolation.Config{Argv: []string{"cat", "/binded/hello"}, Root: root, Isolate: true,
		Binds: []isolation.Bind{{Source: src, Target: "/binded"}}}
	if got := mustRun(t, cfg); got != "hello\n" {
		t.Errorf("cat via bind = %q", got)
	}
	// Read-only binds refuse writes; rw ones accept them.
	cfg.Argv = sh("touch /binded/ro")
	cfg.Binds[0].ReadOnly = true
	if r := run(t, cfg); r.err != nil || r.exitCode() == 0 {
		t.Errorf("write to ro bind: %v %#x", r.err, r.status)
	}
	cfg.Argv = sh("touch /binded/rw")
	cfg.Binds[0].ReadOnly = false
	mustRun(t, cfg)
	if _, err := os.Stat(filepath.Join(src, "rw")); err != nil {
		t.Errorf("rw bind write missing on the host: %v", err)
	}
	// A single file, and a deep target that does not exist yet.
	cfg = isolation.Config{Argv: []string{"cat", "/x/y/z"}, Root: root, Isolate: true,
		Binds: []isolation.Bind{{Source: filepath.Join(src, "hello"), Target: "/x/y/z", ReadOnly: true}}}
	if got := mustRun(t, cfg); got != "hello\n" {
		t.Errorf("file bind = %q", got)
	}
	// Binds without a root, on the host's tree (in a private namespace).
	target := t.TempDir()
	cfg = isolation.Config{Argv: []string{"cat", filepath.Join(target, "hello")}, Binds: []isolation.Bind{{Source: src, Target: target}}}
	if got := mustRun(t, cfg); got != "hello\n" {
		t.Errorf("bind without root = %q", got)
	}
	if _, err := os.Stat(filepath.Join(target, "hello")); err == nil {
		t.Error("bind without root leaked to the host")
	}
	// Without a root nothing is created on the host's tree.
	cfg = isolation.Config{Argv: []string{"true"}, Binds: []isolation.Bind{{Source: src, Target: filepath.Join(target, "new")}}}
	if se := startError(t, run(t, cfg)); se.Errno != int(unix.ENOENT) {
		t.Errorf("bind to a missing host path: %v", se)
	}
	if _, err := os.Stat(filepath.Join(target, "new")); err == nil {
		t.Error("bind without root created its target on the host")
	}
	// A missing source is an error naming it.
	cfg = isolation.Config{Argv: []string{"true"}, Root: root, Binds: []isolation.Bind{{Source: "/nonexistent/src", Target: "/b"}}}
	se := startError(t, run(t, cfg))
	if se.Errno != int(unix.ENOENT) || !strings.Contains(se.Error(), "/nonexistent/src") {
		t.Errorf("missing source: %v", se)
	}
	// A source the container's user cannot read.
	secret := t.TempDir() // 0700 root
	cfg = isolation.Config{Argv: []string{"true"}, UID: 65534, GID: 65534, Root: root,
		Binds: []isolation.Bind{{Source: secret, Target: "/s", ReadOnly: true}}}
	se = startError(t, run(t, cfg))
	if se.Errno != int(unix.EACCES) || !strings.Contains(se.Op, secret) {
		t.Errorf("unreadable source: %v", se)
	}
}

// TestBindEscapes: a bind DST never resolves outside the root.
func TestBindEscapes(t *testing.T) {
	requireRoot(t)
	root := buildRoot(t)
	src := t.TempDir()
	os.WriteFile(filepath.Join(src, "hello"), []byte("hello\n"), 0o644)
	host := t.TempDir() // a host directory the container must not reach
	if err := os.Symlink(host, filepath.Join(root, "abs")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(strings.Repeat("../", 10)+strings.TrimPrefix(host, "/"), filepath.Join(root, "rel")); err != nil {
		t.Fatal(err)
	}
	os.Symlink(filepath.Join(host, "file"), filepath.Join(root, "filelink"))
	defer func() {
		// Everything landed inside the root.
		if _, err := os.Stat(filepath.Join(root, host, "x")); err != nil {
			t.Errorf("bind targets not made inside the root: %v", err)
		}
	}()
	for _, dst := range []string{"/abs/x", "/rel/x", "/../../../.." + host + "/x", "/proc/1/root" + host + "/x"} {
		cfg := isolation.Config{Argv: []string{"cat", dst + "/hello"}, Root: root, Isolate: true,
			Binds: []isolation.Bind{{Source: src, Target: dst}}}
		r := run(t, cfg)
		t.Logf("bind to %s: start error %v, status %#x, stdout %q", dst, r.err, r.status, r.stdout)
		if r.err == nil && r.exitCode() == 0 && r.stdout != "hello\n" {
			t.Errorf("%s: stdout %q", dst, r.stdout)
		}
		if _, err := os.Stat(filepath.Join(host, "x")); err == nil {
			t.Fatalf("bind to %s created %s/x on the host", dst, host)
		}
	}
	// A file target through a symlink to a host file.
	cfg := isolation.Config{Argv: []string{"true"}, Root: root,
		Binds: []isolation.Bind{{Source: filepath.Join(src, "hello"), Target: "/filelink"}}}
	run(t, cfg)
	if _, err := os.Stat(filepath.Join(host, "file")); err == nil {
		t.Fatal("file bind through a symlink created a file on the host")
	}
	if ents, _ := os.ReadDir(host); len(ents) != 0 {
		t.Errorf("host dir touched: %v", ents)
	}
}

func TestBindDNS(t *testing.T) {
	requireRoot(t)
	want, err := os.ReadFile("/etc/hosts")
	if err != nil {
		t.Skip("no /etc/hosts")
	}
	root := buildRoot(t)
	got := mustRun(t, isolation.Config{Argv: []string{"cat", "/etc/hosts"}, Root: root, BindDNS: true})
	if got != string(want) {
		t.Errorf("/etc/hosts in the root = %q", got)
	}
	// A dangling symlink in the root (as in images made for
	// systemd-resolved) gets its target made inside the root.
	resolv, err := os.ReadFile("/etc/resolv.conf")
	if err == nil {
		os.Remove(filepath.Join(root, "etc/resolv.conf"))
		if err := os.Symlink("../run/porto-test-resolve/stub-resolv.conf", filepath.Join(root, "etc/resolv.conf")); err != nil {
			t.Fatal(err)
		}
		got := mustRun(t, isolation.Config{Argv: []string{"cat", "/etc/resolv.conf"}, Root: root, BindDNS: true})
		if got != string(resolv) {
			t.Errorf("/etc/resolv.conf via a dangling symlink = %q", got)
		}
		if _, err := os.Stat("/run/porto-test-resolve"); err == nil {
			t.Error("dangling symlink target created on the host")
		}
		if _, err := os.Stat(filepath.Join(root, "run/porto-test-resolve/stub-resolv.conf")); err != nil {
			t.Errorf("symlink target not made inside the root: %v", err)
		}
	}
	r := run(t, isolation.Config{Argv: []string{"cat", "/etc/hosts"}, Root: root})
	if r.stdout == string(want) {
		t.Errorf("bind_dns=false still shows the host's /etc/hosts: %q", r.stdout)
	}
}

func TestVirtModeOS(t *testing.T) {
	requireRoot(t)
	root := buildRoot(t)
	mustRun(t, isolation.Config{Argv: sh("touch /run/x"), Root: root, Isolate: true, VirtMode: "os", RootReadonly: true})
}

// subreaper makes this test process the reaper of the commands that
// joined stages fork (the supervisor's role), for the rest of the test.
func subreaper(t *testing.T) {
	t.Helper()
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0) })
}

// startJoined launches cfg into the namespaces joinNS of pid. With "pid"
// among them it expects the stage to fork the command: it reaps the stage
// (which must exit 0) and returns the command's pid, now a child of this
// (subreaper) process. Otherwise the stage itself is the command.
func startJoined(t *testing.T, cfg isolation.Config, pid int, joinNS []string, out *os.File, extra ...*os.File) (int, error) {
	t.Helper()
	jpid, jparent := launch(t, cfg, isolation.LaunchSpec{JoinPid: pid, JoinNS: joinNS}, out, out, extra...)
	cmd, err := isolation.WaitExec(jparent)
	jparent.Close()
	if !slices.Contains(joinNS, "pid") {
		if cmd != 0 {
			t.Errorf("stage forked pid %d without joining a pid namespace", cmd)
		}
		return jpid, err
	}
	ws := wait(t, jpid)
	if err != nil {
		if !ws.Exited() || ws.ExitStatus() != 127 {
			t.Errorf("failed joined stage: status %#x", ws)
		}
		return 0, err
	}
	if cmd <= 0 || cmd == jpid {
		t.Fatalf("joined stage reported command pid %d (stage %d)", cmd, jpid)
	}
	if !ws.Exited() || ws.ExitStatus() != 0 {
		t.Errorf("joined stage after the fork: status %#x", ws)
	}
	t.Cleanup(func() {
		if unix.Kill(cmd, 0) == nil {
			unix.Kill(cmd, unix.SIGKILL)
			var ws unix.WaitStatus
			unix.Wait4(cmd, &ws, 0, nil)
		}
	})
	return cmd, nil
}

// killInit kills the init of a pid namespace and reaps it. Its exit
// completes only when every other process of its namespace is reaped, so
// the joined commands (children of this subreaper) are reaped too.
func killInit(pid int) {
	unix.Kill(pid, unix.SIGKILL)
	for {
		var ws unix.WaitStatus
		got, err := unix.Wait4(-1, &ws, 0, nil)
		if err == unix.EINTR {
			continue
		}
		if err != nil || got == pid {
			return
		}
	}
}

// nsPid is pid's pid in its innermost pid namespace.
func nsPid(t *testing.T, pid int) string {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "NSpid:"); ok {
			f := strings.Fields(v)
			return f[len(f)-1]
		}
	}
	t.Fatalf("no NSpid for %d", pid)
	return ""
}

// TestJoin starts a long-lived isolated container and launches processes
// into its namespaces: they are created in its pid namespace with the next
// pids (the stage's runtime threads use none of them), become children of
// the subreaper, which gets their exit status.
func TestJoin(t *testing.T) {
	requireRoot(t)
	subreaper(t)
	root := buildRoot(t)
	null, _ := os.OpenFile("/dev/null", os.O_WRONLY, 0)
	defer null.Close()
	holder := isolation.Config{Argv: []string{"sleep", "100"}, Root: root, Isolate: true, Env: []string{testPath}}
	pid, parent := launch(t, holder, isolation.LaunchSpec{}, null, null)
	if cmd, err := isolation.WaitExec(parent); err != nil || cmd != 0 {
		t.Fatal(cmd, err)
	}
	parent.Close()
	defer killInit(pid)
	all := []string{"ipc", "uts", "net", "pid", "mnt"}

	// A missing command fails as in any other start, and costs no pid:
	// the PATH search looks before it forks.
	dir := t.TempDir()
	out, _ := os.Create(filepath.Join(dir, "out"))
	defer out.Close()
	_, err := startJoined(t, isolation.Config{Argv: []string{"nonexistent"}, Env: []string{testPath}}, pid, all, out)
	var se *isolation.StartError
	if !errors.As(err, &se) || se.Error() != "No such file or directory: execvpe(nonexistent)" || se.Errno != 2 {
		t.Errorf("joined missing command: %v", err)
	}

	cfg := isolation.Config{Argv: sh("echo $$; ls /; exit 7"), Env: []string{testPath}}
	cmd, err := startJoined(t, cfg, pid, []string{"pid", "mnt"}, out)
	if err != nil {
		t.Fatalf("joined start: %v", err)
	}
	if ws := wait(t, cmd); !ws.Exited() || ws.ExitStatus() != 7 {
		t.Errorf("joined command: status %#x, want exit 7", ws)
	}
	b, _ := os.ReadFile(out.Name())
	t.Logf("joined: %q", b)
	lines := strings.Split(string(b), "\n")
	if lines[0] != "2" {
		t.Errorf("joined command has pid %q in the container, want 2", lines[0])
	}
	if !strings.Contains(string(b), "\nbin\n") || strings.Contains(string(b), "home\n") {
		t.Errorf("joined process does not see the container's root: %q", b)
	}

	// Credentials, capabilities, a hostname of its own (a new UTS
	// namespace copied from the joined one) and the container's ipc/net.
	out3, _ := os.Create(filepath.Join(dir, "out3"))
	defer out3.Close()
	cfg = isolation.Config{Argv: sh("echo $$; id -u; hostname; sleep 100"), Env: []string{testPath}, UID: 65534, GID: 65534, Groups: []int{65534},
		Hostname: "joined", Capabilities: []int{}}
	cmd, err = startJoined(t, cfg, pid, all, out3)
	if err != nil {
		t.Fatalf("joined start as nobody: %v", err)
	}
	for i := 0; i < 200; i++ {
		if b, _ := os.ReadFile(out3.Name()); strings.Count(string(b), "\n") >= 3 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got, _ := os.ReadFile(out3.Name()); !strings.HasSuffix(string(got), "\n65534\njoined\n") || nsPid(t, cmd)+"\n65534\njoined\n" != string(got) {
		t.Errorf("joined as nobody: %q", got)
	}
	st, _ := os.ReadFile("/proc/" + strconv.Itoa(cmd) + "/status")
	if !strings.Contains(string(st), "CapBnd:\t0000000000000000") || !strings.Contains(string(st), "\nPPid:\t"+strconv.Itoa(os.Getpid())+"\n") {
		t.Errorf("joined command status:\n%s", st)
	}
	for _, ns := range []string{"ipc", "net", "pid", "mnt", "uts"} {
		a, _ := os.Readlink("/proc/" + strconv.Itoa(pid) + "/ns/" + ns)
		c, _ := os.Readlink("/proc/" + strconv.Itoa(cmd) + "/ns/" + ns)
		if (a == c) != (ns != "uts") {
			t.Errorf("%s namespace: container %s, joined command %s", ns, a, c)
		}
	}
	unix.Kill(cmd, unix.SIGKILL)
	if ws := wait(t, cmd); !ws.Signaled() || ws.Signal() != unix.SIGKILL {
		t.Errorf("killed joined command: status %#x", ws)
	}

	// An isolated child nested in the container's pid namespace (through
	// the relay): pid 1 of a namespace one level below the container's,
	// in a copy of its mount namespace, with a hostname of its own; a
	// child of the subreaper, which gets its status.
	out4, _ := os.Create(filepath.Join(dir, "out4"))
	defer out4.Close()
	cfg = isolation.Config{Argv: sh("echo $$; hostname; ls /; sleep 100"), Isolate: true, Hostname: "nested", Env: []string{testPath}}
	cmd, err = startJoined(t, cfg, pid, []string{"uts", "net", "pid", "mnt"}, out4)
	if err != nil {
		t.Fatalf("nested start: %v", err)
	}
	for i := 0; i < 200; i++ {
		if b, _ := os.ReadFile(out4.Name()); strings.Contains(string(b), "bin\n") {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	b, _ = os.ReadFile(out4.Name())
	if !strings.HasPrefix(string(b), "1\nnested\n") || !strings.Contains(string(b), "\nbin\n") || strings.Contains(string(b), "home\n") {
		t.Errorf("nested child: %q", b)
	}
	st, _ = os.ReadFile("/proc/" + strconv.Itoa(cmd) + "/status")
	hst, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	nspid := func(st []byte) []string {
		for _, l := range strings.Split(string(st), "\n") {
			if v, ok := strings.CutPrefix(l, "NSpid:"); ok {
				return strings.Fields(v)
			}
		}
		return nil
	}
	if c, h := nspid(st), nspid(hst); len(c) != len(h)+1 || c[len(c)-1] != "1" || !strings.Contains(string(st), "\nPPid:\t"+strconv.Itoa(os.Getpid())+"\n") {
		t.Errorf("nested child NSpid %q (container %q), status:\n%s", c, h, st)
	}
	for _, ns := range []string{"net", "pid", "mnt", "uts"} {
		a, _ := os.Readlink("/proc/" + strconv.Itoa(pid) + "/ns/" + ns)
		c, _ := os.Readlink("/proc/" + strconv.Itoa(cmd) + "/ns/" + ns)
		if (a == c) != (ns == "net") {
			t.Errorf("%s namespace: container %s, nested child %s", ns, a, c)
		}
	}
	unix.Kill(cmd, unix.SIGKILL)
	if ws := wait(t, cmd); !ws.Signaled() || ws.Signal() != unix.SIGKILL {
		t.Errorf("killed nested child: status %#x", ws)
	}
	// A nested stage's failure comes back as its StartError.
	_, err = startJoined(t, isolation.Config{Argv: []string{"nonexistent"}, Isolate: true, Env: []string{testPath}}, pid, []string{"pid", "mnt"}, out4)
	if !errors.As(err, &se) || se.Error() != "No such file or directory: execvpe(nonexistent)" {
		t.Errorf("nested missing command: %v", err)
	}
	// An isolated child that shares the running container's filesystem:
	// its new mount namespace is a copy of the joined one; the stage is
	// the command (pid 1 of its own pid namespace).
	out2, _ := os.Create(filepath.Join(dir, "out2"))
	defer out2.Close()
	cfg = isolation.Config{Argv: sh("echo $$; ls /"), Isolate: true, Hostname: "child", Env: []string{testPath}}
	jpid, err := startJoined(t, cfg, pid, []string{"mnt"}, out2)
	wait(t, jpid)
	if err != nil {
		t.Fatalf("nested isolated start: %v", err)
	}
	b, _ = os.ReadFile(out2.Name())
	if !strings.HasPrefix(string(b), "1\n") || !strings.Contains(string(b), "\nbin\n") || strings.Contains(string(b), "home\n") {
		t.Errorf("nested isolated child: %q", b)
	}
}

// TestJoinPs is the seed's "parent/ps": an isolated container without a
// root runs sleep as pid 1; a joined sleep is pid 2 and a joined ps pid 3.
func TestJoinPs(t *testing.T) {
	requireRoot(t)
	subreaper(t)
	null, _ := os.OpenFile("/dev/null", os.O_WRONLY, 0)
	defer null.Close()
	holder := isolation.Config{Argv: []string{"sleep", "100"}, Isolate: true, Env: []string{testPath}}
	pid, parent := launch(t, holder, isolation.LaunchSpec{}, null, null)
	if cmd, err := isolation.WaitExec(parent); err != nil || cmd != 0 {
		t.Fatal(cmd, err)
	}
	parent.Close()
	defer killInit(pid)
	all := []string{"ipc", "uts", "net", "pid", "mnt"}
	child, err := startJoined(t, isolation.Config{Argv: []string{"sleep", "100"}, Env: []string{testPath}}, pid, all, null)
	if err != nil {
		t.Fatal(err)
	}
	out, _ := os.Create(filepath.Join(t.TempDir(), "out"))
	defer out.Close()
	ps, err := startJoined(t, isolation.Config{Argv: []string{"ps", "-e", "-o", "pid=,args="}, Env: []string{testPath}}, pid, all, out)
	if err != nil {
		t.Fatal(err)
	}
	if ws := wait(t, ps); !ws.Exited() || ws.ExitStatus() != 0 {
		t.Errorf("ps: status %#x", ws)
	}
	b, _ := os.ReadFile(out.Name())
	var got []string
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		got = append(got, strings.Join(strings.Fields(l), " "))
	}
	if want := []string{"1 sleep 100", "2 sleep 100", "3 ps -e -o pid=,args="}; !slices.Equal(got, want) {
		t.Errorf("ps in the container:\n%s\nwant %q", b, want)
	}
	if n := nsPid(t, child); n != "2" {
		t.Errorf("joined sleep is pid %s in the container", n)
	}
}

// TestNothingLeftBehind: the stage is gone after exec (the command is the
// process) and failed starts leave no process.
func TestExecReplacesStage(t *testing.T) {
	requireRoot(t)
	got := mustRun(t, isolation.Config{Argv: sh("readlink /proc/$$/exe; ls /proc/$$/fd | wc -l")})
	lines := strings.Fields(got)
	if len(lines) != 2 || strings.Contains(lines[0], "isolation.test") {
		t.Errorf("exe/fds after exec: %q", got)
	}
	if n, _ := strconv.Atoi(lines[1]); n > 4 {
		t.Errorf("%d fds leaked into the command", n)
	}
}

// buildInit compiles cmd/porto-init and opens it, as the service does.
func buildInit(t *testing.T) *os.File {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "porto-init")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/porto-dev/porto/cmd/porto-init")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Skipf("cannot build porto-init: %v\n%s", err, out)
	}
	f, err := os.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// TestInit: a meta container's porto-init is pid 1, executed by fd (no
// path to it inside the root), holds the namespaces for joined children,
// and exits 0 on SIGTERM; with a command it exits with the command's status.
func TestInit(t *testing.T) {
	requireRoot(t)
	initBin := buildInit(t)
	root := buildRoot(t)
	null, _ := os.OpenFile("/dev/null", os.O_WRONLY, 0)
	defer null.Close()

	cfg := isolation.Config{Argv: []string{"porto-init"}, Root: root, Isolate: true, InitFD: 4, Env: []string{testPath}}
	subreaper(t)
	pid, parent := launch(t, cfg, isolation.LaunchSpec{}, null, null, initBin)
	cmd, err := isolation.WaitExec(parent)
	parent.Close()
	if err != nil || cmd != 0 {
		t.Fatalf("start porto-init: %d, %v", cmd, err)
	}
	// WaitExec returned when porto-init was ready: it handles SIGTERM.
	if st, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status"); !caught(string(st), unix.SIGTERM) {
		t.Errorf("porto-init reported ready before handling SIGTERM:\n%s", st)
	}
	out, _ := os.Create(filepath.Join(t.TempDir(), "out"))
	defer out.Close()
	// porto-init's runtime threads took pids near pid_max and porto-init
	// moved the cursor back: the first joined process is pid 2.
	child := isolation.Config{Argv: sh("echo $$; cat /proc/1/cmdline"), Env: []string{testPath}}
	jpid, err := startJoined(t, child, pid, []string{"pid", "mnt"}, out)
	if err != nil {
		t.Fatalf("joined start: %v", err)
	}
	ws := wait(t, jpid)
	if !ws.Exited() || ws.ExitStatus() != 0 {
		t.Errorf("joined command: status %#x", ws)
	}
	b, _ := os.ReadFile(out.Name())
	if lines := strings.Split(string(b), "\n"); len(lines) < 2 || lines[0] != "2" || !strings.HasPrefix(lines[1], "porto-init") {
		t.Errorf("inside the meta container: %q", b)
	}
	if exe, _ := os.Readlink("/proc/" + strconv.Itoa(pid) + "/exe"); !strings.HasSuffix(exe, "porto-init") {
		t.Errorf("pid 1 runs %q", exe)
	}
	// A signal that reaches a namespace's init before it has handlers is
	// dropped: wait until porto-init catches SIGTERM.
	waitCaught(t, pid, unix.SIGTERM)
	if comm, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm"); string(comm) != "porto-init\n" {
		t.Errorf("pid 1 is called %q", comm)
	}
	unix.Kill(pid, unix.SIGTERM)
	ws = wait(t, pid)
	if !ws.Exited() || ws.ExitStatus() != 0 {
		t.Errorf("porto-init on SIGTERM: status %#x", ws)
	}

	cfg = isolation.Config{Argv: append([]string{"porto-init", "--"}, sh("echo $$; exit 3")...), Root: root, Isolate: true, InitFD: 4, Env: []string{testPath}}
	out2, _ := os.Create(filepath.Join(t.TempDir(), "out"))
	defer out2.Close()
	pid, parent = launch(t, cfg, isolation.LaunchSpec{}, out2, out2, initBin)
	_, err = isolation.WaitExec(parent)
	parent.Close()
	ws = wait(t, pid)
	if err != nil || !ws.Exited() || ws.ExitStatus() != 3 {
		t.Errorf("porto-init -- sh: %v, status %#x", err, ws)
	}
	// The command is porto-init's first child: pid 2.
	if b, _ := os.ReadFile(out2.Name()); string(b) != "2\n" {
		t.Errorf("command under porto-init has pid %q", b)
	}
}

// TestInitAsUser: a non-root porto-init gets CAP_CHECKPOINT_RESTORE just
// to move the pid cursor back (the first joined process is pid 2) and
// keeps no capability.
func TestInitAsUser(t *testing.T) {
	requireRoot(t)
	subreaper(t)
	initBin := buildInit(t)
	null, _ := os.OpenFile("/dev/null", os.O_WRONLY, 0)
	defer null.Close()
	cfg := isolation.Config{Argv: []string{"porto-init"}, Isolate: true, InitFD: 4, UID: 65534, GID: 65534, Groups: []int{65534}, Env: []string{testPath}}
	pid, parent := launch(t, cfg, isolation.LaunchSpec{}, null, null, initBin)
	cmd, err := isolation.WaitExec(parent)
	parent.Close()
	if err != nil || cmd != 0 {
		t.Fatalf("start porto-init as nobody: %d, %v", cmd, err)
	}
	defer killInit(pid)
	st, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	for _, set := range []string{"CapInh", "CapPrm", "CapEff", "CapAmb"} {
		if !strings.Contains(string(st), "\n"+set+":\t0000000000000000\n") {
			t.Errorf("porto-init as nobody keeps capabilities:\n%s", st)
			break
		}
	}
	out, _ := os.Create(filepath.Join(t.TempDir(), "out"))
	defer out.Close()
	child := isolation.Config{Argv: sh("echo $$"), Env: []string{testPath}, UID: 65534, GID: 65534}
	jpid, err := startJoined(t, child, pid, []string{"pid", "mnt"}, out)
	if err != nil {
		t.Fatalf("joined start: %v", err)
	}
	wait(t, jpid)
	if b, _ := os.ReadFile(out.Name()); string(b) != "2\n" {
		t.Errorf("first process next to a non-root porto-init has pid %q", b)
	}
}

// wait reaps pid, killing it if it has not exited within 20 seconds, so a
// broken test never hangs the suite.
func wait(t *testing.T, pid int) unix.WaitStatus {
	t.Helper()
	timer := time.AfterFunc(20*time.Second, func() { unix.Kill(pid, unix.SIGKILL) })
	defer timer.Stop()
	var ws unix.WaitStatus
	for {
		_, err := unix.Wait4(pid, &ws, 0, nil)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			t.Fatalf("wait4(%d): %v", pid, err)
		}
		if !timer.Stop() {
			t.Errorf("pid %d did not exit in time and was killed", pid)
		}
		return ws
	}
}

// caught reports whether a /proc/PID/status text shows a handler for sig.
func caught(status string, sig unix.Signal) bool {
	for _, l := range strings.Split(status, "\n") {
		if v, ok := strings.CutPrefix(l, "SigCgt:\t"); ok {
			m, err := strconv.ParseUint(v, 16, 64)
			return err == nil && m&(1<<(uint(sig)-1)) != 0
		}
	}
	return false
}

// waitCaught waits until pid has a handler for sig.
func waitCaught(t *testing.T, pid int, sig unix.Signal) {
	t.Helper()
	for i := 0; i < 200; i++ {
		b, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "SigCgt:\t"); ok {
				if m, err := strconv.ParseUint(v, 16, 64); err == nil && m&(1<<(uint(sig)-1)) != 0 {
					time.Sleep(50 * time.Millisecond) // and until main has run signal.Notify
					return
				}
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("pid %d never caught %v", pid, sig)
}

// TestAbandoned: a stage whose parent closes the sync socket without
// Release exits quietly, having done nothing.
func TestAbandoned(t *testing.T) {
	requireRoot(t)
	parent, child, err := isolation.SyncPair()
	if err != nil {
		t.Fatal(err)
	}
	null, _ := os.OpenFile("/dev/null", os.O_RDWR, 0)
	defer null.Close()
	self, _ := os.Executable()
	pid, err := isolation.Launch(self, isolation.LaunchSpec{Cloneflags: unix.CLONE_NEWPID | unix.CLONE_NEWNS}, []*os.File{null, null, null, child})
	child.Close()
	if err != nil {
		t.Fatal(err)
	}
	parent.Close()
	if ws := wait(t, pid); !ws.Exited() || ws.ExitStatus() != 0 {
		t.Errorf("abandoned stage: status %#x", ws)
	}
}

// TestCgroupProcs: the stage joins the cgroups it is given before
// anything else.
func TestCgroupProcs(t *testing.T) {
	requireRoot(t)
	base := "/sys/fs/cgroup/freezer"
	if _, err := os.Stat(filepath.Join(base, "cgroup.procs")); err != nil {
		t.Skip("no cgroup v1 freezer hierarchy")
	}
	name := "porto-isolation-test-" + strconv.Itoa(os.Getpid())
	dir := filepath.Join(base, name)
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	defer os.Remove(dir)
	got := mustRun(t, isolation.Config{Argv: sh("grep freezer /proc/self/cgroup"), CgroupProcs: []string{filepath.Join(dir, "cgroup.procs")}})
	if !strings.HasSuffix(strings.TrimSpace(got), "/"+name) {
		t.Errorf("cgroup of the command: %q", got)
	}
	se := startError(t, run(t, isolation.Config{Argv: []string{"true"}, CgroupProcs: []string{"/nonexistent/cgroup.procs"}}))
	if se.Errno != int(unix.ENOENT) {
		t.Errorf("missing cgroup: %v", se)
	}
}

// TestRootAsUser: a non-root container in its own root.
func TestRootAsUser(t *testing.T) {
	requireRoot(t)
	root := buildRoot(t)
	cfg := isolation.Config{Argv: sh("id -u; ls /"), Root: root, Isolate: true, UID: 65534, GID: 65534, Groups: []int{65534}}
	se := startError(t, run(t, cfg))
	if se.Errno != int(unix.EACCES) || !strings.HasPrefix(se.Op, "root(") {
		t.Errorf("nobody entered a root-only root: %v", se)
	}
	for d := root; d != "/tmp"; d = filepath.Dir(d) {
		os.Chmod(d, 0o755)
	}
	// Writable by the user unless read-only.
	if se := startError(t, run(t, cfg)); se.Errno != int(unix.EACCES) {
		t.Errorf("nobody got a root it cannot write: %v", se)
	}
	cfg.RootReadonly = true
	got := mustRun(t, cfg)
	if !strings.HasPrefix(got, "65534\n") || !strings.Contains(got, "\nproc\n") {
		t.Errorf("nobody in the root: %q", got)
	}
}
