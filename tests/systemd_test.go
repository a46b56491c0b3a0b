package tests

import (
	"bytes"
	"context"
	"fmt"
	"golang.org/x/sys/unix"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The systemd tier: a real systemd (PID 1 of its own namespaces), a real
// system dbus-daemon and polkitd, booted by tests/sandbox/sandbox.sh. porto
// is installed inside with "make install" and driven with portoctl and
// systemctl, as an administrator would. It needs root, PORTO_ROOT_TESTS=1
// and PORTO_SANDBOX_TESTS=1 (set by .ci/run); PORTO_SANDBOX_STRICT=1 makes
// any change of the host's mount table, cgroups or /tmp fail (CI: nothing
// else runs there), else only changes the sandbox could have made fail.

// sandbox drives one instance of tests/sandbox/sandbox.sh.
type sandbox struct {
	script string
	repo   string
	env    []string
}

func requireSandbox(t *testing.T) {
	t.Helper()
	requireRoot(t)
	if os.Getenv("PORTO_SANDBOX_TESTS") != "1" {
		t.Skip("real-systemd sandbox test: set PORTO_SANDBOX_TESTS=1 (and PORTO_ROOT_TESTS=1, as root)")
	}
	for _, p := range []string{"/lib/systemd/systemd", "/lib/systemd/system/dbus.service", "/lib/systemd/system/polkit.service"} {
		if _, err := os.Stat(p); err != nil {
			t.Skipf("real-systemd sandbox test: %v", err)
		}
	}
	for _, c := range []string{"unshare", "nsenter", "setpriv", "make"} {
		if _, err := exec.LookPath(c); err != nil {
			t.Skipf("real-systemd sandbox test: %v", err)
		}
	}
}

func (s *sandbox) cmd(ctx context.Context, args ...string) *exec.Cmd {
	c := exec.CommandContext(ctx, s.script, args...)
	c.Env = append(os.Environ(), s.env...)
	c.WaitDelay = time.Second
	return c
}

// run runs the harness with args; it returns the combined output.
func (s *sandbox) run(timeout time.Duration, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var out bytes.Buffer
	c := s.cmd(ctx, args...)
	c.Stdout, c.Stderr = &out, &out
	err := c.Run()
	return strings.TrimRight(out.String(), "\n"), err
}

// sh runs a shell script inside the sandbox (root, in its root cgroup).
func (s *sandbox) sh(script string) (string, error) {
	return s.run(60*time.Second, "exec", "/bin/sh", "-c", script)
}

// ok runs script inside and fails t if it fails; it returns the output.
func (s *sandbox) ok(t *testing.T, script string) string {
	t.Helper()
	out, err := s.sh(script)
	if err != nil {
		t.Fatalf("in the sandbox: %s\n%s\n(%v)", script, out, err)
	}
	return out
}

// hostState is what acceptance 3 compares: the host's mount table, the
// listing of /sys/fs/cgroup and of each hierarchy's root, and /tmp.
type hostState map[string][]string

func snapshotHost(t *testing.T) hostState {
	st := hostState{}
	mi, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	st["mountinfo"] = strings.Split(strings.TrimSpace(string(mi)), "\n")
	ls := func(dir string) []string {
		ents, _ := os.ReadDir(dir)
		var names []string
		for _, e := range ents {
			kind := "f"
			if e.IsDir() {
				kind = "d"
			}
			names = append(names, kind+" "+filepath.Join(dir, e.Name()))
		}
		sort.Strings(names)
		return names
	}
	st["/sys/fs/cgroup"] = ls("/sys/fs/cgroup")
	for _, e := range st["/sys/fs/cgroup"] {
		if d := strings.TrimPrefix(e, "d "); d != e {
			st["cgroups"] = append(st["cgroups"], ls(d)...)
		}
	}
	st["/tmp"] = ls("/tmp")
	return st
}

// diffLines returns the lines only in a ("-") and only in b ("+").
func diffLines(a, b []string) []string {
	var d []string
	for _, l := range a {
		if !slices.Contains(b, l) {
			d = append(d, "- "+l)
		}
	}
	for _, l := range b {
		if !slices.Contains(a, l) {
			d = append(d, "+ "+l)
		}
	}
	return d
}

// compareHost reports (and fails t on) host changes: any change when
// strict; else only those the sandbox named name could have caused.
func compareHost(t *testing.T, before, after hostState, name string, strict bool) {
	t.Helper()
	for _, k := range []string{"mountinfo", "/sys/fs/cgroup", "cgroups", "/tmp"} {
		d := diffLines(before[k], after[k])
		if len(d) == 0 {
			t.Logf("host %s: unchanged (%d entries)", k, len(after[k]))
			continue
		}
		ours := strict || k == "/sys/fs/cgroup"
		for _, l := range d {
			switch {
			case strings.Contains(l, name):
				ours = true
			case k == "mountinfo" && strings.Contains(l, " /sys/fs/cgroup"):
				ours = true
			case k == "cgroups" && (strings.HasPrefix(l, "+ f ") || strings.HasPrefix(l, "- f ")):
				ours = true // a hierarchy's own files never change
			}
		}
		if ours {
			t.Errorf("host %s CHANGED:\n%s", k, strings.Join(d, "\n"))
		} else {
			t.Logf("host %s changed by other tenants of this machine (PORTO_SANDBOX_STRICT=1 fails on it):\n%s", k, strings.Join(d, "\n"))
		}
	}
	for _, e := range after["/sys/fs/cgroup"] {
		if d := strings.TrimPrefix(e, "d "); d != e {
			if _, err := os.Stat(filepath.Join(d, name)); err == nil {
				t.Errorf("host cgroup %s left over", filepath.Join(d, name))
			}
		}
	}
}

// TestSystemdSandbox is issue 6's acceptance in a real systemd: bus
// activation, delegated transient scopes, STATUS=, restart with 20
// running containers, and a host left unchanged.
func TestSystemdSandbox(t *testing.T) {
	requireSandbox(t)
	repo := filepath.Dir(repoFile(t, "Makefile"))
	binDir(t) // bin/ must be built: "make install" inside does not rebuild
	name := fmt.Sprintf("sbx-pt%d", os.Getpid())
	work, err := os.MkdirTemp("/var/tmp", "sbx-ptests-")
	if err != nil {
		t.Fatal(err)
	}
	strict := os.Getenv("PORTO_SANDBOX_STRICT") == "1"
	s := &sandbox{
		script: repoFile(t, "tests/sandbox/sandbox.sh"),
		repo:   repo,
		env:    []string{"SBX_NAME=" + name, "SBX_WORKDIR=" + work, "SBX_RO_BINDS=" + repo + " " + work},
	}
	// units' own systemd tests, built here and run inside (optional: needs go).
	unitsTest := ""
	if gobin, err := exec.LookPath("go"); err == nil {
		unitsTest = filepath.Join(work, "units.test")
		if out, err := exec.Command(gobin, "test", "-c", "-o", unitsTest, "../units").CombinedOutput(); err != nil {
			t.Logf("go test -c ../units: %v\n%s", err, out)
			unitsTest = ""
		}
	}
	if strict {
		s.env = append(s.env, "SBX_STRICT=1")
	}
	// The sandbox confines net_cls only where the host has it mounted;
	// without it, a porto inside would mount the hierarchy rooted at the
	// host's top and leave its cgroups there. Mounted here for the rest
	// of this package's run (TestMain unmounts it).
	if !mountedAt(netClsMount) {
		if err := os.MkdirAll(netClsMount, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := unix.Mount("net_cls", netClsMount, "cgroup", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "net_cls"); err != nil {
			t.Fatalf("mount net_cls: %v", err)
		}
	}
	before := snapshotHost(t)
	t0 := time.Now()
	out, err := s.run(90*time.Second, "up")
	t.Logf("sandbox up (%v):\n%s", time.Since(t0).Round(time.Millisecond), out)
	t.Cleanup(func() {
		if t.Failed() {
			if j, err := s.sh("journalctl --no-pager -o short-monotonic | tail -150"); err == nil {
				t.Logf("journal of the sandbox (tail):\n%s", j)
			}
		}
		env := s.env
		if t.Failed() {
			s.env = append(s.env, "SBX_KEEP=1")
		}
		out, err := s.run(60*time.Second, "down")
		s.env = env
		t.Logf("sandbox down:\n%s", out)
		if err != nil || t.Failed() {
			t.Errorf("sandbox down: %v (state kept in %s)", err, work)
		} else {
			os.RemoveAll(work)
		}
		// acceptance 3: the host is unchanged.
		compareHost(t, before, snapshotHost(t), name, strict)
	})
	if err != nil {
		t.Fatalf("sandbox up: %v", err)
	}

	// make install of this tree (bound read-only), without rebuilding
	// (-o build: bin/ is fresh). The root is an overlay of the host's: a
	// porto.conf installed on the host would be kept by make install, so
	// it is hidden first (in the overlay only) to test the shipped one.
	t.Logf("make install:\n%s", s.ok(t, "rm -f /etc/porto.conf && make -C "+repo+" -o build install 2>&1 && systemctl daemon-reload && echo daemon-reload: ok"))

	t.Run("Activation", func(t *testing.T) { sandboxActivation(t, s) })
	if t.Failed() {
		return
	}
	t.Run("Restart20", func(t *testing.T) { sandboxRestart(t, s) })
	t.Run("WorkerCrash", func(t *testing.T) { sandboxWorkerCrash(t, s) })
	t.Run("StopAndMasterCrash", func(t *testing.T) { sandboxStopAndMasterCrash(t, s) })
	t.Run("OOMKilled", func(t *testing.T) { sandboxOOM(t, s) })
	t.Run("Watchdog", func(t *testing.T) { sandboxWatchdog(t, s) })
	t.Run("Polkit", func(t *testing.T) { sandboxPolkit(t, s) })
	t.Run("PolkitAlice", func(t *testing.T) { sandboxPolkitAlice(t, s) })
	t.Run("Reload", func(t *testing.T) { sandboxReload(t, s) })
	t.Run("UnitsSystemdDriver", func(t *testing.T) {
		if unitsTest == "" {
			t.Skip("no go to build the units tests")
		}
		out, err := s.run(120*time.Second, "exec", "/bin/sh", "-c", "cd "+repo+"/units && PORTO_SYSTEMD_TESTS=1 "+unitsTest+" -test.run Systemd -test.count=1 -test.v 2>&1 | grep -E '^(=== RUN|--- |PASS|FAIL|ok|panic)|_test.go'")
		t.Logf("units tests of the systemd driver, inside the sandbox:\n%s", out)
		if err != nil || !strings.Contains(out, "\nPASS") || strings.Contains(out, "--- FAIL") {
			t.Errorf("units systemd tests failed in the sandbox (%v)", err)
		}
	})
	t.Run("Journal", func(t *testing.T) {
		// What portod and systemd said about porto that was not routine.
		out, _ := s.sh("journalctl --no-pager -o cat -p warning _COMM=portod; journalctl --no-pager -o short-monotonic _PID=1 | grep -i porto | grep -v -E 'Started|Starting|Stopped|Stopping|Deactivated|Consumed|Scheduled restart|porto.slice|Reloading|Activating|activated' || true")
		t.Logf("warnings of portod, and systemd's non-routine lines about porto:\n%s", out)
	})
	t.Run("DestroyAll", func(t *testing.T) {
		s.ok(t, `for c in $(portoctl list | awk '{print $1}'); do case $c in */*) ;; *) portoctl destroy $c || exit 1;; esac; done`)
		out := s.ok(t, "systemctl list-units --all --no-legend --plain 'porto-*' ; ls /sys/fs/cgroup/*/porto.slice/ 2>/dev/null | grep scope || true")
		if strings.TrimSpace(out) != "" {
			t.Errorf("scopes or cgroups left after destroying every container:\n%s", out)
		}
	})
}

// waitFor polls script inside until its output is want.
func (s *sandbox) waitFor(t *testing.T, script, want string, timeout time.Duration) string {
	t.Helper()
	var out string
	for end := time.Now().Add(timeout); ; {
		out, _ = s.sh(script)
		if out == want || time.Now().After(end) {
			return out
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// acceptance 1
func sandboxActivation(t *testing.T, s *sandbox) {
	if out, _ := s.sh("systemctl is-active porto"); out != "inactive" {
		t.Fatalf("before the first call: systemctl is-active porto = %q, want inactive", out)
	}
	out := s.ok(t, "portoctl list && systemctl is-active porto")
	t.Logf("portoctl list; systemctl is-active porto:\n%s", out)
	if !strings.HasSuffix(out, "active") || strings.HasSuffix(out, "inactive") {
		t.Fatalf("the first portoctl list did not activate porto.service: %q", out)
	}
	if out := s.ok(t, "journalctl --no-pager -u dbus | grep -c \"Activating via systemd: service name='org.porto.Manager' unit='porto.service'\" || true"); out == "0" {
		t.Errorf("dbus-daemon did not log the activation of porto.service")
	}

	s.ok(t, `portoctl run x command="sleep 1000"`)
	pid := s.ok(t, "portoctl get x root_pid")
	out = s.ok(t, "ps -o unit= -p "+pid+"; systemctl show -p Delegate porto-x.scope; systemctl show -p ControlGroup porto-x.scope; grep -E 'memory|freezer|name=systemd' /proc/"+pid+"/cgroup")
	t.Logf("ps -o unit= -p %s; systemctl show -p Delegate/ControlGroup porto-x.scope; /proc/%s/cgroup:\n%s", pid, pid, out)
	lines := strings.Split(out, "\n")
	if strings.TrimSpace(lines[0]) != "porto-x.scope" {
		t.Errorf("ps -o unit= of x's root pid = %q, want porto-x.scope", lines[0])
	}
	if len(lines) < 2 || lines[1] != "Delegate=yes" {
		t.Errorf("want Delegate=yes, got %q", out)
	}
	if !strings.Contains(out, "memory:/porto.slice/porto-x.scope") || !strings.Contains(out, "freezer:/porto.slice/porto-x.scope") {
		t.Errorf("x's process is not in its scope's cgroups:\n%s", out)
	}
	// net_cls is porto's own at the scope's path (systemd has no such
	// controller), with x's classid: the one net_class_id names.
	ncls := s.ok(t, "grep net_cls /proc/"+pid+"/cgroup; cat /sys/fs/cgroup/net_cls/porto.slice/porto-x.scope/net_cls.classid; portoctl get x net_class_id")
	t.Logf("net_cls of x:\n%s", ncls)
	if nl := strings.Split(ncls, "\n"); len(nl) != 3 || !strings.HasSuffix(nl[0], ":net_cls:/porto.slice/porto-x.scope") {
		t.Errorf("x's process is not in porto's net_cls cgroup at the scope's path:\n%s", ncls)
	} else if id, err := strconv.ParseUint(nl[1], 10, 32); err != nil || fmt.Sprintf("%x:%x", id>>16, id&0xffff) != nl[2] {
		t.Errorf("net_cls.classid %s does not match net_class_id %s", nl[1], nl[2])
	}
	st := s.waitFor(t, "systemctl show -p StatusText --value porto", "1 containers, 1 running", 6*time.Second)
	status := s.ok(t, "systemctl status porto --no-pager --lines=0 || true")
	t.Logf("systemctl status porto:\n%s", status)
	if st != "1 containers, 1 running" || !strings.Contains(status, `Status: "1 containers, 1 running"`) {
		t.Errorf(`systemctl status porto: want the line Status: "1 containers, 1 running"`)
	}
	scope := s.ok(t, "systemctl status porto-x.scope --no-pager --lines=0 || true")
	t.Logf("systemctl status porto-x.scope:\n%s", scope)
	if !strings.Contains(scope, pid+" sleep 1000") {
		t.Errorf("systemctl status porto-x.scope does not show the container's process %s", pid)
	}
}

// rootPids maps every container to its root_pid.
func (s *sandbox) rootPids(t *testing.T, names []string) map[string]string {
	t.Helper()
	out := s.ok(t, "for c in "+strings.Join(names, " ")+"; do echo $c $(portoctl get $c state) $(portoctl get $c root_pid); done")
	m := map[string]string{}
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if len(f) != 3 || f[1] != "running" {
			t.Errorf("container not running: %q", l)
			continue
		}
		m[f[0]] = f[2]
	}
	return m
}

// acceptance 2
func sandboxRestart(t *testing.T, s *sandbox) {
	names := []string{"x"}
	for i := 1; i < 20; i++ {
		names = append(names, fmt.Sprintf("c%02d", i))
	}
	s.ok(t, `for c in `+strings.Join(names[1:], " ")+`; do portoctl run $c command="sleep 1000" || exit 1; done`)
	before := s.rootPids(t, names)
	if len(before) != 20 {
		t.Fatalf("want 20 running containers, have %d", len(before))
	}
	if st := s.waitFor(t, "systemctl show -p StatusText --value porto", "20 containers, 20 running", 6*time.Second); st != "20 containers, 20 running" {
		t.Errorf("StatusText = %q, want 20 containers, 20 running", st)
	}
	// A container that runs out of memory only after the restart: its OOM
	// must be seen by the restarted porto, after systemd removed the scope.
	s.ok(t, `rm -f /run/oomr-go && portoctl run oomr memory_limit=32M command="sh -c 'while [ ! -e /run/oomr-go ]; do sleep 0.05; done; head -c 512M /dev/zero | tail'"`)
	main0 := s.ok(t, "systemctl show -p MainPID --value porto")
	t0 := time.Now()
	s.ok(t, "systemctl restart porto")
	took := time.Since(t0)
	main1 := s.ok(t, "systemctl is-active porto && systemctl show -p MainPID --value porto")
	t.Logf("systemctl restart porto: %v; MainPID %s -> %s", took.Round(time.Millisecond), main0, main1)
	if strings.HasSuffix(main1, "\n"+main0) {
		t.Errorf("MainPID did not change over the restart")
	}
	after := s.rootPids(t, names)
	for _, n := range names {
		if after[n] != before[n] {
			t.Errorf("%s: root_pid %s before the restart, %s after", n, before[n], after[n])
		}
	}
	// The processes really still run, each in its own scope.
	var chk []string
	for _, n := range names {
		chk = append(chk, fmt.Sprintf(`kill -0 %s && [ "$(ps -o unit= -p %s)" = porto-%s.scope ] || echo "%s: process %s gone or out of its scope"`, before[n], before[n], n, n, before[n]))
	}
	if out := s.ok(t, strings.Join(chk, "\n")); out != "" {
		t.Errorf("after the restart:\n%s", out)
	}
	t.Logf("all 20 containers running with the same root_pid, each in porto-<name>.scope")
	// portod logs natively to the journal: the container is a field.
	if j := s.ok(t, "journalctl --no-pager -u porto CONTAINER=c07 -o cat"); j == "" {
		t.Errorf("journalctl -u porto CONTAINER=c07: nothing logged with the container as a field")
	} else {
		t.Logf("journalctl -u porto CONTAINER=c07 -o cat:\n%s", j)
	}

	s.ok(t, "touch /run/oomr-go")
	if st := s.waitFor(t, "portoctl get oomr state", "dead", 10*time.Second); st != "dead" {
		t.Errorf("oomr: state %q, want dead", st)
	}
	out0 := s.ok(t, "portoctl get oomr oom_killed; systemctl is-active porto-oomr.scope || true; portoctl destroy oomr")
	t.Logf("oomr, OOM-killed after the restart: oom_killed, its scope: %s", out0)
	if !strings.HasPrefix(out0, "true\n") {
		t.Errorf("a restored container killed by the OOM killer: oom_killed %q, want true", out0)
	}

	// Managed again: stop one, kill one, destroy one, start a new one.
	out := s.ok(t, `portoctl stop c01 && portoctl get c01 state && { kill -0 `+before["c01"]+` 2>/dev/null && echo alive || echo gone; } && { systemctl is-active porto-c01.scope || true; }`)
	if out != "stopped\ngone\ninactive" {
		t.Errorf("stop c01: got %q, want stopped, gone, inactive", out)
	}
	s.ok(t, "portoctl kill c02 9")
	if st := s.waitFor(t, "portoctl get c02 state", "dead", 5*time.Second); st != "dead" {
		t.Errorf("c02 after kill -9: state %q, want dead", st)
	}
	es, _ := s.sh("portoctl get c02 exit_status; portoctl get c02 exit_code 2>&1; portoctl get c02 oom_killed")
	t.Logf("c02 (killed with SIGKILL after the restart): exit_status; exit_code; oom_killed:\n%s", es)
	// The restarted master is not the parent of containers it inherited
	// (they were reparented to systemd when the old master exited), so
	// their exit status is unknown: porto says so with LostError.
	if !strings.Contains(es, "LostError") && !strings.HasPrefix(es, "9\n") {
		t.Errorf("c02: exit status should be 9 (SIGKILL) or reported unknown (LostError): %q", es)
	}
	if !strings.HasSuffix(es, "false") {
		t.Errorf("c02: oom_killed should be false")
	}
	out, err := s.sh("portoctl destroy c03 && systemctl status porto-c03.scope --no-pager")
	t.Logf("portoctl destroy c03; systemctl status porto-c03.scope: %v\n%s", err, out)
	if err == nil || !strings.Contains(out, "could not be found") {
		t.Errorf("the scope of a destroyed container still exists")
	}
	if out := s.ok(t, "ls -d /sys/fs/cgroup/*/porto.slice/porto-c03.scope 2>/dev/null || true; kill -0 "+before["c03"]+" 2>/dev/null && echo alive || true"); out != "" {
		t.Errorf("c03 left behind: %s", out)
	}
	out = s.ok(t, `portoctl run n1 command="sleep 1000" && ps -o unit= -p $(portoctl get n1 root_pid) && systemctl show -p Delegate --value porto-n1.scope`)
	if out != "porto-n1.scope\nyes" {
		t.Errorf("a container started after the restart: %q, want porto-n1.scope and Delegate yes", out)
	}
	for _, n := range []string{"c01", "c02", "n1"} {
		s.ok(t, "portoctl destroy "+n)
	}
}

// A crash of the worker, and a SIGTERM of the worker alone, keep
// porto.service active and the containers running.
func sandboxWorkerCrash(t *testing.T, s *sandbox) {
	worker := `M=$(systemctl show -p MainPID --value porto); for p in $(cat /proc/$M/task/*/children); do grep -q __worker /proc/$p/cmdline && echo $p; done; true`
	pid := s.ok(t, "portoctl get x root_pid")
	for _, sig := range []string{"KILL", "TERM"} {
		w := s.ok(t, worker)
		if _, err := strconv.Atoi(w); err != nil {
			t.Fatalf("worker pid: %q", w)
		}
		s.ok(t, "kill -"+sig+" "+w)
		var out string
		for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
			out, _ = s.sh(worker)
			if out != "" && out != w {
				break
			}
		}
		if out == "" || out == w {
			t.Fatalf("no new worker after SIGKILL of %s", w)
		}
		// systemd must not react: no stop of the unit, for 1 s.
		time.Sleep(time.Second)
		st := s.ok(t, "systemctl show -p ActiveState -p SubState --value porto | tr '\\n' ' '; portoctl get x state; portoctl get x root_pid")
		t.Logf("after SIG%s of the worker %s: new worker %s; porto ActiveState SubState, x's state, root_pid: %s", sig, w, out, st)
		if st != "active running running\n"+pid {
			t.Errorf("after SIG%s of the worker: %q, want porto.service active running and x running with root_pid %s", sig, st, pid)
		}
	}
}

// A first-level container killed by the OOM killer reports oom_killed even
// though systemd removes its scope's cgroups as soon as it is empty.
func sandboxOOM(t *testing.T, s *sandbox) {
	s.ok(t, `portoctl run oom memory_limit=32M command="sh -c 'head -c 512M /dev/zero | tail'"`)
	if st := s.waitFor(t, "portoctl get oom state", "dead", 15*time.Second); st != "dead" {
		t.Fatalf("oom: state %q, want dead", st)
	}
	out := s.ok(t, "portoctl get oom exit_status; portoctl get oom oom_killed; systemctl is-active porto-oom.scope || true")
	t.Logf("oom: exit_status, oom_killed, scope: %s", out)
	if !strings.Contains(out, "\ntrue\n") {
		t.Errorf("oom: oom_killed is not true: %q", out)
	}
	// Started again: a new scope of the same name, whose OOM count starts
	// from zero (killed with SIGKILL, it was not OOM-killed).
	out = s.ok(t, `portoctl stop oom && portoctl set oom command "sleep 1000" && portoctl start oom && ps -o unit= -p $(portoctl get oom root_pid) && portoctl kill oom 9`)
	if out != "porto-oom.scope" {
		t.Errorf("oom restarted: %q, want its process in porto-oom.scope", out)
	}
	if st := s.waitFor(t, "portoctl get oom state", "dead", 5*time.Second); st != "dead" {
		t.Fatalf("oom after kill -9: state %q, want dead", st)
	}
	if out := s.ok(t, "portoctl get oom oom_killed"); out != "false" {
		t.Errorf("oom restarted and killed with SIGKILL: oom_killed %q, want false", out)
	}
	s.ok(t, "portoctl destroy oom")
}

// "systemctl stop porto" and a SIGKILL of the master (the unit's main
// process) leave the containers running; the next call re-activates porto
// (stop), or systemd restarts it (Restart=on-failure), and it re-attaches
// them.
func sandboxStopAndMasterCrash(t *testing.T, s *sandbox) {
	pid := s.ok(t, "portoctl get x root_pid")
	out := s.ok(t, "systemctl stop porto; systemctl is-active porto; kill -0 "+pid+" && echo alive; ps -o unit= -p "+pid)
	t.Logf("systemctl stop porto; is-active; x's process; its unit:\n%s", out)
	if out != "inactive\nalive\nporto-x.scope" {
		t.Errorf("after systemctl stop porto: %q, want inactive, x alive in porto-x.scope", out)
	}
	out = s.ok(t, "portoctl get x state && portoctl get x root_pid && systemctl is-active porto")
	if out != "running\n"+pid+"\nactive" {
		t.Errorf("after re-activation: %q, want x running with root_pid %s, porto active", out, pid)
	}
	main0 := s.ok(t, "systemctl show -p MainPID --value porto")
	s.ok(t, "kill -KILL "+main0)
	var main1 string
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(200 * time.Millisecond) {
		main1, _ = s.sh("systemctl is-active porto >/dev/null && systemctl show -p MainPID --value porto")
		if main1 != "" && main1 != "0" && main1 != main0 {
			break
		}
	}
	out, _ = s.sh("portoctl get x state; portoctl get x root_pid; systemctl show -p NRestarts --value porto; systemctl show -p MainPID --value porto; M=$(systemctl show -p MainPID --value porto); ps -o pid=,args= --ppid $M; ps -eo pid=,args= | grep '[p]ortod __worker' | wc -l")
	t.Logf("SIGKILL of the master %s: new MainPID %s; x state, root_pid, NRestarts, MainPID, master's children, number of workers:\n%s", main0, main1, out)
	if f := strings.Split(out, "\n"); len(f) < 4 || f[0] != "running" || f[1] != pid || f[2] == "0" || f[len(f)-1] != "1" {
		t.Errorf("after SIGKILL of the master: %q, want x running with root_pid %s, porto restarted by systemd, one worker", out, pid)
	}
}

// With WatchdogSec set (a drop-in), the worker's pings keep porto.service
// from being killed by systemd.
func sandboxWatchdog(t *testing.T, s *sandbox) {
	dropin := "/run/sbx/units/porto.service.d"
	s.ok(t, "mkdir -p "+dropin+" && printf '[Service]\\nWatchdogSec=1s\\n' > "+dropin+"/watchdog.conf && systemctl daemon-reload && systemctl restart porto")
	defer s.ok(t, "rm -r "+dropin+" && systemctl daemon-reload && systemctl restart porto")
	before := s.ok(t, "systemctl show -p WatchdogUSec -p NRestarts -p MainPID porto")
	time.Sleep(3500 * time.Millisecond)
	after := s.ok(t, "systemctl show -p WatchdogUSec -p NRestarts -p MainPID porto")
	t.Logf("WatchdogSec=1s; before and 3.5 s later:\n%s\n%s", before, after)
	if !strings.Contains(before, "WatchdogUSec=1s") {
		t.Fatalf("the drop-in did not apply: %s", before)
	}
	if before != after {
		t.Errorf("systemd restarted porto.service: no watchdog pings")
	}
}

// A user's own container gets its own scope; another user's container is
// refused until a polkit rule grants org.porto.manage-any (real polkitd).
func sandboxPolkit(t *testing.T, s *sandbox) {
	if _, err := user.Lookup("porto-alice"); err != nil {
		t.Skip("no user porto-alice (.ci/run creates it)")
	}
	as := "setpriv --reuid=porto-alice --regid=porto-alice --init-groups "
	s.ok(t, `portoctl run pk-root command="sleep 1000"`)
	out := s.ok(t, as+`portoctl run pk-alice command="sleep 1000" && ps -o user=,unit= -p $(`+as+`portoctl get pk-alice root_pid)`)
	if f := strings.Fields(out); len(f) != 2 || f[1] != "porto-pk\\x2dalice.scope" && f[1] != "porto-pk-alice.scope" {
		t.Errorf("alice's container: %q, want its process in its own scope", out)
	}
	out, err := s.sh(as + "portoctl destroy pk-root")
	t.Logf("alice destroys root's container: %v %s", err, out)
	if err == nil || !strings.Contains(out, "Permission") {
		t.Errorf("alice destroyed root's container without a polkit grant")
	}
	rule := `polkit.addRule(function(a, s) { if (a.id == "org.porto.manage-any" && s.user == "porto-alice") return polkit.Result.YES; });`
	s.ok(t, "printf '%s\\n' '"+rule+"' > /etc/polkit-1/rules.d/50-porto-test.rules")
	var end = time.Now().Add(5 * time.Second)
	for {
		out, err = s.sh(as + "portoctl destroy pk-root")
		if err == nil || time.Now().After(end) {
			break
		}
		time.Sleep(200 * time.Millisecond) // polkitd reloads its rules on inotify
	}
	t.Logf("with a polkit rule granting org.porto.manage-any: %v %s", err, out)
	if err != nil {
		t.Errorf("alice could not destroy root's container with the polkit grant: %s", out)
	}
	s.ok(t, "rm /etc/polkit-1/rules.d/50-porto-test.rules; portoctl destroy pk-alice")
}

// Issue 7 acceptance 1, against the real polkitd: as porto-alice (not
// root) her own containers work; user=root is Permission; destroying or
// killing root's or porto-bob's container is Permission; a polkit rule
// granting her the org.porto.* actions lets her run as user=daemon.
func sandboxPolkitAlice(t *testing.T, s *sandbox) {
	for _, u := range []string{"porto-alice", "porto-bob"} {
		if _, err := user.Lookup(u); err != nil {
			t.Skip("no user " + u + " (.ci/run creates it)")
		}
	}
	alice := "setpriv --reuid=porto-alice --regid=porto-alice --init-groups "
	bob := "setpriv --reuid=porto-bob --regid=porto-bob --init-groups "
	s.ok(t, `portoctl run pa-root command="sleep 1000"`)
	s.ok(t, bob+`portoctl run pa-bob command="sleep 1000"`)
	defer s.sh("portoctl destroy pa-root; portoctl destroy pa-bob; portoctl destroy pa-alice; portoctl destroy pa-daemon; rm -f /etc/polkit-1/rules.d/51-porto-alice.rules")

	// Her own containers work.
	s.ok(t, alice+`portoctl run pa-alice command=id`)
	s.ok(t, alice+`portoctl wait pa-alice`)
	if out := s.ok(t, alice+`portoctl get pa-alice stdout`); !strings.Contains(out, "(porto-alice)") {
		t.Errorf("alice's container ran as %q", out)
	}
	refused := func(what, cmd, want string) {
		t.Helper()
		out, err := s.sh(alice + cmd)
		t.Logf("%s: %s", what, strings.TrimSpace(out))
		if err == nil || !strings.Contains(out, want) {
			t.Errorf("%s: want %q, got %v %q", what, want, err, out)
		}
	}
	refused("user=root", `portoctl run pa-daemon command=id user=root`, "Permission (Only root can change this property)")
	refused("user=daemon", `portoctl run pa-daemon command=id user=daemon`, "Permission (Only root can change this property)")
	for _, c := range []string{"pa-root", "pa-bob"} {
		refused("destroy "+c, "portoctl destroy "+c, "Permission (Permission error)")
		refused("kill "+c, "portoctl kill "+c+" 9", "Permission (Permission error)")
	}
	for _, c := range []string{"pa-root", "pa-bob"} {
		if st := strings.TrimSpace(s.ok(t, "portoctl get "+c+" state")); st != "running" {
			t.Errorf("%s is %s after the refused attempts", c, st)
		}
	}

	// A polkit rule granting her every org.porto.* action.
	rule := `polkit.addRule(function(a, s) { if (a.id.indexOf("org.porto.") == 0 && s.user == "porto-alice") return polkit.Result.YES; });`
	s.ok(t, "printf '%s\\n' '"+rule+"' > /etc/polkit-1/rules.d/51-porto-alice.rules")
	var out string
	var err error
	for end := time.Now().Add(5 * time.Second); ; {
		out, err = s.sh(alice + `portoctl run pa-daemon command=id user=daemon group=daemon`)
		if err == nil || time.Now().After(end) {
			break
		}
		s.sh("portoctl destroy pa-daemon")
		time.Sleep(200 * time.Millisecond) // polkitd reloads its rules on inotify
	}
	if err != nil {
		t.Fatalf("alice could not run as user=daemon with the polkit grant: %s", out)
	}
	s.ok(t, alice+`portoctl wait pa-daemon`)
	if out := s.ok(t, alice+`portoctl get pa-daemon stdout`); !strings.Contains(out, "uid=1(daemon)") {
		t.Errorf("with the grant, the container ran as %q, want daemon", out)
	}
	if owner := strings.TrimSpace(s.ok(t, `portoctl get pa-daemon owner_user`)); owner != "porto-alice" {
		t.Errorf("owner_user = %q, want porto-alice", owner)
	}
	s.ok(t, alice+`portoctl destroy pa-bob`) // and manage-any lets her act on bob's
}

// "systemctl reload porto" upgrades the master in place: a container it
// started stays its child, so its exit status is still known.
func sandboxReload(t *testing.T, s *sandbox) {
	s.ok(t, `portoctl run rl command="sleep 1000"`)
	pid := s.ok(t, "portoctl get rl root_pid")
	main0 := s.ok(t, "systemctl show -p MainPID --value porto")
	s.ok(t, "systemctl reload porto")
	time.Sleep(500 * time.Millisecond)
	out := s.ok(t, "systemctl show -p MainPID --value porto; systemctl is-active porto; portoctl get rl root_pid")
	if out != main0+"\nactive\n"+pid {
		t.Errorf("after systemctl reload porto: %q, want the same MainPID %s, active, root_pid %s", out, main0, pid)
	}
	s.ok(t, "portoctl kill rl 9")
	if st := s.waitFor(t, "portoctl get rl state", "dead", 5*time.Second); st != "dead" {
		t.Fatalf("rl after kill -9: state %q, want dead", st)
	}
	out = s.ok(t, "portoctl get rl exit_status; portoctl destroy rl")
	t.Logf("rl killed with SIGKILL after systemctl reload porto: exit_status %s", out)
	if !strings.Contains(out, "signal 9") {
		t.Errorf("rl: exit_status %q, want killed by signal 9", out)
	}
}
