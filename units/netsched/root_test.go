package netsched

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// The root tests never touch the host's devices: each runs in a fresh network
// namespace made on its own locked OS thread, which is never unlocked, so the
// thread, and with it the namespace, dies when the test returns. Commands it
// runs (ip, tc, bash) are forked from that thread and inherit its namespace;
// newNetns checks that before creating anything.

const (
	localIP  = "198.51.100.1"
	remoteIP = "198.51.100.2"
)

func rootOnly(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 || os.Getenv("PORTO_ROOT_TESTS") != "1" {
		t.Skip("needs root and PORTO_ROOT_TESTS=1")
	}
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

type testNet struct {
	s    *Sched
	a, b int // veth ends; a has localIP and a permanent neighbour remoteIP
}

func newNetns(t *testing.T) *testNet {
	t.Helper()
	rootOnly(t)
	runtime.LockOSThread() // never unlocked: the thread exits with the test
	if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
		t.Fatalf("unshare(CLONE_NEWNET): %v", err)
	}
	s, err := Open()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	links, err := s.Links()
	if err != nil {
		t.Fatal(err)
	}
	if len(links) != 1 || !links[0].Loopback {
		t.Fatalf("fresh netns has links %+v, want only lo", links)
	}
	// Children must see the same namespace, or the fixtures below would
	// land on the host.
	if out := run(t, "ip", "-o", "link", "show"); strings.Count(out, "\n") != 1 || !strings.Contains(out, ": lo:") {
		t.Fatalf("ip forked from the test thread is not in the test netns:\n%s", out)
	}
	run(t, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1")
	run(t, "ip", "link", "add", "name", "a", "type", "veth", "peer", "name", "b")
	run(t, "ip", "link", "set", "dev", "a", "up")
	run(t, "ip", "link", "set", "dev", "b", "up")
	run(t, "ip", "addr", "add", localIP+"/24", "dev", "a")
	run(t, "ip", "neigh", "add", remoteIP, "lladdr", "02:00:00:00:00:02", "dev", "a", "nud", "permanent")
	n := &testNet{s: s}
	ia, err := net.InterfaceByName("a")
	if err != nil {
		t.Fatal(err)
	}
	ib, err := net.InterfaceByName("b")
	if err != nil {
		t.Fatal(err)
	}
	n.a, n.b = ia.Index, ib.Index
	return n
}

// sendUDP sends count datagrams from this process (net_cls classid of the
// test process: normally 0, so the default class).
func sendUDP(t *testing.T, count int) {
	t.Helper()
	c, err := net.Dial("udp", remoteIP+":9")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for range count {
		if _, err := c.Write([]byte("x\n")); err != nil {
			t.Fatal(err)
		}
	}
}

func classes(t *testing.T, n *testNet, ifindex int) map[uint16]ClassInfo {
	t.Helper()
	cs, err := n.s.Classes(ifindex)
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

func owned(t *testing.T, n *testNet, ifindex int) bool {
	t.Helper()
	ok, err := n.s.Owned(ifindex)
	if err != nil {
		t.Fatal(err)
	}
	return ok
}

func TestRootLinks(t *testing.T) {
	n := newNetns(t)
	links, err := n.s.Links()
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]Link{}
	for _, l := range links {
		byName[l.Name] = l
	}
	if lo := byName["lo"]; !lo.Loopback || lo.Kind != "" {
		t.Errorf("lo = %+v", lo)
	}
	if a := byName["a"]; a.Index != n.a || a.Kind != "veth" || !a.Up || a.Loopback {
		t.Errorf("a = %+v, want index %d veth up", a, n.a)
	}
	if b := byName["b"]; b.Index != n.b || b.Kind != "veth" {
		t.Errorf("b = %+v", b)
	}
	t.Logf("links: %+v", links)
}

func TestRootSetupClassesTeardown(t *testing.T) {
	n := newNetns(t)
	if owned(t, n, n.a) {
		t.Fatal("fresh veth is owned")
	}
	if err := n.s.Setup(n.a); err != nil {
		t.Fatal(err)
	}
	if !owned(t, n, n.a) {
		t.Fatal("not owned after Setup")
	}
	qd := run(t, "tc", "qdisc", "show", "dev", "a")
	if !strings.Contains(qd, "qdisc htb 1: root") || !strings.Contains(qd, "default 0x2") {
		t.Errorf("tc qdisc show:\n%s", qd)
	}
	fl := run(t, "tc", "filter", "show", "dev", "a", "parent", "1:")
	if !strings.Contains(fl, "bpf") || !strings.Contains(fl, filterName) || strings.Contains(fl, "direct-action") {
		t.Errorf("tc filter show:\n%s", fl)
	}
	t.Logf("tc filter show:\n%s", fl)
	cs := classes(t, n, n.a)
	if len(cs) != 2 {
		t.Fatalf("classes after Setup: %+v", cs)
	}
	if r := cs[RootMinor]; r.Parent != 0 || r.Leaf || r.Rate != MaxRate || r.Ceil != MaxRate {
		t.Errorf("1:1 = %+v", r)
	}
	if d := cs[DefaultMinor]; d.Parent != RootMinor || !d.Leaf || d.Ceil != MaxRate || d.Rate != minRate {
		t.Errorf("1:2 = %+v", d)
	}

	// Create, read back, change in place.
	c := Class{Minor: 0x10, Parent: RootMinor, Rate: 1_000_000, Ceil: 2_000_000, Prio: 3}
	if err := n.s.SetClass(n.a, c); err != nil {
		t.Fatal(err)
	}
	got := classes(t, n, n.a)[0x10]
	if got.Parent != RootMinor || !got.Leaf || got.Rate != 1_000_000 || got.Ceil != 2_000_000 || got.Prio != 3 {
		t.Errorf("1:10 = %+v", got)
	}
	cl := run(t, "tc", "class", "show", "dev", "a", "classid", "1:10")
	if !strings.Contains(cl, "parent 1:1") || !strings.Contains(cl, "prio 3") ||
		!strings.Contains(cl, "rate 8Mbit") || !strings.Contains(cl, "ceil 16Mbit") {
		t.Errorf("tc class show 1:10:\n%s", cl)
	}
	t.Logf("tc class show 1:10: %s", strings.TrimSpace(cl))

	// Nested class, and a parent with children cannot go.
	if err := n.s.SetClass(n.a, Class{Minor: 0x11, Parent: 0x10, Rate: 500_000, Ceil: 10_000_000_000, Prio: 9}); err != nil {
		t.Fatal(err)
	}
	cs = classes(t, n, n.a)
	if cs[0x10].Leaf || !cs[0x11].Leaf || cs[0x11].Parent != 0x10 || cs[0x11].Ceil != 10_000_000_000 || cs[0x11].Prio != 7 {
		t.Errorf("nested: 1:10 %+v, 1:11 %+v", cs[0x10], cs[0x11])
	}
	if err := n.s.DeleteClass(n.a, 0x10); !errors.Is(err, unix.EBUSY) {
		t.Errorf("DeleteClass of a parent: %v, want EBUSY", err)
	} else {
		t.Logf("DeleteClass of a parent: %v", err)
	}
	// A missing parent fails with an errno in the chain.
	if err := n.s.SetClass(n.a, Class{Minor: 0x20, Parent: 0x30}); !errors.Is(err, unix.ENOENT) {
		t.Errorf("SetClass under a missing parent: %v, want ENOENT", err)
	} else {
		t.Logf("SetClass under a missing parent: %v", err)
	}
	if _, ok := classes(t, n, n.a)[0x20]; ok {
		t.Error("class 1:20 made under a missing parent")
	}

	// Counters survive a change in place and a second Setup.
	sendUDP(t, 5)
	before := classes(t, n, n.a)[DefaultMinor].Stats
	if before.Packets < 5 {
		t.Errorf("default class after 5 datagrams: %+v", before)
	}
	c.Ceil = 5_000_000
	if err := n.s.SetClass(n.a, c); err != nil {
		t.Fatal(err)
	}
	if got := classes(t, n, n.a)[0x10]; got.Ceil != 5_000_000 || got.Rate != 1_000_000 {
		t.Errorf("1:10 after change = %+v", got)
	}
	if err := n.s.Setup(n.a); err != nil {
		t.Fatal(err)
	}
	cs = classes(t, n, n.a)
	if len(cs) != 4 {
		t.Errorf("classes after the second Setup: %+v", cs)
	}
	if after := cs[DefaultMinor].Stats; after.Packets < before.Packets || after.Bytes < before.Bytes {
		t.Errorf("default class counters reset by Setup: before %+v after %+v", before, after)
	} else {
		t.Logf("default class before second Setup %+v, after %+v", before, after)
	}
	if fl2 := run(t, "tc", "filter", "show", "dev", "a", "parent", "1:"); strings.Count(fl2, "name "+filterName) != 1 {
		t.Errorf("filters after the second Setup:\n%s", fl2)
	}

	// Delete: children first; a missing class is fine.
	for _, m := range []uint16{0x11, 0x10, 0x10, 0x42} {
		if err := n.s.DeleteClass(n.a, m); err != nil {
			t.Errorf("DeleteClass(1:%x): %v", m, err)
		}
	}
	if cs := classes(t, n, n.a); len(cs) != 2 {
		t.Errorf("classes after deletes: %+v", cs)
	}

	// Setup replaces a foreign root qdisc, even one using handle 1:, and
	// fills in missing classes of an existing porto HTB.
	run(t, "tc", "qdisc", "add", "dev", "b", "root", "handle", "1:", "pfifo")
	if owned(t, n, n.b) {
		t.Error("pfifo root reported owned")
	}
	if err := n.s.Setup(n.b); err != nil {
		t.Fatal(err)
	}
	if !owned(t, n, n.b) || len(classes(t, n, n.b)) != 2 {
		t.Errorf("b after Setup over pfifo: owned %v classes %+v", owned(t, n, n.b), classes(t, n, n.b))
	}
	run(t, "tc", "class", "del", "dev", "b", "classid", "1:2")
	run(t, "tc", "filter", "del", "dev", "b", "parent", "1:")
	if err := n.s.Setup(n.b); err != nil {
		t.Fatal(err)
	}
	if len(classes(t, n, n.b)) != 2 || !strings.Contains(run(t, "tc", "filter", "show", "dev", "b", "parent", "1:"), filterName) {
		t.Error("Setup did not restore 1:2 and the filter")
	}

	// Another filter holding the classifier's prio is replaced.
	run(t, "tc", "filter", "del", "dev", "b", "parent", "1:")
	run(t, "tc", "filter", "add", "dev", "b", "parent", "1:", "prio", "10", "protocol", "ip", "u32", "match", "u32", "0", "0", "classid", "1:2")
	if err := n.s.Setup(n.b); err != nil {
		t.Fatal(err)
	}
	if fl := run(t, "tc", "filter", "show", "dev", "b", "parent", "1:"); strings.Contains(fl, "u32") || !strings.Contains(fl, "name "+filterName) {
		t.Errorf("u32 at prio 10 not replaced:\n%s", fl)
	}

	// Concurrent use of one Sched.
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			minor := uint16(0x100 + i)
			for j := range 4 {
				if err := n.s.SetClass(n.b, Class{Minor: minor, Parent: RootMinor, Ceil: uint64(1_000_000 * (j + 1))}); err != nil {
					errs <- err
				}
				if _, err := n.s.Classes(n.b); err != nil {
					errs <- err
				}
			}
			if err := n.s.DeleteClass(n.b, minor); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("concurrent: %v", err)
	}
	if cs := classes(t, n, n.b); len(cs) != 2 {
		t.Errorf("after the concurrent run: %+v", cs)
	}

	// Teardown, twice; a missing device is an error with ENODEV.
	for range 2 {
		if err := n.s.Teardown(n.a); err != nil {
			t.Fatal(err)
		}
		if owned(t, n, n.a) {
			t.Error("owned after Teardown")
		}
	}
	if qd := run(t, "tc", "qdisc", "show", "dev", "a"); strings.Contains(qd, "htb") {
		t.Errorf("after Teardown:\n%s", qd)
	}
	err := n.s.Teardown(9999)
	t.Logf("Teardown(9999): %v", err)
	if !errors.Is(err, unix.ENODEV) && !errors.Is(err, unix.EINVAL) {
		t.Errorf("Teardown(9999): %v, want ENODEV", err)
	}
	if _, err := n.s.Owned(9999); err == nil {
		t.Error("Owned(9999) succeeded")
	}
}

// netCls mounts the net_cls hierarchy on a temporary directory and makes a
// child cgroup with the given classid; it returns the child's path. All of it
// is undone at cleanup (failures reported).
func netCls(t *testing.T, classid uint32) string {
	t.Helper()
	dir := t.TempDir()
	if err := unix.Mount("none", dir, "cgroup", 0, "net_cls"); err != nil {
		t.Fatalf("mount net_cls: %v", err)
	}
	cg := filepath.Join(dir, fmt.Sprintf("porto-netsched-test-%d", os.Getpid()))
	t.Cleanup(func() {
		if err := os.Remove(cg); err != nil && !os.IsNotExist(err) {
			t.Errorf("rmdir %s: %v", cg, err)
		}
		if err := unix.Unmount(dir, 0); err != nil {
			t.Errorf("unmount %s: %v (hierarchy busy?)", dir, err)
		}
	})
	if err := os.Mkdir(cg, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(cg, "net_cls.classid"), []byte(strconv.FormatUint(uint64(classid), 10)), 0o644); err != nil {
		t.Fatal(err)
	}
	return cg
}

// inCgroup runs script with bash after moving the shell into cg; it is forked
// from the locked test thread, so it is in the test netns.
func inCgroup(cg, script string) *exec.Cmd {
	return exec.Command("bash", "-c", "echo $$ > "+filepath.Join(cg, "cgroup.procs")+" && "+script)
}

func TestRootClassify(t *testing.T) {
	n := newNetns(t)
	if err := n.s.Setup(n.a); err != nil {
		t.Fatal(err)
	}
	if err := n.s.SetClass(n.a, Class{Minor: 0x10, Parent: RootMinor, Rate: 1_000_000}); err != nil {
		t.Fatal(err)
	}
	cg := netCls(t, handle(0x10)) // 0x10010
	before := classes(t, n, n.a)
	out, err := inCgroup(cg, "for i in 1 2 3; do echo x >/dev/udp/"+remoteIP+"/9; done").CombinedOutput()
	if err != nil {
		t.Fatalf("sender: %v\n%s", err, out)
	}
	after := classes(t, n, n.a)
	got := after[0x10].Stats.Packets - before[0x10].Stats.Packets
	dflt := after[DefaultMinor].Stats.Packets - before[DefaultMinor].Stats.Packets
	t.Logf("class 1:10 got %d packets (%d bytes), default 1:2 got %d", got,
		after[0x10].Stats.Bytes-before[0x10].Stats.Bytes, dflt)
	if got < 3 {
		t.Errorf("class 1:10 got %d packets, want >= 3", got)
	}
	if dflt != 0 {
		t.Errorf("default class got %d packets, want 0", dflt)
	}
	// The test process itself (classid 0) still lands in the default class.
	sendUDP(t, 4)
	final := classes(t, n, n.a)
	if d := final[DefaultMinor].Stats.Packets - after[DefaultMinor].Stats.Packets; d != 4 {
		t.Errorf("default class got %d of 4 unclassified packets", d)
	}
	if d := final[0x10].Stats.Packets - after[0x10].Stats.Packets; d != 0 {
		t.Errorf("class 1:10 got %d unclassified packets", d)
	}
	// A classid naming no class falls back to the default class.
	if err := os.WriteFile(filepath.Join(cg, "net_cls.classid"), []byte(strconv.Itoa(int(handle(0x77)))), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := inCgroup(cg, "for i in 1 2; do echo x >/dev/udp/"+remoteIP+"/9; done").CombinedOutput(); err != nil {
		t.Fatalf("sender: %v\n%s", err, out)
	}
	last := classes(t, n, n.a)
	if d := last[DefaultMinor].Stats.Packets - final[DefaultMinor].Stats.Packets; d != 2 {
		t.Errorf("classid 1:77 (no such class): default class got %d of 2 packets", d)
	}
}

func TestRootLimit(t *testing.T) {
	n := newNetns(t)
	if err := n.s.Setup(n.a); err != nil {
		t.Fatal(err)
	}
	const ceil = 100_000
	if err := n.s.SetClass(n.a, Class{Minor: 0x10, Parent: RootMinor, Rate: 10_000, Ceil: ceil}); err != nil {
		t.Fatal(err)
	}
	cg := netCls(t, handle(0x10))
	// ~2.1 MB in 1400-byte datagrams, as fast as the socket takes them,
	// for at most 2 s.
	start := time.Now()
	out, err := inCgroup(cg, "timeout 2 dd if=/dev/zero bs=1400 count=1500 status=none >/dev/udp/"+remoteIP+"/9").CombinedOutput()
	elapsed := time.Since(start)
	t.Logf("sender: %v after %v %s", err, elapsed.Round(time.Millisecond), out)
	cs := classes(t, n, n.a)
	st := cs[0x10].Stats
	t.Logf("class 1:10 ceil %d B/s: %+v in %v", ceil, st, elapsed.Round(time.Millisecond))
	t.Logf("%s", run(t, "tc", "-s", "class", "show", "dev", "a", "classid", "1:10"))
	if st.Packets == 0 {
		t.Fatal("no packets in the limited class")
	}
	limit := uint64(elapsed.Seconds()*ceil) + 2*burstFor(ceil) + 64<<10
	if st.Bytes > limit {
		t.Errorf("class sent %d bytes in %v, above ceil allowance %d", st.Bytes, elapsed, limit)
	}
	if st.Drops == 0 && st.Overlimits == 0 {
		t.Errorf("no drops or overlimits: %+v", st)
	}
}

// TestRootForwardedFromNetns documents a limit of classid classification:
// a packet that a process in another network namespace sends through a veth
// and that this namespace forwards reaches the shaped device without its
// socket (veth scrubs it when crossing namespaces) and in softirq context,
// so bpf_get_cgroup_classid returns 0 and the packet lands in the default
// class whatever the sender's net_cls classid. Classification works for
// processes of the namespace that owns the shaped device.
func TestRootForwardedFromNetns(t *testing.T) {
	n := newNetns(t)
	if err := n.s.Setup(n.a); err != nil {
		t.Fatal(err)
	}
	if err := n.s.SetClass(n.a, Class{Minor: 0x10, Parent: RootMinor}); err != nil {
		t.Fatal(err)
	}
	cg := netCls(t, handle(0x10))
	run(t, "sysctl", "-qw", "net.ipv4.ip_forward=1")
	run(t, "ip", "link", "add", "name", "c", "type", "veth", "peer", "name", "d")
	run(t, "ip", "addr", "add", "10.9.0.1/24", "dev", "c")
	run(t, "ip", "link", "set", "dev", "c", "up")
	// The inner namespace: a child of this thread that waits on stdin.
	inner := exec.Command("unshare", "--net", "sh", "-c", "read x")
	stdin, err := inner.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := inner.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { stdin.Close(); inner.Wait() }()
	pid := strconv.Itoa(inner.Process.Pid)
	ns := "/proc/" + pid + "/ns/net"
	// unshare may not have switched yet; retry moving d until it lands.
	deadline := time.Now().Add(5 * time.Second)
	for {
		self, _ := os.Readlink("/proc/thread-self/ns/net")
		other, _ := os.Readlink(ns)
		if other != "" && other != self {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("inner namespace never appeared")
		}
		time.Sleep(10 * time.Millisecond)
	}
	run(t, "ip", "link", "set", "dev", "d", "netns", pid)
	run(t, "nsenter", "--net="+ns, "ip", "addr", "add", "10.9.0.2/24", "dev", "d")
	run(t, "nsenter", "--net="+ns, "ip", "link", "set", "dev", "d", "up")
	run(t, "nsenter", "--net="+ns, "ip", "route", "add", "default", "via", "10.9.0.1")
	before := classes(t, n, n.a)
	out, err := exec.Command("nsenter", "--net="+ns, "bash", "-c",
		"echo $$ > "+filepath.Join(cg, "cgroup.procs")+" && for i in 1 2 3; do echo x >/dev/udp/"+remoteIP+"/9; done").CombinedOutput()
	if err != nil {
		t.Fatalf("inner sender: %v\n%s", err, out)
	}
	time.Sleep(100 * time.Millisecond) // forwarding happens in softirq
	after := classes(t, n, n.a)
	got := after[0x10].Stats.Packets - before[0x10].Stats.Packets
	dflt := after[DefaultMinor].Stats.Packets - before[DefaultMinor].Stats.Packets
	t.Logf("forwarded from an inner netns with classid 1:10: class 1:10 got %d, default got %d", got, dflt)
	if got != 0 || dflt < 3 {
		t.Errorf("expected the forwarded packets in the default class: 1:10 %d, default %d", got, dflt)
	}
}
