package units

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// The v2 driver keeps classids in a cgroup v1 net_cls hierarchy beside the
// unified one (v2 has no net_cls). Both are directory trees here.
func TestV2NetCls(t *testing.T) {
	mount, block := fakeV2(t)
	ncls := t.TempDir()
	write(t, filepath.Join(ncls, "net_cls.classid"), "0\n")
	write(t, filepath.Join(ncls, "cgroup.procs"), "1\n")
	v2hook := fakeMkdirHook
	fakeMkdirHook = func(dir string) {
		if strings.HasPrefix(dir, ncls) {
			write(t, filepath.Join(dir, "net_cls.classid"), "0\n")
			write(t, filepath.Join(dir, "cgroup.procs"), "")
			return
		}
		v2hook(dir)
	}
	d, err := NewCgroupfs(Options{MountRoot: mount, BlockRoot: block, Log: quiet, NetCls: ncls})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"a", "a/b"} {
		if err := d.Create(n); err != nil {
			t.Fatal(err)
		}
	}
	leaf := filepath.Join(ncls, "porto", "a", "b")
	if _, err := os.Stat(leaf); err != nil {
		t.Fatalf("no net_cls cgroup for a/b: %v", err)
	}
	if err := d.Attach("a/b", 4242); err != nil {
		t.Fatal(err)
	}
	if got := read(t, leaf+"/cgroup.procs"); got != "4242" {
		t.Errorf("net_cls cgroup.procs = %q", got)
	}
	if got := read(t, filepath.Join(mount, "porto", "a", "b", leafName, "cgroup.procs")); got != "4242" {
		t.Errorf("v2 leaf cgroup.procs = %q", got)
	}
	if err := d.Apply("a/b", Limits{NetClassID: 0x10011}); err != nil {
		t.Fatal(err)
	}
	if got := read(t, leaf+"/net_cls.classid"); got != "65553" {
		t.Errorf("net_cls.classid = %q, want 65553 (1:11)", got)
	}
	// Unchanged: not written again (the file is changed behind its back
	// to see that).
	write(t, leaf+"/net_cls.classid", "7\n")
	if err := d.Apply("a/b", Limits{NetClassID: 0x10011, PidsLimit: 10}); err != nil {
		t.Fatal(err)
	}
	if got := read(t, leaf+"/net_cls.classid"); got != "7" {
		t.Errorf("an unchanged classid was written again: %q", got)
	}
	write(t, leaf+"/cgroup.procs", "")
	write(t, filepath.Join(mount, "porto", "a", "b", leafName, "cgroup.procs"), "")
	if err := d.Remove("a"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(ncls, "porto", "a")); !os.IsNotExist(err) {
		t.Errorf("net_cls cgroup of a left after Remove: %v", err)
	}
}

// Without a net_cls hierarchy the v2 driver takes a classid and writes
// nothing for it.
func TestV2NoNetCls(t *testing.T) {
	v, _ := newFakeV2(t)
	if err := v.Create("a"); err != nil {
		t.Fatal(err)
	}
	if err := v.Apply("a", Limits{NetClassID: 0x10011}); err != nil {
		t.Fatalf("classid without net_cls: %v", err)
	}
}

func TestNewNetClsRefusesOtherMounts(t *testing.T) {
	if _, err := newNetCls(t.TempDir(), "porto"); err == nil {
		t.Errorf("a directory without net_cls.classid was taken for a net_cls hierarchy")
	}
}

func TestUnescapeMount(t *testing.T) {
	if got := unescapeMount(`/a\040b/c`); got != "/a b/c" {
		t.Errorf("unescapeMount = %q", got)
	}
}

// On the real v1 hierarchies: EnsureNetCls finds (or mounts) net_cls,
// the driver uses it, a process attached to a container carries the
// container's classid, and nothing is left. A net_cls this test mounted is
// unmounted again.
func TestV1NetClsReal(t *testing.T) {
	requireRoot(t)
	before := FindNetCls()
	p, err := EnsureNetCls("", t.TempDir()+"/net_cls")
	if err != nil {
		t.Fatal(err)
	}
	if before == "" {
		t.Cleanup(func() {
			if err := unix.Unmount(p, 0); err == nil {
				os.Remove(p)
			}
		})
	}
	if FindNetCls() != p {
		t.Fatalf("EnsureNetCls = %s, FindNetCls = %s", p, FindNetCls())
	}
	v := newTestV1(t)
	if !slices.Contains(v.Controllers(), "net_cls") {
		t.Fatalf("controllers %v lack net_cls", v.Controllers())
	}
	if err := v.Create("n"); err != nil {
		t.Fatal(err)
	}
	if err := v.Apply("n", Limits{NetClassID: 0x10013}); err != nil {
		t.Fatal(err)
	}
	dir := v.Path("n", "net_cls")
	if got := read(t, dir+"/net_cls.classid"); got != "65555" {
		t.Errorf("net_cls.classid = %s, want 65555", got)
	}
	cmd := startIn(t, v, "n", "sleep 100")
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", cmd.Process.Pid))
	if !strings.Contains(string(b), ":net_cls:/"+v.opts.Root+"/n\n") && !strings.Contains(string(b), ",net_cls") {
		t.Errorf("the attached process is not in n's net_cls cgroup:\n%s", b)
	}
	v.Kill("n", syscall.SIGKILL)
	cmd.Wait()
	if err := v.Remove("n"); err != nil {
		t.Fatal(err)
	}
	if exists(dir) {
		t.Errorf("%s left after Remove", dir)
	}
}
