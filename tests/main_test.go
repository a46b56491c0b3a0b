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

// netnsDir is where `ip netns add` (NewEnvNet) bind-mounts named network
// namespaces; it makes the directory a mount point on first use.
const netnsDir = "/run/netns"

// TestMain undoes the host changes the tests cause that outlive a portod:
// the net_cls hierarchy its traffic control mounted (each test removes
// its own cgroups in it), and the /run/netns mount of `ip netns` (each
// test deletes its own namespace).
func TestMain(m *testing.M) {
	clsBefore, nsBefore := mountedAt(netClsMount), mountedAt(netnsDir)
	code := m.Run()
	if !clsBefore && mountedAt(netClsMount) {
		if err := unix.Unmount(netClsMount, 0); err == nil {
			os.Remove(netClsMount)
		}
	}
	if ents, _ := os.ReadDir(netnsDir); !nsBefore && len(ents) == 0 && mountedAt(netnsDir) {
		unix.Unmount(netnsDir, 0)
	}
	os.Exit(code)
}
