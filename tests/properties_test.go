package tests

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// The seed's "Properties" section, every transcript, replayed through
// bin/portoctl as root and as porto-alice. Comments quote the seed.

func TestProperties(t *testing.T) { forEachTransport(t, testProperties) }

func testProperties(t *testing.T, e *Env) {

	// If for some reason container can't start, Porto returns errno of
	// failed syscall. Use start_errno to get it:
	//   $ portoctl create invalid
	//   $ portoctl set invalid command __invalid_command__
	//   $ portoctl start invalid
	//   Can't start container: Unknown (No such file or directory: execvpe(__invalid_command__))
	//   $ portoctl get invalid start_errno
	//   2
	forEachUser(t, e, "start_errno", func(t *testing.T, u *User) {
		e.OK(t, u, "create", "invalid")
		e.OK(t, u, "set", "invalid", "command", "__invalid_command__")
		r := e.Ctl(u, "start", "invalid")
		// The seed (old Porto) says Unknown; new Porto says InvalidCommand.
		re := regexp.MustCompile(`^Can't start container: (Unknown|InvalidCommand) \(No such file or directory: execvpe\(__invalid_command__\)\)$`)
		if r.Code == 0 || r.Stdout != "" || !re.MatchString(strings.TrimRight(r.Stderr, "\n")) {
			t.Errorf("start of a bad command: got %s\nwant stderr matching %s", r, re)
		}
		e.Expect(t, u, "2", "get", "invalid", "start_errno")
		e.Expect(t, u, "stopped", "get", "invalid", "state")
		// Nothing of the failed start is left running.
		if procs := e.ProcsInCgroups(); len(procs) > 0 {
			t.Errorf("processes left after a failed start: %v", procs)
		}
		e.OK(t, u, "destroy", "invalid")
	})

	// Container exit status is available via exit_status data, portoctl get
	// shows human readable status:
	//   $ portoctl run true command="true"
	//   $ portoctl run false command="false"
	//   $ portoctl get true exit_status
	//   Container exited with 0
	//   $ portoctl get false exit_status
	//   Container exited with 1
	//   $ portoctl run sleep command="sleep 1000"
	//   $ kill -9 $(portoctl get sleep root_pid)
	//   $ portoctl get sleep exit_status
	//   Container killed by signal 9
	// portoctl dget returns data without any post processing:
	//   $ portoctl dget sleep exit_status
	//   9
	//   $ portoctl dget true exit_status
	//   0
	//   $ portoctl dget false exit_status
	//   256
	// Porto shows whether container is killed by OOM:
	//   $ portoctl get false oom_killed
	//   false
	forEachUser(t, e, "exit_status", func(t *testing.T, u *User) {
		e.OK(t, u, "run", "true", "command=true")
		e.OK(t, u, "run", "false", "command=false")
		e.WaitState(t, u, "true", "dead")
		e.WaitState(t, u, "false", "dead")
		e.Expect(t, u, "Container exited with 0", "get", "true", "exit_status")
		e.Expect(t, u, "Container exited with 1", "get", "false", "exit_status")
		e.OK(t, u, "run", "sleep", "command=sleep 1000")
		pid := e.Out(t, u, "get", "sleep", "root_pid")
		if r := e.Exec(u, "kill", "-9", pid); r.Code != 0 {
			t.Fatalf("kill -9 $(portoctl get sleep root_pid): %s", r)
		}
		e.WaitState(t, u, "sleep", "dead")
		e.Expect(t, u, "Container killed by signal 9", "get", "sleep", "exit_status")
		e.Expect(t, u, "9", "dget", "sleep", "exit_status")
		e.Expect(t, u, "0", "dget", "true", "exit_status")
		e.Expect(t, u, "256", "dget", "false", "exit_status")
		e.Expect(t, u, "false", "get", "false", "oom_killed")
		for _, n := range []string{"true", "false", "sleep"} {
			e.OK(t, u, "destroy", n)
		}
	})

	// Container environment, working directory and resource limits may be
	// specified:
	//   $ portoctl run env command="bash -c 'env | grep TEST_PORTO'" env="TEST_PORTO1=1; TEST_PORTO2=2"
	//   $ portoctl get env stdout
	//   TEST_PORTO2=2
	//   TEST_PORTO1=1
	forEachUser(t, e, "env", func(t *testing.T, u *User) {
		e.OK(t, u, "run", "env", "command=bash -c 'env | grep TEST_PORTO'", "env=TEST_PORTO1=1; TEST_PORTO2=2")
		e.WaitState(t, u, "env", "dead")
		got := strings.Split(e.Out(t, u, "get", "env", "stdout"), "\n")
		if !sameSet(got, []string{"TEST_PORTO2=2", "TEST_PORTO1=1"}) {
			t.Errorf("env: got %q", got)
		}
		e.OK(t, u, "destroy", "env")

		// Escaped separators: "A=1\;2" is one variable.
		e.OK(t, u, "run", "env", `command=bash -c 'echo "$TEST_PORTO3"'`, `env=TEST_PORTO3=a\;b; TEST_PORTO4=c`)
		e.WaitState(t, u, "env", "dead")
		e.Expect(t, u, "a;b", "get", "env", "stdout")
	})

	//   $ portoctl run cwd command="pwd" cwd="/tmp"
	//   $ portoctl get cwd stdout
	//   /tmp
	forEachUser(t, e, "cwd", func(t *testing.T, u *User) {
		e.OK(t, u, "run", "cwd", "command=pwd", "cwd=/tmp")
		e.WaitState(t, u, "cwd", "dead")
		e.Expect(t, u, "/tmp", "get", "cwd", "stdout")
		e.OK(t, u, "destroy", "cwd")
	})

	//   $ portoctl run ulimit command="bash -c 'builtin ulimit -a'" ulimit = "nproc: 20480 30720; nofile: 819200 1024000"
	//   $ portoctl get ulimit stdout
	//   ...
	//   open files                      (-n) 819200
	//   ...
	//   max user processes              (-u) 20480
	// This host cannot raise the hard nofile limit above 20000 (no
	// CAP_SYS_RESOURCE), so the seed's numbers must give a clear error, and
	// numbers it can grant must be applied.
	forEachUser(t, e, "ulimit", func(t *testing.T, u *User) {
		// The seed's exact argv: "ulimit", "=", "<value>" as three words.
		r := e.Ctl(u, "run", "ulimit", "command=bash -c 'builtin ulimit -a'", "ulimit", "=", "nproc: 20480 30720; nofile: 819200 1024000")
		msg := strings.TrimRight(r.Stderr, "\n")
		if r.Code == 0 || !regexp.MustCompile(`^Can't [a-z ]+: [A-Za-z]+ \(.*nofile.*\)$`).MatchString(msg) {
			t.Errorf("ulimit nofile above the host's hard limit: want a clear error naming nofile, got %s", r)
		} else {
			t.Logf("refused as expected: %s", msg)
		}
		e.FailWith(t, u, "ContainerDoesNotExist", "get", "ulimit", "state")

		e.OK(t, u, "run", "ulimit", "command=bash -c 'builtin ulimit -a'", "ulimit", "=", "nproc: 20480 30720; nofile: 4096 8192")
		e.WaitState(t, u, "ulimit", "dead")
		out := e.Out(t, u, "get", "ulimit", "stdout")
		if got := ulimitLine(out, "-n"); got != "4096" {
			t.Errorf("open files (-n) = %q, want 4096 in\n%s", got, out)
		}
		if got := ulimitLine(out, "-u"); got != "20480" {
			t.Errorf("max user processes (-u) = %q, want 20480 in\n%s", got, out)
		}
		if !strings.Contains(out, "core file size") || !strings.Contains(out, "virtual memory") {
			t.Errorf("ulimit -a output incomplete:\n%s", out)
		}
		e.OK(t, u, "destroy", "ulimit")

		// Hard limits too, with the k=v form.
		e.OK(t, u, "run", "ulimit", "command=bash -c 'ulimit -Hn; ulimit -Hu; ulimit -Sn'", "ulimit=nproc: 20480 30720; nofile: 4096 8192")
		e.WaitState(t, u, "ulimit", "dead")
		e.Expect(t, u, "8192\n30720\n4096", "get", "ulimit", "stdout")
		e.OK(t, u, "destroy", "ulimit")

		e.FailWith(t, u, "InvalidValue", "run", "ulimit", "command=true", "ulimit=nofile: lots")
		e.FailWith(t, u, "ContainerDoesNotExist", "get", "ulimit", "state")
	})

	// PID of root container process can be obtained via root_pid data:
	//   $ portoctl run sleep command="sleep 1000"
	//   $ portoctl get sleep root_pid
	//   9354
	//   $ ls -la /proc/9354/exe
	//   lrwxrwxrwx. 1 stfomichev stfomichev 0 ... /proc/9354/exe -> /usr/bin/sleep
	forEachUser(t, e, "root_pid", func(t *testing.T, u *User) {
		e.OK(t, u, "run", "sleep", "command=sleep 1000")
		pidStr := e.Out(t, u, "get", "sleep", "root_pid")
		pid, err := strconv.Atoi(pidStr)
		if err != nil || pid <= 1 {
			t.Fatalf("root_pid = %q", pidStr)
		}
		exe, err := os.Readlink("/proc/" + pidStr + "/exe")
		if err != nil || filepath.Base(exe) != "sleep" {
			t.Errorf("/proc/%d/exe -> %q (%v), want .../sleep", pid, exe, err)
		}
		if uid := ownerOf(t, "/proc/"+pidStr); uid != u.UID {
			t.Errorf("/proc/%d is owned by uid %d, want %d (%s)", pid, uid, u.UID, u.Name)
		}
		// The container's processes live in its own cgroups.
		cgs := ContainerCgroups(pid)
		for _, c := range []string{"freezer", "memory", "cpu", "cpuacct", "pids"} {
			if p, ok := cgs[c]; !ok || !e.inRoot(p) || !strings.Contains(p, "sleep") {
				t.Errorf("root_pid's %s cgroup is %q, want one of the container's below /%s", c, p, e.CgroupRoot)
			}
		}
		e.OK(t, u, "destroy", "sleep")
		if _, err := os.Stat("/proc/" + pidStr); err == nil {
			if p, ok := readProc(pid); ok && p.state != "Z" && p.cmdline == "sleep 1000" {
				t.Errorf("root_pid %d still alive after destroy", pid)
			}
		}
	})

	// When container starts, Porto creates temporary files for stdout/stderr
	// and stdin is /dev/null. Container stdin/stdout/stderr may be changed
	// via stdin_path, stdout_path and stderr_path properties.
	forEachUser(t, e, "stdio", func(t *testing.T, u *User) {
		e.OK(t, u, "run", "stdio", "command=bash -c 'readlink /proc/self/fd/0; echo out; echo err >&2'")
		e.WaitState(t, u, "stdio", "dead")
		e.Expect(t, u, "/dev/null\nout", "get", "stdio", "stdout")
		e.Expect(t, u, "err", "get", "stdio", "stderr")
		e.Expect(t, u, "/dev/null", "get", "stdio", "stdin_path")
		e.OK(t, u, "destroy", "stdio")

		// Paths of the caller's own choosing, in a directory only it can write.
		dir := filepath.Join(e.Dir, "stdio-"+u.Name)
		if err := os.Mkdir(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		defer os.RemoveAll(dir)
		in := filepath.Join(dir, "in")
		if err := os.WriteFile(in, []byte("hello from stdin\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		os.Chown(dir, u.UID, u.GID)
		os.Chown(in, u.UID, u.GID)
		out, errf := filepath.Join(dir, "out"), filepath.Join(dir, "err")
		e.OK(t, u, "run", "stdio", "command=bash -c 'cat; echo oops >&2'",
			"stdin_path="+in, "stdout_path="+out, "stderr_path="+errf)
		e.WaitState(t, u, "stdio", "dead")
		e.Expect(t, u, in, "get", "stdio", "stdin_path")
		e.Expect(t, u, out, "get", "stdio", "stdout_path")
		e.Expect(t, u, errf, "get", "stdio", "stderr_path")
		for path, want := range map[string]string{out: "hello from stdin\n", errf: "oops\n"} {
			b, err := os.ReadFile(path)
			if err != nil || string(b) != want {
				t.Errorf("%s = %q (%v), want %q", path, b, err, want)
				continue
			}
			if uid := ownerOf(t, path); uid != u.UID {
				t.Errorf("%s is owned by uid %d, want %d (%s)", path, uid, u.UID, u.Name)
			}
		}
		e.Expect(t, u, "hello from stdin", "get", "stdio", "stdout")
		e.OK(t, u, "destroy", "stdio")
		// Files the caller named are the caller's: destroy leaves them.
		if _, err := os.Stat(out); err != nil {
			t.Errorf("destroy removed the caller's stdout_path: %v", err)
		}
	})
}

// ulimitLine returns the value of the "(flag)" line of "ulimit -a".
func ulimitLine(out, flag string) string {
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, "("+flag+")") || strings.Contains(l, ", "+flag+")") {
			f := strings.Fields(l)
			return f[len(f)-1]
		}
	}
	return ""
}

func sameSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	m := map[string]int{}
	for _, s := range a {
		m[s]++
	}
	for _, s := range b {
		m[s]--
	}
	for _, v := range m {
		if v != 0 {
			return false
		}
	}
	return true
}
