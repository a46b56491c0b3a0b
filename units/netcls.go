package units

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// netCls is a cgroup v1 net_cls hierarchy used beside the unified
// hierarchy of cgroup v2, which has no net_cls controller: the traffic
// classifier (units/netsched) reads the sending socket's net_cls classid.
// Container "a/b" is <mount>/<Root>/a/b there, as on v1.
type netCls struct {
	root string // mount/<Root>
}

func newNetCls(mount, root string) (*netCls, error) {
	if !exists(filepath.Join(mount, "net_cls.classid")) {
		return nil, fmt.Errorf("%s is not a net_cls hierarchy (no net_cls.classid)", mount)
	}
	n := &netCls{root: filepath.Join(mount, root)}
	if _, err := claimRoot(n.root); err != nil {
		return nil, err
	}
	return n, nil
}

func (n *netCls) dir(name string) string {
	if name == "" {
		return n.root
	}
	return n.root + "/" + EscapeName(name)
}

func (n *netCls) create(name string) (bool, error) { return mkdir(n.dir(name)) }

func (n *netCls) attach(name, pid string) error {
	return writeFile(n.dir(name)+"/cgroup.procs", pid)
}

func (n *netCls) setClass(name string, id uint32) error {
	return writeFile(n.dir(name)+"/net_cls.classid", strconv.FormatUint(uint64(id), 10))
}

func (n *netCls) remove(name string, deadline time.Time) error {
	d := n.dir(name)
	if err := rmdirTree(d, deadline); err != nil {
		return busyPids(d, err)
	}
	return nil
}

// FindNetCls is the mount point of a cgroup v1 hierarchy with the net_cls
// controller, from /proc/self/mountinfo; "" if there is none.
func FindNetCls() string {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return ""
	}
	for _, line := range strings.Split(string(b), "\n") {
		pre, post, ok := strings.Cut(line, " - ")
		if !ok {
			continue
		}
		f, g := strings.Fields(pre), strings.Fields(post)
		if len(f) < 5 || len(g) < 3 || g[0] != "cgroup" {
			continue
		}
		for _, o := range strings.Split(g[2], ",") {
			if o == "net_cls" {
				return unescapeMount(f[4])
			}
		}
	}
	return ""
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, "\\") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// EnsureNetCls returns a mounted net_cls hierarchy for the drivers
// (Options.NetCls): the one already mounted, else one porto mounts at
// <mountRoot>/net_cls on a cgroup v1 host (when that is writable), else
// at fallback.
func EnsureNetCls(mountRoot, fallback string) (string, error) {
	if p := FindNetCls(); p != "" {
		return p, nil
	}
	if mountRoot == "" {
		mountRoot = defaultMountRoot
	}
	var errs []error
	if ver, err := Detect(mountRoot); err == nil && ver == CgroupV1 {
		p := filepath.Join(mountRoot, "net_cls")
		_, err := MountNetCls(p)
		if err == nil {
			return p, nil
		}
		errs = append(errs, err)
	}
	if _, err := MountNetCls(fallback); err != nil {
		return "", errors.Join(append(errs, err)...)
	}
	return fallback, nil
}

// MountNetCls mounts the cgroup v1 net_cls controller at dir unless some
// mount there already is a net_cls hierarchy, and returns whether it
// mounted. It fails when the kernel has no net_cls controller, or it is
// disabled or bound to another hierarchy elsewhere with other controllers
// (the mount then fails with EBUSY).
func MountNetCls(dir string) (bool, error) {
	if exists(filepath.Join(dir, "net_cls.classid")) {
		return false, nil
	}
	if !netClsEnabled() {
		return false, errors.New("the kernel has no enabled net_cls cgroup controller (/proc/cgroups)")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return false, err
	}
	if err := unix.Mount("net_cls", dir, "cgroup", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "net_cls"); err != nil {
		return false, fmt.Errorf("mount net_cls at %s: %w", dir, err)
	}
	return true, nil
}

func netClsEnabled() bool {
	b, err := os.ReadFile("/proc/cgroups")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) == 4 && f[0] == "net_cls" {
			return f[3] == "1"
		}
	}
	return false
}
