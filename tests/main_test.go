package tests

import (
	"os"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// netClsMount is where portod mounts the net_cls hierarchy on these hosts
// when none is mounted (units.EnsureNetCls).
const netClsMount = "/sys/fs/cgroup/net_cls"

func mountedAt(dir string) bool {
	b, _ := os.ReadFile("/proc/self/mountinfo")
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) > 4 && f[4] == dir {
			return true
		}
	}
	return false
}

// TestMain undoes the one host change the tests cause that outlives a
// portod: the net_cls hierarchy its traffic control mounted (each test
// removes its own cgroups in it).
func TestMain(m *testing.M) {
	before := mountedAt(netClsMount)
	code := m.Run()
	if !before && mountedAt(netClsMount) {
		if err := unix.Unmount(netClsMount, 0); err == nil {
			os.Remove(netClsMount)
		}
	}
	os.Exit(code)
}
