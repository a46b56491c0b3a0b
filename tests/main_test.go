package tests

import (
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

// netClsMount is where portod mounts the net_cls hierarchy on these hosts
// when none is mounted (units.EnsureNetCls).
const netClsMount = "/sys/fs/cgroup/net_cls"

// mountedAt reports whether dir is a mount point.
func mountedAt(dir string) bool { return mountPoints()[dir] }

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
