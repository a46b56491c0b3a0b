package units

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/porto-dev/porto/api"
)

// cgroups re-declares service.Cgroups (units must not import service), so
// that a drift of the method set breaks this build.
type cgroups interface {
	Create(name string) error
	Attach(name string, pid int) error
	Procs(name string) ([]int, error)
	Kill(name string, sig syscall.Signal) error
	Freeze(name string) error
	Thaw(name string) error
	Frozen(name string) (bool, error)
	Apply(name string, l Limits) error
	Stats(name string) (Stats, error)
	OOMKills(name string) (uint64, error)
	Remove(name string) error
	Exists(name string) bool
}

var (
	_ cgroups = (*V1)(nil)
	_ cgroups = (*V2)(nil)
	_ cgroups = Driver(nil)
	_ Driver  = (*V1)(nil)
	_ Driver  = (*V2)(nil)
	_ Driver  = (*Systemd)(nil)
)

func TestEscape(t *testing.T) {
	for _, tc := range []struct{ in, out string }{
		{"a", "a"},
		{"web-1_x@y:z", "web-1_x@y:z"},
		{"a.b", "a%2eb"},
		{".", "%2e"},
		{"..x", "%2e%2ex"},
		{"tasks", "%74asks"},
		{"notify_on_release", "%6eotify_on_release"},
		{"release_agent", "%72elease_agent"},
		{"tasks2", "tasks2"},
		{"cgroup.procs", "cgroup%2eprocs"},
		{"memory.limit_in_bytes", "memory%2elimit_in_bytes"},
		{"cgroup", "cgroup"},
		{"50%", "50%25"},
	} {
		got := EscapeComponent(tc.in)
		if got != tc.out {
			t.Errorf("EscapeComponent(%q) = %q, want %q", tc.in, got, tc.out)
		}
		back, err := UnescapeComponent(got)
		if err != nil || back != tc.in {
			t.Errorf("UnescapeComponent(%q) = %q, %v; want %q", got, back, err, tc.in)
		}
	}
	for _, bad := range []string{"%", "%2", "%zz", "a%g0"} {
		if _, err := UnescapeComponent(bad); err == nil {
			t.Errorf("UnescapeComponent(%q) succeeded", bad)
		}
	}
	if got := EscapeName("/a.b/tasks/c/"); got != "a%2eb/%74asks/c" {
		t.Errorf("EscapeName = %q", got)
	}
	if got, err := UnescapeName("a%2eb/%74asks/c"); err != nil || got != "a.b/tasks/c" {
		t.Errorf("UnescapeName = %q, %v", got, err)
	}
	if EscapeName("/") != "" || EscapeName("") != "" {
		t.Error("root name not empty")
	}
	// No escaped name equals a control file, or starts with '.' (the v2
	// process leaf).
	for _, c := range []string{"tasks", "cgroup.procs", "a.b", ".self", "release_agent"} {
		e := EscapeComponent(c)
		if e == "tasks" || e == "release_agent" || e == leafName || e[0] == '.' {
			t.Errorf("EscapeComponent(%q) = %q collides", c, e)
		}
	}
}

func TestCleanName(t *testing.T) {
	for in, want := range map[string]string{"/": "", "": "", "a": "a", "/a/b/": "a/b"} {
		if got, err := cleanName(in); err != nil || got != want {
			t.Errorf("cleanName(%q) = %q, %v", in, got, err)
		}
	}
	for _, bad := range []string{"a//b", "a/../b", "./a", "a/."} {
		if _, err := cleanName(bad); api.CodeOf(err) != api.InvalidValue {
			t.Errorf("cleanName(%q) = %v", bad, err)
		}
	}
}

func TestParsers(t *testing.T) {
	if v, err := parseUint([]byte("123\n")); err != nil || v != 123 {
		t.Errorf("parseUint = %d, %v", v, err)
	}
	if v, err := parseUint([]byte("max\n")); err != nil || v != ^uint64(0) {
		t.Errorf("parseUint(max) = %d, %v", v, err)
	}
	if _, err := parseUint([]byte("x")); err == nil {
		t.Error("parseUint(x) succeeded")
	}
	m := parseKeyed([]byte("cache 4096\nrss 8192\npgfault 100\npgmajfault 7\ntotal_pgfault 300\nbad line here\nhierarchical_memory_limit 9223372036854771712\n"))
	if m["pgfault"] != 100 || m["pgmajfault"] != 7 || m["total_pgfault"] != 300 || len(m) != 6 {
		t.Errorf("parseKeyed = %v", m)
	}
	oom := parseKeyed([]byte("oom_kill_disable 0\nunder_oom 0\noom_kill 3\n"))
	if oom["oom_kill"] != 3 {
		t.Errorf("oom_control: %v", oom)
	}
	ev := parseKeyedString([]byte("populated 1\nfrozen 1\n"))
	if ev["frozen"] != "1" || ev["populated"] != "1" {
		t.Errorf("events: %v", ev)
	}
	r, w := parseBlkioBytes([]byte("254:0 Read 4096\n254:0 Write 8192\n254:0 Sync 1\n254:0 Async 2\n254:0 Discard 0\n254:0 Total 12288\n8:0 Read 1\n8:0 Write 2\nTotal 12291\n"))
	if r != 4097 || w != 8194 {
		t.Errorf("blkio = %d %d", r, w)
	}
	r, w = parseIOStat([]byte("254:0 rbytes=100 wbytes=200 rios=1 wios=2 dbytes=0 dios=0\n8:0 rbytes=1 wbytes=2 rios=1 wios=1 dbytes=0 dios=0\n"))
	if r != 101 || w != 202 {
		t.Errorf("io.stat = %d %d", r, w)
	}
	pids, err := parsePids([]byte("1\n22\n\n333\n"), nil)
	if err != nil || len(pids) != 3 || pids[2] != 333 {
		t.Errorf("parsePids = %v, %v", pids, err)
	}
	if _, err := parsePids([]byte("1\nx\n"), nil); err == nil {
		t.Error("parsePids(x) succeeded")
	}
	for _, ok := range []string{"c 1:3 rwm", "b *:* r", "a *:* rwm", "a", "c 136:* rw", "c  1:5   m"} {
		if _, err := deviceRule(ok); err != nil {
			t.Errorf("deviceRule(%q): %v", ok, err)
		}
	}
	for _, bad := range []string{"", "x 1:3 r", "c 1 r", "c a:b r", "c 1:3 rwx", "c 1:3", "c 1:3 rr", "c 1:3 r extra"} {
		if _, err := deviceRule(bad); err == nil {
			t.Errorf("deviceRule(%q) accepted", bad)
		}
	}
}

func TestLimitMaths(t *testing.T) {
	if cpuQuota(1.5) != 150000 || cpuQuota(0.001) != 1000 || cpuQuota(2) != 200000 {
		t.Error("cpuQuota")
	}
	if cpuShares(0) != 1024 || cpuShares(0.5) != 1536 || cpuShares(1000) != 262144 {
		t.Error("cpuShares")
	}
	if cpuWeight(0) != 100 || cpuWeight(1) != 200 || cpuWeight(1000) != 10000 {
		t.Error("cpuWeight")
	}
}

func TestDetect(t *testing.T) {
	mk := func(files ...string) string {
		d := t.TempDir()
		for _, f := range files {
			p := filepath.Join(d, f)
			os.MkdirAll(filepath.Dir(p), 0o755)
			os.WriteFile(p, nil, 0o644)
		}
		return d
	}
	if v, err := Detect(mk("cgroup.controllers", "cgroup.procs")); err != nil || v != CgroupV2 {
		t.Errorf("v2: %v %v", v, err)
	}
	if v, err := Detect(mk("freezer/cgroup.procs", "memory/cgroup.procs")); err != nil || v != CgroupV1 {
		t.Errorf("v1: %v %v", v, err)
	}
	// This machine's layout: v1 per controller + an empty cgroup2 at unified.
	if v, err := Detect(mk("freezer/cgroup.procs", "memory/cgroup.procs", "unified/cgroup.controllers", "unified/cgroup.procs")); err != nil || v != CgroupV1 {
		t.Errorf("hybrid: %v %v", v, err)
	}
	if _, err := Detect(mk("nothing")); api.CodeOf(err) != api.NotSupported {
		t.Errorf("empty: %v", err)
	}
	if CgroupV1.String() != "cgroup-v1" || CgroupV2.String() != "cgroup-v2" {
		t.Error("String")
	}
}

func TestBlockDevices(t *testing.T) {
	d := t.TempDir()
	for name, dev := range map[string][2]string{
		"vda":   {"254:0", "536870912"},
		"sdb":   {"8:16", "100"},
		"loop0": {"7:0", "100"},
		"zram0": {"253:0", "100"},
		"empty": {"8:0", "0"},
	} {
		os.MkdirAll(filepath.Join(d, name), 0o755)
		os.WriteFile(filepath.Join(d, name, "dev"), []byte(dev[0]+"\n"), 0o644)
		os.WriteFile(filepath.Join(d, name, "size"), []byte(dev[1]+"\n"), 0o644)
	}
	got := blockDevices(d)
	if len(got) != 2 || got[0] != "254:0" || got[1] != "8:16" {
		t.Errorf("blockDevices = %v", got)
	}
}

func TestOptions(t *testing.T) {
	for _, bad := range []string{"a/b", "a.b", "..", "tasks"} {
		o := Options{Root: bad}
		if err := o.fill(); err == nil {
			t.Errorf("Root %q accepted", bad)
		}
	}
	o := Options{}
	if err := o.fill(); err != nil || o.MountRoot != "/sys/fs/cgroup" || o.Root != "porto" || o.Log == nil || o.BlockRoot != "/sys/block" {
		t.Errorf("defaults: %+v %v", o, err)
	}
}

func TestSystemdNames(t *testing.T) {
	s := &Systemd{slice: sliceName("porto"), opts: SystemdOptions{Options: Options{Root: "porto"}}}
	for in, want := range map[string]string{
		"a":     "porto-a.scope",
		"web-1": `porto-web\x2d1.scope`,
		"x@y.z": `porto-x\x40y.z.scope`,
	} {
		if got := s.ScopeName(in); got != want {
			t.Errorf("ScopeName(%q) = %q, want %q", in, got, want)
		}
	}
	for in, want := range map[string]string{
		"":        "porto.slice",
		"a":       "porto.slice/porto-a.scope",
		"a/b.c/d": "porto.slice/porto-a.scope/b%2ec/d",
	} {
		if got := s.rel(in); got != want {
			t.Errorf("rel(%q) = %q, want %q", in, got, want)
		}
	}
	if got := sliceName("porto-dev"); got != `porto\x2ddev.slice` {
		t.Errorf("sliceName = %q", got)
	}
}
