package tests

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Issue 5: per-container traffic accounting and shaping (root tier). The
// portod of NewEnvNet runs in a network namespace of its own with the
// device em1; datagrams to 198.51.100.2 leave through em1 at once.

// netCount reads one device's value of a per-device datum ("em1: 12").
func (e *Env) netCount(t *testing.T, name, key string) uint64 {
	t.Helper()
	out := strings.TrimSpace(e.Out(t, rootUser, "dget", name, key))
	m := regexp.MustCompile(`^em1: ([0-9]+)$`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("%s %s = %q, want \"em1: N\"", name, key, out)
	}
	n, _ := strconv.ParseUint(m[1], 10, 64)
	return n
}

// waitNet polls key until it reaches at least want.
func (e *Env) waitNet(t *testing.T, name, key string, want uint64) uint64 {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		n := e.netCount(t, name, key)
		if n >= want || time.Now().After(deadline) {
			return n
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// tcClass is em1's `tc -s class show` line block for classid.
func (e *Env) tcClass(t *testing.T, classid string) string {
	t.Helper()
	out, err := e.NetExec("tc", "-s", "class", "show", "dev", "em1", "classid", classid)
	if err != nil {
		t.Fatalf("tc class show: %v: %s", err, out)
	}
	return out
}

// classOf is the tc class of a container: net_class_id less one (that is
// the leaf of its own processes; the container's class counts its subtree).
func (e *Env) classOf(t *testing.T, name string) string {
	t.Helper()
	id := strings.TrimSpace(e.Out(t, rootUser, "get", name, "net_class_id"))
	maj, min, ok := strings.Cut(id, ":")
	n, err := strconv.ParseUint(min, 16, 16)
	if !ok || maj != "1" || err != nil || n%2 != 1 {
		t.Fatalf("net_class_id %q, want 1:<odd hex>", id)
	}
	return fmt.Sprintf("1:%x", n-1)
}

const sendUDP = `for i in $(seq %d); do echo porto >/dev/udp/198.51.100.2/9; done; exec sleep 1000`

func TestNetworkAccounting(t *testing.T) {
	e := NewEnvNet(t, nil)

	// The seed: "By default, container shares host network", and the
	// host's devices show porto's qdisc.
	e.OK(t, rootUser, "run", "ip", "command=ip link show em1")
	e.WaitState(t, rootUser, "ip", "dead")
	if out := e.Out(t, rootUser, "get", "ip", "stdout"); !strings.Contains(out, "em1") || !strings.Contains(out, "qdisc htb") {
		t.Errorf("ip link show in a container: %q, want em1 with qdisc htb", out)
	}
	e.OK(t, rootUser, "destroy", "ip")

	e.OK(t, rootUser, "create", "m")
	e.OK(t, rootUser, "run", "m/send", "command=bash -c '"+fmt.Sprintf(sendUDP, 25)+"'")
	e.OK(t, rootUser, "run", "m/idle", "command=sleep 1000")
	e.OK(t, rootUser, "run", "other", "command=sleep 1000")

	if n := e.waitNet(t, "m/send", "net_packets", 25); n < 25 {
		t.Fatalf("m/send net_packets %d after sending 25 datagrams", n)
	}
	// Each datagram is "porto\n" in UDP/IPv4/Ethernet: 48 bytes on the wire.
	if b := e.netCount(t, "m/send", "net_bytes"); b < 25*48 {
		t.Errorf("m/send net_bytes %d, want >= %d", b, 25*48)
	}
	if n := e.netCount(t, "m/idle", "net_packets"); n != 0 {
		t.Errorf("m/idle sent nothing but net_packets = %d", n)
	}
	if n := e.netCount(t, "other", "net_packets"); n != 0 {
		t.Errorf("other sent nothing but net_packets = %d", n)
	}
	// The meta parent counts its children's traffic.
	if p, c := e.netCount(t, "m", "net_packets"), e.netCount(t, "m/send", "net_packets"); p < c {
		t.Errorf("m's net_packets %d < its child's %d", p, c)
	}
	for _, k := range []string{"net_drops", "net_overlimits"} {
		if n := e.netCount(t, "m/send", k); n != 0 {
			t.Errorf("%s %d without a limit", k, n)
		}
	}
	// The kernel's own counters agree.
	cls := e.classOf(t, "m/send")
	if out := e.tcClass(t, cls); !regexp.MustCompile(`Sent [0-9]+ bytes (2[5-9]|[3-9][0-9]|[0-9]{3,}) pkt`).MatchString(out) {
		t.Errorf("tc class %s:\n%s\nwant >= 25 packets", cls, out)
	}

	// Counters survive a crash of the worker: the classes stay in the
	// kernel and the new worker keeps them.
	before := e.netCount(t, "m/send", "net_packets")
	conn := e.rcBus(t)
	old := rcOwnerPid(conn)
	syscall.Kill(old, syscall.SIGKILL)
	rcWaitNewWorker(t, conn, e.rcClient(t), old, 15*time.Second)
	if after := e.netCount(t, "m/send", "net_packets"); after < before {
		t.Errorf("net_packets %d after a worker restart, %d before", after, before)
	}
	if c := e.classOf(t, "m/send"); c != cls {
		t.Errorf("class %s after a worker restart, %s before", c, cls)
	}

	// Stop deletes the container's classes; states where the data do not
	// exist answer InvalidState.
	e.OK(t, rootUser, "stop", "m")
	if out := e.tcClass(t, cls); strings.TrimSpace(out) != "" {
		t.Errorf("class %s left after stop:\n%s", cls, out)
	}
	e.FailWith(t, rootUser, "InvalidState", "get", "m/send", "net_packets")
	e.OK(t, rootUser, "destroy", "m")
	e.OK(t, rootUser, "destroy", "other")
	// Only porto's own classes remain: 1:1 and the default 1:2.
	out, _ := e.NetExec("tc", "class", "show", "dev", "em1")
	if got := len(strings.Split(strings.TrimSpace(out), "\n")); got != 2 {
		t.Errorf("classes left on em1:\n%s", out)
	}
}

func TestNetworkLimits(t *testing.T) {
	e := NewEnvNet(t, nil)

	// Values: sizes with suffixes, per device or "default"; read back
	// canonical (get) and from the kernel (tc).
	e.OK(t, rootUser, "create", "s")
	e.OK(t, rootUser, "set", "s", "net_guarantee", "em1: 1M")
	e.OK(t, rootUser, "set", "s", "net_limit", "default: 2M")
	e.OK(t, rootUser, "set", "s", "net_priority", "em1: 5")
	e.Expect(t, rootUser, "em1: 1048576", "dget", "s", "net_guarantee")
	e.Expect(t, rootUser, "default: 2097152", "dget", "s", "net_limit")
	e.Expect(t, rootUser, "default: 2M", "get", "s", "net_limit")
	e.Expect(t, rootUser, "em1: 5", "get", "s", "net_priority")
	e.OK(t, rootUser, "set", "s", "command", "sleep 1000")
	e.OK(t, rootUser, "start", "s")
	cls := e.classOf(t, "s")
	out := e.tcClass(t, cls)
	// tc prints bits per second: 1 MiB/s = 8388608 bit/s.
	for _, want := range []string{"rate 8388Kbit", "ceil 16777Kbit"} {
		if !strings.Contains(out, want) {
			t.Errorf("tc class of s:\n%s\nwant %q", out, want)
		}
	}
	// tc shows a prio only for leaves: s's own processes' class.
	leaf := strings.TrimSpace(e.Out(t, rootUser, "get", "s", "net_class_id"))
	if out := e.tcClass(t, leaf); !strings.Contains(out, "parent "+cls+" prio 5 rate 8388Kbit") {
		t.Errorf("tc class of s's own processes:\n%s\nwant parent %s prio 5 rate 8388Kbit", out, cls)
	}
	// Static: not while running (the reference's "S").
	e.FailWith(t, rootUser, "InvalidState", "set", "s", "net_limit", "default: 1M")
	for _, bad := range [][]string{
		{"net_limit", "em1 10"}, {"net_limit", "em1: lots"}, {"net_priority", "default: 8"}, {"net_guarantee", "a/b: 1"},
	} {
		e.OK(t, rootUser, "create", "bad")
		e.FailWith(t, rootUser, "InvalidValue", "set", "bad", bad[0], bad[1])
		e.OK(t, rootUser, "destroy", "bad")
	}

	// A limit holds: 200 KB/s for 2 s of sending as fast as possible
	// lets through about 400 KB plus a burst, not the tens of MB an
	// unlimited class passes on a veth.
	e.OK(t, rootUser, "create", "lim")
	e.OK(t, rootUser, "set", "lim", "net_limit", "em1: 200K")
	e.OK(t, rootUser, "set", "lim", "command",
		"bash -c 'exec 3>/dev/udp/198.51.100.2/9; timeout 2 dd if=/dev/zero bs=1000 count=1000000 status=none >&3; exec sleep 1000'")
	e.OK(t, rootUser, "start", "lim")
	time.Sleep(2500 * time.Millisecond)
	sent := e.netCount(t, "lim", "net_bytes")
	over := e.netCount(t, "lim", "net_overlimits")
	t.Logf("under net_limit 200K: %d bytes in about 2 s, overlimits %d", sent, over)
	if sent < 100_000 || sent > 1_500_000 {
		t.Errorf("net_limit em1: 200K let %d bytes through in 2 s", sent)
	}
	if over == 0 {
		t.Errorf("net_overlimits 0 under a limit that was exceeded")
	}
}

// A container started while traffic control was off gets its classes and
// classid when portod comes back with it on; its later traffic counts.
func TestNetworkEnabledLater(t *testing.T) {
	e := NewEnvNet(t, []string{"network = false"})
	e.OK(t, rootUser, "run", "a", "command=bash -c 'while :; do echo porto >/dev/udp/198.51.100.2/9; sleep 0.05; done'")
	e.FailWith(t, rootUser, "NotSupported", "get", "a", "net_packets")
	if err := e.StopPortod(); err != nil {
		t.Fatal(err)
	}
	e.writeConf([]string{"network = true", "network_devices = em1"})
	e.StartPortod()
	e.Expect(t, rootUser, "running", "get", "a", "state")
	if n := e.waitNet(t, "a", "net_packets", 5); n < 5 {
		t.Errorf("net_packets %d: a's traffic is not counted after traffic control came on", n)
	}
	// The unknown-device check of the limits, through portoctl.
	e.OK(t, rootUser, "create", "b")
	r := e.FailWith(t, rootUser, "InvalidValue", "set", "b", "net_limit", "eth9: 1M")
	if !strings.Contains(r.Stderr, "em1") {
		t.Errorf("no list of managed devices in %q", r.Stderr)
	}
}
