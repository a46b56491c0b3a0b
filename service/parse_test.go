package service

import (
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/porto-dev/porto/api"
	"github.com/porto-dev/porto/isolation"
)

func TestParseEnv(t *testing.T) {
	got, err := ParseEnv(`A=1; B=2 ;C=x\;y; D=`)
	if err != nil || !reflect.DeepEqual(got, []string{"A=1", "B=2", "C=x;y", "D="}) {
		t.Fatalf("%v %v", got, err)
	}
	for _, bad := range []string{"A", "=1", "A B=1"} {
		if _, err := ParseEnv(bad); api.CodeOf(err) != api.InvalidValue {
			t.Errorf("%q: %v", bad, err)
		}
	}
}

func TestParseUlimit(t *testing.T) {
	got, err := ParseUlimit("nproc: 20480 30720; nofile: 4096 8192; core: unlimited; nofile: 10 20")
	want := []isolation.Rlimit{{Resource: 6, Soft: 20480, Hard: 30720}, {Resource: 7, Soft: 10, Hard: 20}, {Resource: 4, Soft: rlimInfinity, Hard: rlimInfinity}}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("%v %v", got, err)
	}
	for _, bad := range []string{"nofile", "bogus: 1", "nofile: 2 1", "nofile: x", "nofile: 1 2 3"} {
		if _, err := ParseUlimit(bad); api.CodeOf(err) != api.InvalidValue {
			t.Errorf("%q: %v", bad, err)
		}
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]uint64{"0": 0, "100": 100, "64M": 64 << 20, "1G": 1 << 30, "1gb": 1 << 30, "512k": 512 << 10, "1.5K": 1536, " 2T ": 2 << 40} {
		if got, err := ParseSize(in); err != nil || got != want {
			t.Errorf("%q: %d %v", in, got, err)
		}
	}
	for _, bad := range []string{"", "M", "-1", "1X", "99999999999999999999", "20000000P", "1.5.5"} {
		if _, err := ParseSize(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestParseBool(t *testing.T) {
	for in, want := range map[string]bool{"true": true, "false": false, "1": true, "0": false, "TRUE": true} {
		if got, err := ParseBool(in); err != nil || got != want {
			t.Errorf("%q", in)
		}
	}
	if _, err := ParseBool("maybe"); err == nil {
		t.Error("maybe")
	}
}

func TestSplitCommand(t *testing.T) {
	for in, want := range map[string][]string{
		`uname -a`:                        {"uname", "-a"},
		`bash -c 'env | grep TEST_PORTO'`: {"bash", "-c", "env | grep TEST_PORTO"},
		`bash -c "echo \"hi\" \$x"`:       {"bash", "-c", `echo "hi" $x`},
		`a\ b  c`:                         {"a b", "c"},
		`''`:                              {""},
		``:                                nil,
		`bash -c 'builtin ulimit -a'`:     {"bash", "-c", "builtin ulimit -a"},
	} {
		if got, err := SplitCommand(in); err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("%q: %q %v", in, got, err)
		}
	}
	for _, bad := range []string{`'x`, `"x`} {
		if _, err := SplitCommand(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestConfig(t *testing.T) {
	c, err := ParseConfig(strings.NewReader("# comment\nstate_dir = /tmp/x\nstop_timeout = 5s # inline\nmax_containers=10\n"), "t")
	if err != nil || c.StateDir != "/tmp/x" || c.StopTimeout != 5*time.Second || c.MaxContainers != 10 || c.Place != "/place/porto" {
		t.Fatalf("%+v %v", c, err)
	}
	for _, bad := range []string{"bogus = 1", "state_dir = rel", "stop_timeout = soon", "max_containers = 0", "noequals", "cgroup_driver = docker", "cgroup_root = a/b", "a=1\na=2", "state_dir=/a\nstate_dir=/b", "stage_pool = 9", "stage_pool = -1", "stage_pool = x", "network = maybe", "network_devices = a/b", "network_devices = [x"} {
		_, err := ParseConfig(strings.NewReader(bad), "t")
		if api.CodeOf(err) != api.InvalidValue || !strings.Contains(err.Error(), "t:") {
			t.Errorf("%q: %v", bad, err)
		}
	}
	if len(ConfigKeys()) != 19 {
		t.Errorf("keys %v", ConfigKeys())
	}
	c, err = ParseConfig(strings.NewReader("network = false\nnetwork_devices = eth* em1\n"), "t")
	if err != nil || c.Network || !slices.Equal(c.NetDevices, []string{"eth*", "em1"}) {
		t.Errorf("network keys: %+v %v", c, err)
	}
	if !DefaultConfig().Network {
		t.Errorf("network is off by default")
	}
}

func FuzzParseEnv(f *testing.F) {
	for _, s := range []string{"A=1; B=2", `A=x\;y`, "", ";;", "=", "A"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		items, err := ParseEnv(s)
		if err != nil {
			return
		}
		for _, it := range items {
			if !strings.Contains(it, "=") || strings.HasPrefix(it, "=") {
				t.Fatalf("bad item %q", it)
			}
		}
	})
}

func FuzzParseUlimit(f *testing.F) {
	for _, s := range []string{"nproc: 20480 30720; nofile: 4096 8192", "core: unlimited", "x", "nofile: 2 1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ls, err := ParseUlimit(s)
		if err != nil {
			return
		}
		for _, l := range ls {
			if l.Soft > l.Hard {
				t.Fatalf("soft > hard in %+v", l)
			}
		}
	})
}

func FuzzParseSize(f *testing.F) {
	for _, s := range []string{"64M", "1G", "1.5K", "", "18446744073709551615", "16E"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) { ParseSize(s) })
}

func FuzzSplitCommand(f *testing.F) {
	for _, s := range []string{`bash -c 'a b'`, `"x\"y"`, `a\`, `'`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) { SplitCommand(s) })
}

func FuzzParseConfig(f *testing.F) {
	for _, s := range []string{"state_dir = /run/porto\n", "a=b", "# x\n\nstop_timeout=1s"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseConfig(strings.NewReader(s), "f")
		if err == nil && (c.MaxContainers < 1 || !strings.HasPrefix(c.StateDir, "/")) {
			t.Fatalf("accepted invalid config %+v", c)
		}
	})
}
