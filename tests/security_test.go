package tests

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"
	"github.com/porto-dev/porto/tests/rootfs"
)

// Issue 7 acceptance 2: escape and abuse attempts by a non-root user
// (porto-alice), each refused with a clear error naming its EError, with
// nothing changed on the host, and the daemon still answering afterwards.
// TestSecurityDBusHostile adds raw D-Bus and Varlink hostility: huge
// messages, thousands of keys and names in one Get, deep and odd names.
//
// A refusal that does not happen is a security hole: the test fails and
// names it.

// secFile is a host file's identity and content, to prove it untouched.
type secFile struct {
	path   string
	exists bool
	sum    [32]byte
	mode   os.FileMode
	uid    uint32
	gid    uint32
	ino    uint64
	mtime  int64
	nlink  uint64
}

func secSnap(t *testing.T, path string) secFile {
	t.Helper()
	f := secFile{path: path}
	var st syscall.Stat_t
	if err := syscall.Lstat(path, &st); err != nil {
		return f
	}
	f.exists = true
	f.mode = os.FileMode(st.Mode)
	f.uid, f.gid, f.ino, f.nlink = st.Uid, st.Gid, st.Ino, uint64(st.Nlink)
	f.mtime = st.Mtim.Nano()
	if st.Mode&syscall.S_IFMT == syscall.S_IFREG {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		f.sum = sha256.Sum256(data)
	}
	return f
}

// untouched fails t if the file changed since the snapshot.
func (f secFile) untouched(t *testing.T, what string) {
	t.Helper()
	now := secSnap(t, f.path)
	now.path = f.path
	if now != f {
		t.Errorf("SECURITY: %s: host file %s changed: before %+v, after %+v", what, f.path, f, now)
	}
}

// secT carries what every attempt needs.
type secT struct {
	e     *Env
	alice *User
	bob   *User
	conn  *dbus.Conn
	probe string // root's container whose state must keep answering
}

// alive checks the daemon survived: the master runs and a Get of a state
// answers within a second.
func (s *secT) alive(t *testing.T) {
	t.Helper()
	if !s.e.PortodAlive() {
		t.Fatalf("portod died\n%s", s.e.LogTail())
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	start := time.Now()
	var v string
	err := s.conn.Object(busName, mgrPath).CallWithContext(ctx, mgrIface+".GetProperty", 0, s.probe, "state").Store(&v)
	if err != nil || v == "" {
		t.Fatalf("daemon not responsive: GetProperty %s state after %v: %q %v\n%s", s.probe, time.Since(start), v, err, s.e.LogTail())
	}
}

// refuse runs portoctl as u and expects an error naming code (and, when
// msg is not empty, exactly the stderr line msg); then the daemon must
// still answer.
func (s *secT) refuse(t *testing.T, u *User, code, msg string, args ...string) Result {
	t.Helper()
	var r Result
	if msg != "" {
		r = s.e.Fail(t, u, msg, args...)
	} else {
		r = s.e.FailWith(t, u, code, args...)
	}
	if r.Code == 0 {
		t.Errorf("SECURITY HOLE: as %s, portoctl %s was not refused", u.Name, shellJoin(args))
	}
	s.alive(t)
	return r
}

// startFails expects "portoctl start name" to fail with a message
// containing every string of want, and the container to stay stopped.
func (s *secT) startFails(t *testing.T, name string, want ...string) Result {
	t.Helper()
	r := s.e.Ctl(s.alice, "start", name)
	if r.Code == 0 {
		t.Errorf("SECURITY HOLE: as porto-alice, start %s succeeded (props: %s)", name, s.props(name))
	} else {
		if !strings.HasPrefix(r.Stderr, "Can't start container: ") {
			t.Errorf("start %s: unclear error %s", name, r)
		}
		for _, w := range want {
			if !strings.Contains(strings.ToLower(r.Stderr), strings.ToLower(w)) {
				t.Errorf("start %s: error %q does not mention %q", name, strings.TrimSpace(r.Stderr), w)
			}
		}
		if st := s.e.Out(t, s.alice, "get", name, "state"); st != "stopped" {
			t.Errorf("after the failed start, %s is %s", name, st)
		}
	}
	t.Logf("start %s: %s", name, strings.TrimSpace(r.Stderr))
	s.alive(t)
	return r
}

func (s *secT) props(name string) string {
	var out []string
	for _, k := range []string{"user", "root", "root_readonly", "cwd", "bind", "stdin_path", "stdout_path", "stderr_path"} {
		r := s.e.Ctl(s.alice, "get", name, k)
		out = append(out, k+"="+strings.TrimSpace(r.Stdout))
	}
	return strings.Join(out, " ")
}

// mkdirAs makes dir owned by u with mode.
func secMkdir(t *testing.T, dir string, u *User, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(dir, u.UID, u.GID); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, mode); err != nil {
		t.Fatal(err)
	}
}

func secWrite(t *testing.T, path, data string, u *User, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(path, u.UID, u.GID); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

func TestSecurityNonRoot(t *testing.T) {
	e := NewEnv(t)
	a, b := alice(t), bob(t)
	conn, err := dbus.Connect(e.BusAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	s := &secT{e: e, alice: a, bob: b, conn: conn, probe: "sec-probe"}
	e.OK(t, rootUser, "create", s.probe)

	tag := randHex(4)
	// Host files she must not read or write, and a directory of hers.
	secret := "/etc/porto-itest-secret-" + tag
	secWrite(t, secret, "top secret\n", rootUser, 0o600)
	t.Cleanup(func() { os.Remove(secret) })
	secretSnap := secSnap(t, secret)
	shadowSnap := secSnap(t, "/etc/shadow")
	mine := filepath.Join(e.Dir, "alice")
	secMkdir(t, mine, a, 0o755)
	rootOnly := filepath.Join(e.Dir, "rootonly") // 0700 root, with std-named files
	secMkdir(t, rootOnly, rootUser, 0o700)
	rootRO := filepath.Join(e.Dir, "rootro") // 0755 root: she may read, not write
	secMkdir(t, rootRO, rootUser, 0o755)
	for _, d := range []string{rootOnly, rootRO} {
		secWrite(t, filepath.Join(d, "stdout"), "keep stdout\n", rootUser, 0o644)
		secWrite(t, filepath.Join(d, "stderr"), "keep stderr\n", rootUser, 0o644)
	}
	stdSnaps := []secFile{
		secSnap(t, filepath.Join(rootOnly, "stdout")), secSnap(t, filepath.Join(rootOnly, "stderr")),
		secSnap(t, filepath.Join(rootRO, "stdout")), secSnap(t, filepath.Join(rootRO, "stderr")),
	}
	newInRoot := "/root/porto-itest-new-" + tag
	t.Cleanup(func() { os.Remove(newInRoot) })

	// Others' containers: root's and bob's, running and stopped.
	e.OK(t, rootUser, "run", "sec-root", "command=sleep 1000")
	e.OK(t, b, "run", "sec-bob", "command=sleep 1000")
	e.OK(t, b, "create", "sec-bob-stopped")
	e.OK(t, b, "create", "sec-bob-meta")
	rootPid := e.Out(t, rootUser, "get", "sec-root", "root_pid")
	bobPid := e.Out(t, b, "get", "sec-bob", "root_pid")
	others := func(t *testing.T) {
		t.Helper()
		for _, c := range []struct {
			u                *User
			name, state, pid string
		}{
			{rootUser, "sec-root", "running", rootPid}, {b, "sec-bob", "running", bobPid},
			{b, "sec-bob-stopped", "stopped", ""}, {b, "sec-bob-meta", "stopped", ""},
		} {
			if st := e.Out(t, c.u, "get", c.name, "state"); st != c.state {
				t.Errorf("SECURITY: %s's %s is %s, want %s", c.u.Name, c.name, st, c.state)
			}
			if c.pid != "" {
				if pid := e.Out(t, c.u, "get", c.name, "root_pid"); pid != c.pid {
					t.Errorf("SECURITY: %s's %s root_pid %s, was %s", c.u.Name, c.name, pid, c.pid)
				}
			}
			if o := e.Out(t, c.u, "get", c.name, "owner_user"); o != c.u.Name {
				t.Errorf("SECURITY: %s owner_user = %s", c.name, o)
			}
		}
		if ls := e.Out(t, rootUser, "list"); strings.Contains(ls, "sec-bob-meta/") {
			t.Errorf("SECURITY: a child of bob's container exists: %s", ls)
		}
	}

	const permSet = "Can't set property: Permission (Only root can change this property)"
	e.OK(t, a, "create", "mine")

	// 1-9: root-only properties on her own container.
	t.Run("privileged-properties", func(t *testing.T) {
		for _, kv := range [][2]string{
			{"user", "root"}, {"user", "0"}, {"user", "daemon"}, {"user", "porto-bob"}, {"user", strconv.Itoa(b.UID)},
			{"group", "root"}, {"group", "0"}, {"group", "porto-bob"},
			{"capabilities", "SYS_ADMIN"}, {"capabilities", "CHOWN; DAC_OVERRIDE; SETUID"},
			{"allowed_devices", "c 1:3 rwm"}, {"allowed_devices", "b *:* rwm"},
		} {
			s.refuse(t, a, "Permission", permSet, "set", "mine", kv[0], kv[1])
		}
		e.Expect(t, a, a.Name, "get", "mine", "user")
		e.Expect(t, a, a.Group, "get", "mine", "group")
		if r := e.Ctl(a, "get", "mine", "capabilities"); strings.Contains(r.Stdout, "SYS_ADMIN") {
			t.Errorf("SECURITY: capabilities were set: %s", r)
		}
		// Her own user and group are fine.
		e.OK(t, a, "set", "mine", "user", a.Name)
		e.OK(t, a, "set", "mine", "group", a.Group)
		// Read-only data cannot be set by anyone: ownership included.
		for _, kv := range [][2]string{{"owner_user", "root"}, {"owner_group", "root"}, {"state", "running"}, {"root_pid", "1"}} {
			s.refuse(t, a, "InvalidProperty", "", "set", "mine", kv[0], kv[1])
		}
		e.Expect(t, a, a.Name, "get", "mine", "owner_user")
	})

	// 10-17: root's and bob's containers; the root container.
	t.Run("others-containers", func(t *testing.T) {
		for _, ct := range []string{"sec-root", "sec-bob"} {
			s.refuse(t, a, "Permission", "Can't destroy container: Permission (Permission error)", "destroy", ct)
			s.refuse(t, a, "Permission", "Can't kill container: Permission (Permission error)", "kill", ct, "9")
			s.refuse(t, a, "Permission", "Can't kill container: Permission (Permission error)", "kill", ct)
			s.refuse(t, a, "Permission", "Can't stop container: Permission (Permission error)", "stop", ct)
			s.refuse(t, a, "Permission", "Can't pause container: Permission (Permission error)", "pause", ct)
			s.refuse(t, a, "Permission", "Can't set property: Permission (Permission error)", "set", ct, "private", "mine now")
			s.refuse(t, a, "Permission", "", "create", ct+"/child")
		}
		s.refuse(t, a, "Permission", "Can't set property: Permission (Permission error)", "set", "sec-bob-stopped", "command", "touch "+mine+"/pwned")
		s.refuse(t, a, "Permission", "Can't start container: Permission (Permission error)", "start", "sec-bob-stopped")
		s.refuse(t, a, "Permission", "Can't destroy container: Permission (Permission error)", "destroy", "sec-bob-stopped")
		s.refuse(t, a, "Permission", "Can't create container: Permission (Permission error)", "create", "sec-bob-meta/child")
		s.refuse(t, a, "ContainerDoesNotExist", "", "create", "sec-bob-meta/child/grandchild")
		// The root container "/".
		s.refuse(t, a, "Permission", "", "set", "/", "private", "x")
		s.refuse(t, a, "Permission", "", "set", "/", "command", "id")
		s.refuse(t, a, "Permission", "", "destroy", "/")
		s.refuse(t, a, "Permission", "", "kill", "/", "9")
		s.refuse(t, a, "Permission", "", "stop", "/")
		s.refuse(t, a, "Permission", "", "start", "/")
		// Bob's child of root's container: bob may not either.
		s.refuse(t, b, "Permission", "Can't create container: Permission (Permission error)", "create", "sec-root/bobs")
		others(t)
		if _, err := os.Stat(mine + "/pwned"); err == nil {
			t.Errorf("SECURITY: bob's container ran her command")
		}
		// Reading others' containers is allowed.
		e.Expect(t, a, "running", "get", "sec-root", "state")
	})

	// 18-22: std streams she cannot read or write.
	t.Run("std-paths", func(t *testing.T) {
		cases := []struct {
			name, key, value string
			want             []string
		}{
			{"out-secret", "stdout_path", secret, []string{"Permission denied", secret}},
			{"err-secret", "stderr_path", secret, []string{"Permission denied", secret}},
			{"out-new-in-root", "stdout_path", newInRoot, []string{"Permission denied", newInRoot}},
			{"in-shadow", "stdin_path", "/etc/shadow", []string{"Permission denied", "/etc/shadow"}},
			{"in-secret", "stdin_path", secret, []string{"Permission denied", secret}},
		}
		for _, c := range cases {
			e.OK(t, a, "create", c.name)
			e.OK(t, a, "set", c.name, "command", "cat")
			e.OK(t, a, "set", c.name, c.key, c.value)
			s.startFails(t, c.name, c.want...)
			e.OK(t, a, "destroy", c.name)
		}
		secretSnap.untouched(t, "stdout/stderr/stdin paths")
		shadowSnap.untouched(t, "stdin_path=/etc/shadow")
		if _, err := os.Lstat(newInRoot); err == nil {
			t.Errorf("SECURITY HOLE: %s was created through stdout_path", newInRoot)
		}
	})

	// 23-26: root directories she cannot use.
	t.Run("root-dirs", func(t *testing.T) {
		cases := []struct {
			name string
			sets []string
			want []string
		}{
			{"root-root", []string{"root", "/root"}, []string{"Permission denied", "/root"}},
			{"root-rootonly", []string{"root", rootOnly}, []string{"Permission denied"}},
			{"root-rootro", []string{"root", rootRO}, []string{"Permission denied"}},
			{"root-rootro-ro", []string{"root", rootRO, "root_readonly", "true"}, []string{"Permission denied"}},
			{"root-etc", []string{"root", "/etc"}, []string{"Permission denied"}},
		}
		for _, c := range cases {
			e.OK(t, a, "create", c.name)
			e.OK(t, a, "set", c.name, "command", "true")
			for i := 0; i < len(c.sets); i += 2 {
				e.OK(t, a, "set", c.name, c.sets[i], c.sets[i+1])
			}
			r := s.startFails(t, c.name, c.want...)
			if r.Code == 0 {
				e.WaitState(t, a, c.name, "dead")
			}
			e.OK(t, a, "destroy", c.name)
			for _, f := range stdSnaps {
				f.untouched(t, c.name)
			}
			for _, f := range []string{"/etc/stdout", "/etc/stderr", "/root/stdout", "/root/stderr"} {
				if _, err := os.Lstat(f); err == nil {
					t.Errorf("SECURITY HOLE: %s: %s exists on the host", c.name, f)
				}
			}
		}
	})

	// 27-31: bind sources she cannot read (or write, for rw).
	t.Run("bind-sources", func(t *testing.T) {
		cases := []struct{ bind, path string }{
			{"/root /mnt", "/root"},
			{"/etc/shadow /mnt/x ro", "/etc/shadow"},
			{secret + " /mnt/x ro", secret},
			{"/etc/hostname /mnt/x rw", "/etc/hostname"},
			{rootOnly + " /mnt ro", rootOnly},
		}
		for i, c := range cases {
			n := fmt.Sprintf("bind-src-%d", i)
			e.OK(t, a, "create", n)
			e.OK(t, a, "set", n, "command", "true")
			e.OK(t, a, "set", n, "bind", c.bind)
			s.startFails(t, n, "Permission denied", c.path)
			e.OK(t, a, "destroy", n)
		}
		secretSnap.untouched(t, "bind")
		shadowSnap.untouched(t, "bind")
	})

	// 32: a bind of her own files over the host's configuration, with the
	// host's root: setuid programs must not turn that into root.
	t.Run("bind-over-host-config", func(t *testing.T) {
		pam := filepath.Join(mine, "pam.d")
		secMkdir(t, pam, a, 0o755)
		secWrite(t, filepath.Join(pam, "su"), "auth sufficient pam_permit.so\naccount sufficient pam_permit.so\nsession optional pam_permit.so\n", a, 0o644)
		marker := "/etc/porto-itest-escaped-" + tag
		t.Cleanup(func() { os.Remove(marker) })
		e.OK(t, a, "create", "suid")
		e.OK(t, a, "set", "suid", "bind", pam+" /etc/pam.d ro")
		e.OK(t, a, "set", "suid", "command", "su -c 'id -u; touch "+marker+"' root")
		r := e.Ctl(a, "start", "suid")
		if r.Code == 0 {
			e.WaitState(t, a, "suid", "dead")
			out := e.Out(t, a, "get", "suid", "stdout")
			t.Logf("su in her container: stdout %q, stderr %q", out, e.Ctl(a, "get", "suid", "stderr").Stdout)
			if strings.TrimSpace(out) == "0" {
				t.Errorf("SECURITY HOLE: porto-alice became uid 0 through su with her own /etc/pam.d bound over the host's (stdout %q)", out)
			}
		} else {
			t.Logf("start refused: %s", strings.TrimSpace(r.Stderr))
		}
		if _, err := os.Lstat(marker); err == nil {
			t.Errorf("SECURITY HOLE: %s was created by root from porto-alice's container", marker)
		}
		e.OK(t, a, "destroy", "suid")
		s.alive(t)
	})

	// 33-36: bind targets that try to leave her root.
	t.Run("bind-target-escape", func(t *testing.T) {
		root := filepath.Join(mine, "root")
		if err := rootfs.Build(root, "sh", "cat", "sleep"); err != nil {
			t.Skipf("cannot build a root: %v", err)
		}
		for _, d := range []string{"etc", "mnt"} {
			os.MkdirAll(filepath.Join(root, d), 0o755)
		}
		secWrite(t, filepath.Join(mine, "payload"), "alice was here\n", a, 0o644)
		src := filepath.Join(mine, "payload")
		os.Symlink("/etc", filepath.Join(root, "evil"))
		os.Symlink("../../../../../../../../etc", filepath.Join(root, "up"))
		os.Symlink("/etc/shadow", filepath.Join(root, "shadowlink"))
		os.Symlink("/proc/self/root/etc", filepath.Join(root, "magic"))
		if r := e.Sh(rootUser, "chown -hR "+a.Name+":"+a.Group+" "+root); r.Code != 0 {
			t.Fatal(r)
		}
		targets := []string{
			"/evil/porto-itest-esc1-" + tag,
			"/../../../../etc/porto-itest-esc2-" + tag,
			"/up/porto-itest-esc3-" + tag,
			"/shadowlink",
			"/mnt/../../../etc/porto-itest-esc4-" + tag,
			"/magic/porto-itest-esc5-" + tag,
		}
		hostMounts := mountPoints()
		for i, dst := range targets {
			n := fmt.Sprintf("esc-%d", i)
			e.OK(t, a, "create", n)
			e.OK(t, a, "set", n, "root", root)
			e.OK(t, a, "set", n, "bind_dns", "false")
			e.OK(t, a, "set", n, "bind", src+" "+dst+" ro")
			e.OK(t, a, "set", n, "command", "sleep 1000")
			r := e.Ctl(a, "start", n)
			t.Logf("bind %s: start: %s", dst, strings.TrimSpace(r.Stderr+r.Stdout))
			s.alive(t)
			// Whether refused or mounted inside her root, the host is as it was.
			for m := range mountPoints() {
				if !hostMounts[m] && !strings.HasPrefix(m, e.Dir) {
					t.Errorf("SECURITY HOLE: bind %s: new mount on the host: %s", dst, m)
				}
			}
			for _, m := range e.NewMounts() {
				if strings.HasPrefix(m, root) {
					t.Errorf("SECURITY HOLE: bind %s: mount in her root visible on the host: %s", dst, m)
				}
			}
			if r.Code == 0 {
				// Redirected into her root: the mount point was made there.
				in := map[string]string{"/shadowlink": "etc/shadow", "/magic/porto-itest-esc5-" + tag: ""}
				rel, ok := in[dst]
				if !ok {
					rel = "etc/" + filepath.Base(dst)
				}
				if rel != "" {
					if _, err := os.Lstat(filepath.Join(root, rel)); err != nil {
						t.Errorf("bind %s: no mount point %s inside her root: %v", dst, rel, err)
					}
				}
			}
			e.OK(t, a, "destroy", n)
		}
		matches, _ := filepath.Glob("/etc/porto-itest-esc*")
		for _, m := range matches {
			t.Errorf("SECURITY HOLE: %s created on the host", m)
			os.Remove(m)
		}
		shadowSnap.untouched(t, "bind over a symlink to /etc/shadow")
	})

	// 37: a working directory she cannot enter.
	t.Run("cwd", func(t *testing.T) {
		for i, cwd := range []string{"/root", rootOnly} {
			n := fmt.Sprintf("cwd-%d", i)
			e.OK(t, a, "create", n)
			e.OK(t, a, "set", n, "command", "true")
			e.OK(t, a, "set", n, "cwd", cwd)
			s.startFails(t, n, "Permission denied", cwd)
			e.OK(t, a, "destroy", n)
		}
	})

	// 38-41: after the start, she swaps the stdout file for something else;
	// get stdout must not read it through porto.
	t.Run("stdout-swap", func(t *testing.T) {
		out := filepath.Join(mine, "out")
		e.OK(t, a, "run", "swap", "command=echo hi", "stdout_path="+out)
		e.WaitState(t, a, "swap", "dead")
		e.Expect(t, a, "hi", "get", "swap", "stdout")
		check := func(what string) {
			t.Helper()
			r := e.Ctl(a, "get", "swap", "stdout")
			if strings.Contains(r.Stdout, "secret") || strings.Contains(r.Stdout, "root:") {
				t.Errorf("SECURITY HOLE: %s: get stdout leaked %q", what, r.Stdout)
			} else if r.Code == 0 && r.Stdout != "" && r.Stdout != "\n" {
				t.Errorf("%s: get stdout returned %q", what, r.Stdout)
			} else if r.Code == 0 {
				t.Logf("%s: get stdout: empty", what)
			} else if !strings.Contains(r.Stderr, "Can't get") {
				t.Errorf("%s: unclear error %s", what, r)
			} else {
				t.Logf("%s: %s", what, strings.TrimSpace(r.Stderr))
			}
			s.alive(t)
		}
		// A symlink to root's file.
		if r := e.Sh(a, "rm -f "+out+" && ln -s "+secret+" "+out); r.Code != 0 {
			t.Fatal(r)
		}
		check("symlink to " + secret)
		if r := e.Sh(a, "rm -f "+out+" && ln -s /etc/shadow "+out); r.Code != 0 {
			t.Fatal(r)
		}
		check("symlink to /etc/shadow")
		// A hard link: the kernel's protected_hardlinks normally refuses it.
		if r := e.Sh(a, "rm -f "+out+" && ln "+secret+" "+out); r.Code == 0 {
			check("hard link to " + secret)
		} else {
			t.Logf("hard link to %s refused by the kernel: %s", secret, strings.TrimSpace(r.Stderr))
		}
		// A different file of hers: not the file the container was given
		// (refused when porto recorded the file's inode; reading her own
		// file would leak nothing anyway).
		if r := e.Sh(a, "rm -f "+out+" && echo forged > "+out); r.Code != 0 {
			t.Fatal(r)
		}
		if r := e.Ctl(a, "get", "swap", "stdout"); r.Code == 0 {
			t.Logf("NOTE: get stdout of a replaced file of hers was not refused (%q): porto recorded no inode for a command that exited at once", r.Stdout)
		} else {
			t.Logf("replaced file: %s", strings.TrimSpace(r.Stderr))
		}
		s.alive(t)
		// A FIFO would block a reader: refused at once.
		if r := e.Sh(a, "rm -f "+out+" && mkfifo "+out); r.Code != 0 {
			t.Fatal(r)
		}
		start := time.Now()
		check("fifo")
		if d := time.Since(start); d > 3*time.Second {
			t.Errorf("get stdout of a FIFO took %v", d)
		}
		// A directory component swapped for a symlink to /etc.
		dir := filepath.Join(mine, "d")
		secMkdir(t, dir, a, 0o755)
		name := filepath.Base(secret)
		e.OK(t, a, "run", "swap2", "command=echo hi", "stdout_path="+filepath.Join(dir, name))
		e.WaitState(t, a, "swap2", "dead")
		if r := e.Sh(a, "rm -rf "+dir+" && ln -s /etc "+dir); r.Code != 0 {
			t.Fatal(r)
		}
		r := e.Ctl(a, "get", "swap2", "stdout")
		if strings.Contains(r.Stdout, "secret") {
			t.Errorf("SECURITY HOLE: get stdout through a swapped directory leaked %q", r.Stdout)
		}
		t.Logf("swapped directory: %s", r)
		// Porto's own stdout file, in place: swapped for a symlink.
		e.OK(t, a, "run", "swap3", "command=echo hi")
		e.WaitState(t, a, "swap3", "dead")
		own := e.Out(t, a, "get", "swap3", "stdout_path")
		if r := e.Sh(a, "rm -f "+own+" && ln -s "+secret+" "+own); r.Code != 0 {
			t.Logf("cannot replace porto's own %s: %s", own, strings.TrimSpace(r.Stderr))
		} else {
			r := e.Ctl(a, "get", "swap3", "stdout")
			if strings.Contains(r.Stdout, "secret") {
				t.Errorf("SECURITY HOLE: get stdout of porto's swapped file leaked %q", r.Stdout)
			}
			t.Logf("porto's own file swapped: %s", r)
		}
		for _, n := range []string{"swap", "swap2", "swap3"} {
			e.OK(t, a, "destroy", n)
		}
		secretSnap.untouched(t, "stdout swap")
		s.alive(t)
	})

	// 42-45: huge and odd names and values.
	t.Run("huge-and-odd-input", func(t *testing.T) {
		big := strings.Repeat("x", 100<<10) // one argv string is at most 128K
		deep := strings.Repeat("a/", 20000) + "a"
		for _, n := range []string{big, deep, "..", ".", "a//b", "a/./b", "a/../mine", "mine/", "/mine",
			"ы", "mine\u202e", "a\nb", "a\tb", " ", "*", "a b", "$(id)", "`id`"} {
			s.refuse(t, a, "InvalidValue", "", "create", n)
		}
		for _, kv := range [][2]string{
			{"private", big}, {"command", big}, {"env", big}, {"bind", big}, {"cwd", "/" + big},
			{"stdout_path", "/" + big}, {"hostname", big}, {"ulimit", big}, {"allowed_devices", big},
		} {
			r := e.Ctl(a, "set", "mine", kv[0], kv[1])
			if r.Code == 0 {
				t.Errorf("set %s to %d bytes succeeded", kv[0], len(kv[1]))
			} else if !strings.Contains(r.Stderr, ": InvalidValue (") && !strings.Contains(r.Stderr, ": Permission (") {
				t.Errorf("set %s to %d bytes: %s", kv[0], len(kv[1]), r)
			}
			s.alive(t)
		}
		// Megabytes and 20000 levels go over D-Bus directly.
		mgr := conn.Object(busName, mgrPath)
		meg := strings.Repeat("m", 1<<20)
		for _, c := range []struct {
			method string
			args   []any
		}{
			{"Create", []any{meg}},
			{"Create", []any{deep}},
			{"Create", []any{"mine/" + deep}},
			{"SetProperty", []any{"mine", "private", meg}},
			{"SetProperty", []any{"mine", "command", meg}},
			{"SetProperty", []any{"mine", "env", meg}},
			{"SetProperty", []any{"mine", meg, "x"}},
			{"GetProperty", []any{meg, "state"}},
			{"GetProperty", []any{deep, "state"}},
			{"Destroy", []any{deep}},
			{"Kill", []any{deep, int32(9)}},
		} {
			err := mgr.Call(mgrIface+"."+c.method, 0, c.args...).Err
			var de dbus.Error
			if err == nil {
				t.Errorf("%s%s succeeded", c.method, short(c.args))
			} else if !errors.As(err, &de) || !strings.HasPrefix(de.Name, "org.porto.Error.") {
				t.Errorf("%s%s: %v, want an org.porto.Error", c.method, short(c.args), err)
			}
			s.alive(t)
		}
		if r := e.Ctl(a, "get", "mine", "private"); strings.TrimSpace(r.Stdout) != "" {
			t.Errorf("private was set: %.40q", r.Stdout)
		}
		if names, _ := e.List(); len(names) != 6 { // probe, sec-root, 3 of bob's, mine
			t.Errorf("containers after the bad names: %q", names)
		}
	})

	// 46-47: signals.
	t.Run("signals", func(t *testing.T) {
		e.OK(t, a, "run", "sig", "command=sleep 1000")
		for _, sig := range []string{"0", "65", "99999", "-65", "RTMAX+1", "NOSUCH"} {
			s.refuse(t, a, "InvalidValue", "", "kill", "sig", sig)
		}
		for _, sig := range []string{"0", "65", "2147483647"} {
			r := e.Busctl(a, "call", busName, mgrPath, mgrIface, "Kill", "si", "sig", sig)
			if r.Code == 0 || !strings.Contains(r.Stderr, "invalid signal") {
				t.Errorf("as porto-alice: Kill(sig, %s) over D-Bus: %s", sig, r)
			}
			s.alive(t)
		}
		// Negative numbers (busctl would take them for options).
		for _, sig := range []int32{-1, -9, -2147483648} {
			err := conn.Object(busName, mgrPath).Call(mgrIface+".Kill", 0, "sig", sig).Err
			if !isDBusError(err, "org.porto.Error.InvalidValue") {
				t.Errorf("Kill(sig, %d) over D-Bus: %v, want InvalidValue", sig, err)
			}
			s.alive(t)
		}
		e.Expect(t, a, "running", "get", "sig", "state")
		e.OK(t, a, "destroy", "sig")
	})

	// 48-53: from inside her containers, as herself: the host's files,
	// root's processes, the host's hostname and kernel settings.
	t.Run("inside-container", func(t *testing.T) {
		host, _ := os.Hostname()
		marker := "/etc/porto-itest-inside-" + tag
		t.Cleanup(func() { os.Remove(marker) })
		script := strings.Join([]string{
			"cat /etc/shadow && echo LEAK-shadow",
			"cat " + secret + " && echo LEAK-secret",
			"kill -9 " + rootPid + " && echo KILLED-root",
			"kill -9 " + bobPid + " && echo KILLED-bob",
			"hostname pwned && echo HOSTNAME-set",
			"echo 1 > /proc/sys/kernel/sysrq && echo SYSCTL-set",
			"touch " + marker + " && echo ETC-written",
			"echo $$ > /sys/fs/cgroup/freezer/cgroup.procs && echo CGROUP-escaped",
			"true",
		}, "; ")
		e.OK(t, a, "run", "inside", "isolate=false", "command=bash -c '"+script+"'")
		e.WaitState(t, a, "inside", "dead")
		out := e.Out(t, a, "get", "inside", "stdout")
		for _, bad := range []string{"LEAK", "KILLED", "HOSTNAME", "SYSCTL", "ETC-written", "CGROUP", "secret", "root:"} {
			if strings.Contains(out, bad) {
				t.Errorf("SECURITY HOLE: inside her container: %q in %q", bad, out)
			}
		}
		t.Logf("inside: stderr %q", e.Out(t, a, "get", "inside", "stderr"))
		// A hostname in a child that joins her parent's namespaces, and with
		// isolate=false: never the host's.
		e.OK(t, a, "run", "hp", "command=sleep 1000")
		e.OK(t, a, "run", "hp/c", "isolate=false", "hostname=pwned-child", "command=hostname")
		e.OK(t, a, "run", "hq", "isolate=false", "hostname=pwned", "command=hostname")
		e.WaitState(t, a, "hq", "dead")
		e.WaitState(t, a, "hp/c", "dead")
		if h, _ := os.Hostname(); h != host {
			t.Errorf("SECURITY HOLE: the host's hostname changed from %q to %q", host, h)
			syscall.Sethostname([]byte(host))
		}
		if _, err := os.Lstat(marker); err == nil {
			t.Errorf("SECURITY HOLE: %s written from her container", marker)
		}
		for _, n := range []string{"inside", "hp", "hq"} {
			e.OK(t, a, "destroy", n)
		}
		s.alive(t)
	})

	// 54: the same refusals over the Varlink socket (SO_PEERCRED identity).
	t.Run("over-varlink", func(t *testing.T) {
		if _, err := os.Stat(e.VarlinkSocket()); err != nil {
			t.Skipf("no varlink socket: %v", err)
		}
		e.Varlink = true
		defer func() { e.Varlink = false }()
		s.refuse(t, a, "Permission", permSet, "set", "mine", "user", "root")
		s.refuse(t, a, "Permission", permSet, "set", "mine", "capabilities", "SYS_ADMIN")
		s.refuse(t, a, "Permission", "Can't destroy container: Permission (Permission error)", "destroy", "sec-root")
		s.refuse(t, a, "Permission", "Can't kill container: Permission (Permission error)", "kill", "sec-bob", "9")
		s.refuse(t, a, "Permission", "Can't create container: Permission (Permission error)", "create", "sec-bob-meta/child")
		s.refuse(t, a, "Permission", "", "set", "/", "private", "x")
		s.refuse(t, a, "InvalidValue", "", "kill", "mine", "0")
		e.OK(t, a, "create", "vl")
		e.OK(t, a, "set", "vl", "command", "true")
		e.OK(t, a, "set", "vl", "stdout_path", secret)
		s.startFails(t, "vl", "Permission denied", secret)
		e.OK(t, a, "destroy", "vl")
		secretSnap.untouched(t, "over varlink")
	})

	others(t)
	e.OK(t, a, "destroy", "mine")
	secretSnap.untouched(t, "the whole test")
}

// Issue 7's quota: max_containers_per_user.
func TestSecurityQuota(t *testing.T) {
	e := NewEnvWith(t, []string{"max_containers_per_user = 5"})
	a, b := alice(t), bob(t)
	conn, err := dbus.Connect(e.BusAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	s := &secT{e: e, alice: a, bob: b, conn: conn, probe: "q-probe"}
	e.OK(t, rootUser, "create", s.probe)
	e.OK(t, a, "create", "q")
	for i := 1; i < 5; i++ {
		e.OK(t, a, "create", fmt.Sprintf("q/%d", i)) // children count too
	}
	r := s.refuse(t, a, "ResourceNotAvailable", "", "create", "q6")
	t.Logf("6th container: %s", strings.TrimSpace(r.Stderr))
	s.refuse(t, a, "ResourceNotAvailable", "", "create", "q/5")
	// Others are not limited by her containers.
	e.OK(t, b, "create", "bq")
	e.OK(t, rootUser, "create", "rq")
	// Nor can she fill bob's quota... or use root's reserve.
	e.OK(t, a, "destroy", "q/4")
	e.OK(t, a, "create", "q6")
	s.refuse(t, a, "ResourceNotAvailable", "", "create", "q7")
	if names, _ := e.List(); len(names) != 8 {
		t.Errorf("containers: %q", names)
	}
}

// The total limit (max_containers): users stop at it, root has a reserve
// of 100 beyond it.
func TestSecurityQuotaTotal(t *testing.T) {
	e := NewEnvWith(t, []string{"max_containers = 4"})
	a, b := alice(t), bob(t)
	conn, err := dbus.Connect(e.BusAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	s := &secT{e: e, alice: a, bob: b, conn: conn, probe: "t-probe"}
	e.OK(t, rootUser, "create", s.probe)
	for i := 0; i < 3; i++ {
		e.OK(t, a, "create", fmt.Sprintf("t%d", i))
	}
	r := s.refuse(t, a, "ResourceNotAvailable", "", "create", "t3")
	t.Logf("over the total: %s", strings.TrimSpace(r.Stderr))
	s.refuse(t, b, "ResourceNotAvailable", "", "create", "b0")
	s.refuse(t, a, "ResourceNotAvailable", "", "create", "t0/child")
	// Root's reserve.
	for i := 0; i < 5; i++ {
		e.OK(t, rootUser, "create", fmt.Sprintf("r%d", i))
	}
	s.refuse(t, a, "ResourceNotAvailable", "", "create", "t4")
	if names, _ := e.List(); len(names) != 9 {
		t.Errorf("containers: %q", names)
	}
}

// Raw D-Bus and Varlink hostility: the daemon answers every call with an
// error and keeps answering quickly.
func TestSecurityDBusHostile(t *testing.T) {
	e := NewEnv(t)
	a := alice(t)
	conn, err := dbus.Connect(e.BusAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	s := &secT{e: e, alice: a, conn: conn, probe: "h-probe"}
	e.OK(t, rootUser, "create", s.probe)
	mgr := conn.Object(busName, mgrPath)
	s.alive(t)

	// Thousands of keys and names in one Get.
	t.Run("get-many", func(t *testing.T) {
		keys := make([]string, 100000)
		for i := range keys {
			keys[i] = fmt.Sprintf("no_such_property_%d_%s", i, strings.Repeat("k", 20))
		}
		var cells []struct{ C, K, V, E, M string }
		start := time.Now()
		err := mgr.Call(mgrIface+".Get", 0, []string{s.probe}, keys).Store(&cells)
		t.Logf("Get with %d bad keys: %d cells, %v, in %v", len(keys), len(cells), err, time.Since(start))
		if err == nil && len(cells) > 0 && cells[0].E != "org.porto.Error.InvalidProperty" {
			t.Errorf("first cell %+v", cells[0])
		}
		s.alive(t)
		names := make([]string, 20000)
		for i := range names {
			names[i] = fmt.Sprintf("nosuch-%d", i)
		}
		cells = nil
		start = time.Now()
		err = mgr.Call(mgrIface+".Get", 0, names, []string{"state", "stdout"}).Store(&cells)
		t.Logf("Get of %d missing containers: %d cells, %v, in %v", len(names), len(cells), err, time.Since(start))
		if err == nil && len(cells) > 0 && cells[0].E != "org.porto.Error.ContainerDoesNotExist" {
			t.Errorf("first cell %+v", cells[0])
		}
		s.alive(t)
		// Megabyte keys.
		err = mgr.Call(mgrIface+".Get", 0, []string{s.probe}, []string{strings.Repeat("z", 4<<20)}).Store(&cells)
		t.Logf("Get with a 4 MB key: %v", err)
		s.alive(t)
		// Empty lists.
		err = mgr.Call(mgrIface+".Get", 0, []string{}, []string{}).Store(&cells)
		t.Logf("Get of nothing: %d cells, %v", len(cells), err)
		s.alive(t)
		// Wait on thousands of names.
		var got string
		err = mgr.Call(mgrIface+".Wait", 0, names, int32(0)).Store(&got)
		t.Logf("Wait on %d missing names: %q %v", len(names), got, err)
		s.alive(t)
	})

	// Deep and odd names in every method, and as object paths.
	t.Run("odd-names", func(t *testing.T) {
		deep := strings.Repeat("a/", 20000) + "a"
		odd := []string{deep, strings.Repeat("/", 10000), "..", ".", "a//b", "a/../b", "/", "", "ы", "\u202e", "a\nb",
			"a/" + strings.Repeat("b", 200), strings.Repeat(".", 5000)}
		for _, n := range odd {
			for _, c := range []struct {
				method string
				args   []any
			}{
				{"Create", []any{n}}, {"Destroy", []any{n}}, {"Start", []any{n}}, {"Stop", []any{n, int32(0)}},
				{"Kill", []any{n, int32(9)}}, {"Pause", []any{n}}, {"Resume", []any{n}},
				{"GetProperty", []any{n, "state"}}, {"SetProperty", []any{n, "private", "x"}},
				{"Wait", []any{[]string{n}, int32(0)}},
			} {
				call := mgr.Call(mgrIface+"."+c.method, 0, c.args...)
				if c.method == "Wait" {
					var got string
					if err := call.Store(&got); err == nil && got != "" && n != "/" {
						t.Errorf("Wait(%.20q) = %q", n, got)
					}
				} else if call.Err == nil && !(n == "/" && c.method == "GetProperty") {
					t.Errorf("%s(%.20q) succeeded", c.method, n)
				}
				if !e.PortodAlive() {
					t.Fatalf("portod died after %s(%.20q)\n%s", c.method, n, e.LogTail())
				}
			}
		}
		s.alive(t)
		// Deep and odd object paths under the container tree.
		paths := []string{
			ctPathPfx + strings.Repeat("a/", 5000) + "a",
			ctPathPfx + strings.Repeat("_2f", 3000),
			ctPathPfx + "_2e_2e",
			ctPathPfx + "_ff_fe",
			ctPathPfx + "_00",
			ctPathPfx + strings.Repeat("x", 100000),
		}
		for _, p := range paths {
			obj := conn.Object(busName, dbus.ObjectPath(p))
			var xml string
			err := obj.Call("org.freedesktop.DBus.Introspectable.Introspect", 0).Store(&xml)
			if err == nil && strings.Contains(xml, ctIface) {
				t.Errorf("introspect %.60s: exports a container", p)
			}
			var v dbus.Variant
			if err := obj.Call("org.freedesktop.DBus.Properties.Get", 0, ctIface, "State").Store(&v); err == nil {
				t.Errorf("Properties.Get State of %.60s = %v", p, v)
			}
			if err := obj.Call("org.freedesktop.DBus.Properties.GetAll", 0, strings.Repeat("i", 100000)).Err; err == nil {
				t.Logf("GetAll with a huge interface name on %.60s succeeded", p)
			}
			if !e.PortodAlive() {
				t.Fatalf("portod died after calls on %.60s", p)
			}
		}
		s.alive(t)
		// The same through busctl as porto-alice.
		for _, n := range []string{strings.Repeat("a/", 30000) + "a", strings.Repeat("n", 100000)} {
			r := e.Busctl(a, "call", busName, mgrPath, mgrIface, "Create", "s", n)
			if r.Code == 0 {
				t.Errorf("as porto-alice: Create of a %d-byte name succeeded", len(n))
			}
			r = e.Busctl(a, "call", busName, mgrPath, mgrIface, "Get", "asas", "1", n, "1", "state")
			if r.Code == 0 && !strings.Contains(r.Stdout, "InvalidValue") && !strings.Contains(r.Stdout, "ContainerDoesNotExist") ||
				r.Code != 0 && !strings.Contains(r.Stderr, "too long") && !strings.Contains(r.Stderr, "InvalidValue") {
				t.Errorf("as porto-alice: Get of a %d-byte name: exit %d, %.200q %.200q", len(n), r.Code, r.Stdout, r.Stderr)
			}
			s.alive(t)
		}
		if names, _ := e.List(); len(names) != 1 {
			t.Errorf("containers after odd names: %.200q", names)
		}
	})

	// Floods: hundreds of pending Waits and concurrent megabyte calls from
	// several connections; the daemon keeps answering others at once.
	t.Run("floods", func(t *testing.T) {
		e.OK(t, rootUser, "run", "h-sleep", "command=sleep 1000")
		var conns []*dbus.Conn
		for i := 0; i < 5; i++ {
			c, err := dbus.Connect(e.BusAddr)
			if err != nil {
				t.Fatal(err)
			}
			conns = append(conns, c)
		}
		var calls []*dbus.Call
		for i := 0; i < 500; i++ {
			c := conns[i%len(conns)]
			calls = append(calls, c.Object(busName, mgrPath).Go(mgrIface+".Wait", 0, nil, []string{"h-sleep"}, int32(30000)))
		}
		big := strings.Repeat("b", 1<<20)
		done := make(chan error, 40)
		for i := 0; i < 40; i++ {
			c := conns[i%len(conns)]
			go func() {
				done <- c.Object(busName, mgrPath).Call(mgrIface+".SetProperty", 0, s.probe, "private", big).Err
			}()
		}
		for i := 0; i < 40; i++ {
			if err := <-done; !isDBusError(err, "org.porto.Error.InvalidValue") {
				t.Errorf("megabyte SetProperty: %v", err)
			}
		}
		s.alive(t)
		// Clients that vanish with calls pending.
		for _, c := range conns {
			c.Close()
		}
		for _, c := range calls {
			if c.Err == nil && c.Body != nil {
				t.Errorf("a Wait on a running container answered: %v", c.Body)
			}
		}
		s.alive(t)
		e.Expect(t, rootUser, "running", "get", "h-sleep", "state")
		e.OK(t, rootUser, "destroy", "h-sleep")
	})

	// Raw Varlink: NUL bytes, megabyte strings and deep names in JSON,
	// garbage, and unterminated messages; each is answered or dropped,
	// and the daemon answers the next client.
	t.Run("varlink-raw", func(t *testing.T) {
		sock := e.VarlinkSocket()
		if _, err := os.Stat(sock); err != nil {
			t.Skipf("no varlink socket: %v", err)
		}
		deep := strings.Repeat("a/", 20000) + "a"
		msgs := []string{
			`{"method":"io.porto.Manager.Create","parameters":{"name":"a\u0000b"}}`,
			`{"method":"io.porto.Manager.Create","parameters":{"name":"` + deep + `"}}`,
			`{"method":"io.porto.Manager.Create","parameters":{"name":"..\/x"}}`,
			`{"method":"io.porto.Manager.SetProperty","parameters":{"name":"` + s.probe + `","key":"private","value":"` + strings.Repeat("v", 1<<20) + `"}}`,
			`{"method":"io.porto.Manager.Get","parameters":{"names":["` + s.probe + `"],"keys":["state\u0000stdout"]}}`,
			`{"method":"io.porto.Manager.Create","parameters":{"name":["x"]}}`,
			`{"method":"io.porto.Manager.Create","parameters":{"name":1e999}}`,
			`{"method":"io.porto.Manager.Create","parameters":` + strings.Repeat("[", 100000) + `}`,
			`{"method":"io.porto.Manager.NoSuch"}`,
			`not json at all`,
			"\xff\xfe\xfd",
			`{"method":"io.porto.Manager.Create","parameters":{"name":"\ud800"}}`,
		}
		for _, m := range msgs {
			reply, err := secVarlink(sock, m+"\x00")
			t.Logf("varlink %.60q: %.200s %v", m, reply, err)
			if strings.Contains(reply, `"error"`) == false && err == nil && !strings.Contains(m, "SetProperty") {
				t.Errorf("varlink %.60q: no error in reply %.200s", m, reply)
			}
			s.alive(t)
		}
		// An unterminated megabytes-long message: dropped, not buffered forever.
		reply, err := secVarlink(sock, `{"method":"io.porto.Manager.Create","parameters":{"name":"`+strings.Repeat("u", 32<<20))
		t.Logf("unterminated 32 MB message: %.200s %v", reply, err)
		s.alive(t)
		var priv string
		if err := mgr.Call(mgrIface+".GetProperty", 0, s.probe, "private").Store(&priv); err != nil || len(priv) > 4096 {
			t.Errorf("private of %s: %d bytes, %v", s.probe, len(priv), err)
		}
		if names, _ := e.List(); len(names) != 1 {
			t.Errorf("containers after raw varlink: %.200q", names)
		}
	})
	s.alive(t)
}

// secVarlink sends raw bytes on a new connection to the Varlink socket and
// returns the first reply (up to its NUL), if any within 5 s.
func secVarlink(sock, msg string) (string, error) {
	c, err := net.DialTimeout("unix", sock, 2*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	// Write and read concurrently: a server may answer (and close) before
	// reading everything.
	werr := make(chan error, 1)
	go func() {
		_, err := c.Write([]byte(msg))
		werr <- err
	}()
	r := bufio.NewReader(c)
	reply, rerr := r.ReadBytes(0)
	reply = bytes.TrimSuffix(reply, []byte{0})
	if len(reply) > 0 && !json.Valid(reply) {
		return string(reply), fmt.Errorf("reply is not JSON")
	}
	if rerr != nil && len(reply) == 0 {
		if err := <-werr; err != nil {
			return "", fmt.Errorf("write: %v; read: %v", err, rerr)
		}
		return "", rerr
	}
	return string(reply), nil
}
