package tests

import (
	"fmt"
	"os"
	"os/user"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// The seed's "Basics" section, every transcript, replayed through
// bin/portoctl as root and as porto-alice. Comments quote the seed.

// forEachUser runs one transcript per caller, each with its own cleanup and
// leak check.
func forEachUser(t *testing.T, e *Env, name string, f func(t *testing.T, u *User)) {
	t.Helper()
	for _, u := range users(t) {
		t.Run(name+"/"+u.Name, func(t *testing.T) {
			e.CleanupContainers(t)
			f(t, u)
		})
	}
}

// hostOut runs a command on the host (as u) and returns its stdout.
func hostOut(t *testing.T, e *Env, u *User, argv ...string) string {
	t.Helper()
	r := e.Exec(u, argv...)
	if r.Code != 0 {
		t.Fatalf("host %s", r)
	}
	return strings.TrimSuffix(r.Stdout, "\n")
}

func TestBasics(t *testing.T) { forEachTransport(t, testBasics) }

func testBasics(t *testing.T, e *Env) {

	// Specify arbitrary command to start a container:
	//   $ portoctl run uname command="uname -a"
	//   $ portoctl get uname state
	//   dead
	//   $ portoctl get uname stdout
	//   Linux ya 3.16.4-200.fc20.x86_64 #1 SMP ... GNU/Linux
	//   $ portoctl destroy uname
	forEachUser(t, e, "uname", func(t *testing.T, u *User) {
		e.OK(t, u, "run", "uname", "command=uname -a")
		e.GetStateAfterRun(t, u, "uname")
		e.Expect(t, u, hostOut(t, e, u, "uname", "-a"), "get", "uname", "stdout")
		e.OK(t, u, "destroy", "uname")
		e.FailWith(t, u, "ContainerDoesNotExist", "get", "uname", "state")
	})

	// By default, container is started in isolated PID name space (i.e.
	// process pid is 1 and no host processes are visible):
	//   $ portoctl run ps command="ps aux"
	//   $ portoctl get ps stdout
	//   USER       PID %CPU %MEM    VSZ   RSS TTY      STAT START   TIME COMMAND
	//   stfomic+     1  0.0  0.0  17644  1068 ?        Rs   18:45   0:00 ps aux
	//   $ portoctl destroy ps
	forEachUser(t, e, "ps", func(t *testing.T, u *User) {
		e.OK(t, u, "run", "ps", "command=ps aux")
		e.WaitState(t, u, "ps", "dead")
		out := e.Out(t, u, "get", "ps", "stdout")
		lines := strings.Split(out, "\n")
		if len(lines) != 2 {
			t.Fatalf("ps aux in an isolated container: want the header and one process, got\n%s", out)
		}
		if got, want := strings.Fields(lines[0]), strings.Fields("USER PID %CPU %MEM VSZ RSS TTY STAT START TIME COMMAND"); strings.Join(got, " ") != strings.Join(want, " ") {
			t.Errorf("ps header = %q", lines[0])
		}
		f := strings.Fields(lines[1])
		if len(f) < 12 || f[0] != u.PsName() || f[1] != "1" || strings.Join(f[10:], " ") != "ps aux" {
			t.Errorf("ps line = %q, want %s as pid 1 running \"ps aux\"", lines[1], u.PsName())
		}
		e.OK(t, u, "destroy", "ps")
	})

	// By default, container shares host network:
	//   $ portoctl run ip command="ip link show"
	//   $ portoctl get ip stdout
	//   1: lo: <LOOPBACK,UP,LOWER_UP> mtu 65536 ...
	//   2: em1: ...
	//   $ portoctl destroy ip
	forEachUser(t, e, "ip", func(t *testing.T, u *User) {
		e.OK(t, u, "run", "ip", "command=ip link show")
		e.WaitState(t, u, "ip", "dead")
		got := e.Out(t, u, "get", "ip", "stdout")
		want := hostOut(t, e, u, "ip", "link", "show")
		if linkNames(got) != linkNames(want) {
			t.Errorf("container network differs from the host's:\n got: %s\nwant: %s", got, want)
		}
		e.OK(t, u, "destroy", "ip")
	})

	// By default, container shares host filesystem:
	//   $ portoctl run ls command="ls /"
	//   $ portoctl get ls stdout
	//   bin boot dev etc ...
	//   $ portoctl destroy ls
	forEachUser(t, e, "ls", func(t *testing.T, u *User) {
		e.OK(t, u, "run", "ls", "command=ls /")
		e.WaitState(t, u, "ls", "dead")
		e.Expect(t, u, hostOut(t, e, u, "ls", "/"), "get", "ls", "stdout")
		e.OK(t, u, "destroy", "ls")
	})

	// Container user and group is set to the user and group of calling process:
	//   $ portoctl create id
	//   $ portoctl set id command id
	//   $ portoctl get id user
	//   stfomichev
	//   $ portoctl get id group
	//   stfomichev
	//   $ portoctl start id
	//   $ portoctl get id stdout
	//   uid=1000(stfomichev) gid=1000(stfomichev) groups=1000(stfomichev),1001(porto)
	//   $ portoctl destroy id
	forEachUser(t, e, "id", func(t *testing.T, u *User) {
		e.OK(t, u, "create", "id")
		e.OK(t, u, "set", "id", "command", "id")
		e.Expect(t, u, u.Name, "get", "id", "user")
		e.Expect(t, u, u.Group, "get", "id", "group")
		e.OK(t, u, "start", "id")
		e.WaitState(t, u, "id", "dead")
		e.Expect(t, u, idOf(t, e, u), "get", "id", "stdout")
		e.OK(t, u, "destroy", "id")
	})

	// Only root can start containers with arbitrary user/group:
	//   $ portoctl run id command="id" user="daemon"
	//   Can't set property: Permission (Only root can change this property)
	//   $ sudo portoctl run id command="id" user="daemon" group="daemon"
	//   $ portoctl get id stdout
	//   uid=2(daemon) gid=2(daemon) groups=2(daemon)
	//   $ portoctl destroy id
	//   Can't destroy container: Permission (Permission error)
	//   $ sudo portoctl destroy id
	t.Run("user=daemon", func(t *testing.T) {
		e.CleanupContainers(t)
		a := alice(t)
		e.Fail(t, a, "Can't set property: Permission (Only root can change this property)",
			"run", "id", "command=id", "user=daemon")
		// A run that fails leaves no container behind.
		e.FailWith(t, rootUser, "ContainerDoesNotExist", "get", "id", "state")
		e.Fail(t, a, "Can't set property: Permission (Only root can change this property)",
			"run", "id", "command=id", "group=daemon")
		e.FailWith(t, rootUser, "ContainerDoesNotExist", "get", "id", "state")

		e.OK(t, rootUser, "run", "id", "command=id", "user=daemon", "group=daemon")
		e.WaitState(t, a, "id", "dead")
		e.Expect(t, a, daemonID(t), "get", "id", "stdout")
		e.Fail(t, a, "Can't destroy container: Permission (Permission error)", "destroy", "id")
		e.Expect(t, a, "dead", "get", "id", "state")
		e.OK(t, rootUser, "destroy", "id")
		e.FailWith(t, a, "ContainerDoesNotExist", "get", "id", "state")
	})

	// porto-bob cannot touch porto-alice's containers either (nor she his).
	t.Run("other-user", func(t *testing.T) {
		e.CleanupContainers(t)
		a, b := alice(t), bob(t)
		e.OK(t, a, "run", "alices", "command=sleep 1000")
		e.Expect(t, b, "running", "get", "alices", "state") // others may read
		e.Fail(t, b, "Can't destroy container: Permission (Permission error)", "destroy", "alices")
		e.FailWith(t, b, "Permission", "stop", "alices")
		e.FailWith(t, b, "Permission", "kill", "alices", "9")
		e.FailWith(t, b, "Permission", "pause", "alices")
		e.Expect(t, a, "running", "get", "alices", "state")
		e.OK(t, a, "stop", "alices")
		e.FailWith(t, b, "Permission", "set", "alices", "command", "true")
		e.FailWith(t, b, "Permission", "start", "alices")
		e.OK(t, a, "destroy", "alices")
	})
}

// linkNames reduces "ip link show" output to its interface lines.
func linkNames(out string) string {
	var names []string
	for _, l := range strings.Split(out, "\n") {
		if l != "" && l[0] != ' ' {
			if f := strings.Fields(l); len(f) > 1 {
				names = append(names, f[0]+f[1])
			}
		}
	}
	return strings.Join(names, " ")
}

// daemonID is what "id" prints when run as user daemon, group daemon.
func daemonID(t *testing.T) string {
	t.Helper()
	u, err := user.Lookup("daemon")
	if err != nil {
		t.Fatal(err)
	}
	g, err := user.LookupGroupId(u.Gid)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("uid=%s(daemon) gid=%s(%s) groups=%s(%s)", u.Uid, u.Gid, g.Name, u.Gid, g.Name)
}

// ownerOf returns the uid owning path.
func ownerOf(t *testing.T, path string) int {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return int(fi.Sys().(*syscall.Stat_t).Uid)
}

// idOf is what id(1) prints for u after a login-like initgroups.
func idOf(t *testing.T, e *Env, u *User) string {
	t.Helper()
	return hostOut(t, e, rootUser, "setpriv", "--reuid="+strconv.Itoa(u.UID), "--regid="+strconv.Itoa(u.GID), "--init-groups", "--", "id")
}
