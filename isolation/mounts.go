package isolation

import (
	"errors"
	"os"
	"path"
	"strings"

	"golang.org/x/sys/unix"
)

// Mount setup. Everything below is fd based: targets inside the root are
// opened with openat2(RESOLVE_IN_ROOT|RESOLVE_NO_MAGICLINKS), so no
// symlink or ".." can lead outside the root, and new mounts are attached
// to those fds with move_mount (the new mount API), never by path.

const resolveInRoot = unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS

// source is a host path opened before the root changes.
type source struct {
	bind  Bind
	fd    int
	isDir bool
}

func setupMounts(cfg *Config) *StartError {
	root := hasRoot(cfg)
	needNS := root || len(cfg.Binds) > 0 || cfg.RootReadonly || cfg.VirtMode == "os"
	if !cfg.NewMountNS {
		if needNS {
			return stageError(unix.EINVAL, "mount namespace", "A new mount namespace is required (see CloneFlags)")
		}
		return nil
	}
	// Nothing we mount may reach the host: with a new root nothing
	// propagates either way; on the host's root, host mounts still
	// propagate in but ours never out.
	prop := uintptr(unix.MS_REC | unix.MS_SLAVE)
	if root {
		prop = unix.MS_REC | unix.MS_PRIVATE
	}
	if err := unix.Mount("", "/", "", prop, ""); err != nil {
		return NewStartError("mount(/, private)", err)
	}

	// Open every host path first, with the container's rights.
	srcs, se := openSources(cfg)
	defer func() {
		for _, s := range srcs {
			unix.Close(s.fd)
		}
	}()
	if se != nil {
		return se
	}

	if !root {
		if cfg.Isolate {
			if se := mountFS("proc", unix.AT_FDCWD, "/proc", unix.MOUNT_ATTR_NOSUID|unix.MOUNT_ATTR_NODEV|unix.MOUNT_ATTR_NOEXEC, nil); se != nil {
				return se
			}
		}
		rootfd, err := unix.Open("/", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return NewStartError("open(/)", err)
		}
		defer unix.Close(rootfd)
		if cfg.VirtMode == "os" {
			if se := mountOS(rootfd); se != nil {
				return se
			}
		}
		// On the host's own tree nothing is created: targets must exist.
		if se := mountBinds(rootfd, srcs, false); se != nil {
			return se
		}
		if cfg.RootReadonly {
			if err := unix.MountSetattr(rootfd, "", unix.AT_EMPTY_PATH, &unix.MountAttr{Attr_set: unix.MOUNT_ATTR_RDONLY}); err != nil {
				return NewStartError("remount(/, ro)", err)
			}
		}
		return nil
	}
	return setupRoot(cfg, srcs)
}

// openSources opens bind sources and, for BindDNS, the host's
// /etc/hosts and /etc/resolv.conf. A non-root container may bind only
// what its user can read (and write, for rw).
func openSources(cfg *Config) ([]source, *StartError) {
	var srcs []source
	binds := cfg.Binds
	if cfg.BindDNS && hasRoot(cfg) {
		for _, f := range []string{"/etc/hosts", "/etc/resolv.conf"} {
			if _, err := os.Stat(f); err == nil {
				binds = append(binds[:len(binds):len(binds)], Bind{Source: f, Target: f, ReadOnly: true})
			}
		}
	}
	for _, b := range binds {
		op := "bind(" + b.Source + ")"
		if cfg.UID != 0 {
			mode := uint32(unix.R_OK)
			if !b.ReadOnly {
				mode |= unix.W_OK
			}
			se := asUser(cfg, func() *StartError {
				if err := unix.Faccessat2(unix.AT_FDCWD, b.Source, mode, unix.AT_EACCESS); err != nil {
					return NewStartError(op, err)
				}
				return nil
			})
			if se != nil {
				return srcs, se
			}
		}
		fd, err := unix.Open(b.Source, unix.O_PATH|unix.O_CLOEXEC, 0)
		if err != nil {
			return srcs, NewStartError(op, err)
		}
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			unix.Close(fd)
			return srcs, NewStartError(op, err)
		}
		srcs = append(srcs, source{bind: b, fd: fd, isDir: st.Mode&unix.S_IFMT == unix.S_IFDIR})
	}
	return srcs, nil
}

func setupRoot(cfg *Config, srcs []source) *StartError {
	// A non-root container's user must be able to use its root: read and
	// enter it, and write it unless it is to be read-only.
	mode := uint32(unix.R_OK | unix.X_OK)
	if !cfg.RootReadonly {
		mode |= unix.W_OK
	}
	se := asUser(cfg, func() *StartError {
		if err := unix.Faccessat2(unix.AT_FDCWD, cfg.Root, mode, unix.AT_EACCESS); err != nil {
			return NewStartError("root("+cfg.Root+")", err)
		}
		return nil
	})
	if se != nil {
		return se
	}
	// The new root must be a mount point for pivot_root.
	if err := unix.Mount(cfg.Root, cfg.Root, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return NewStartError("bind(root "+cfg.Root+")", err)
	}
	rootfd, err := unix.Open(cfg.Root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return NewStartError("open(root "+cfg.Root+")", err)
	}
	defer unix.Close(rootfd)

	if se := mountFSIn(rootfd, "proc", "/proc", unix.MOUNT_ATTR_NOSUID|unix.MOUNT_ATTR_NODEV|unix.MOUNT_ATTR_NOEXEC, nil); se != nil {
		return se
	}
	if se := mountFSIn(rootfd, "sysfs", "/sys", unix.MOUNT_ATTR_RDONLY|unix.MOUNT_ATTR_NOSUID|unix.MOUNT_ATTR_NODEV|unix.MOUNT_ATTR_NOEXEC, nil); se != nil {
		return se
	}
	if se := setupDev(rootfd); se != nil {
		return se
	}
	if cfg.VirtMode == "os" {
		if se := mountOS(rootfd); se != nil {
			return se
		}
	}
	if se := mountBinds(rootfd, srcs, true); se != nil {
		return se
	}
	if cfg.RootReadonly {
		if err := unix.MountSetattr(rootfd, "", unix.AT_EMPTY_PATH, &unix.MountAttr{Attr_set: unix.MOUNT_ATTR_RDONLY}); err != nil {
			return NewStartError("remount(root, ro)", err)
		}
	}
	// pivot_root(".", ".") stacks the old root on the new one; detach it.
	if err := unix.Fchdir(rootfd); err != nil {
		return NewStartError("chdir(root "+cfg.Root+")", err)
	}
	if err := unix.PivotRoot(".", "."); err != nil {
		return NewStartError("pivot_root("+cfg.Root+")", err)
	}
	if err := unix.Unmount(".", unix.MNT_DETACH); err != nil {
		return NewStartError("umount(old root)", err)
	}
	if err := unix.Chdir("/"); err != nil {
		return NewStartError("chdir(/)", err)
	}
	return nil
}

// openIn opens p resolved inside the tree of rootfd.
func openIn(rootfd int, p string, flags uint64) (int, error) {
	return unix.Openat2(rootfd, p, &unix.OpenHow{Flags: flags | unix.O_CLOEXEC, Resolve: resolveInRoot})
}

// splitPath splits p into components, dropping empty ones and ".".
func splitPath(p string) []string {
	var out []string
	for _, c := range strings.Split(p, "/") {
		if c != "" && c != "." {
			out = append(out, c)
		}
	}
	return out
}

// maxSymlinks bounds the symlinks followed while resolving one path.
const maxSymlinks = 40

// mkdirAllIn makes every directory of p inside the tree of rootfd and
// returns an O_PATH fd of the last one.
func mkdirAllIn(rootfd int, p string) (int, error) {
	return targetIn(rootfd, p, true, true)
}

// targetIn opens the mount point p inside the tree of rootfd, creating
// what is missing when create is set: directories, and the last component
// as a directory (dir) or an empty file. Symlinks are followed by hand, each relative to
// the root, so a dangling one (say /etc/resolv.conf -> ../run/x) gets its
// target created inside the root; every open is also confined by
// RESOLVE_IN_ROOT, so nothing (a race included) can lead outside it.
func targetIn(rootfd int, p string, dir, create bool) (int, error) {
	queue := splitPath(p)
	cur := "/" // resolved so far: a path inside the root without symlinks
	links := 0
	for len(queue) > 0 {
		c := queue[0]
		queue = queue[1:]
		last := len(queue) == 0
		if c == ".." {
			cur = path.Dir(cur)
			continue
		}
		next := path.Join(cur, c)
		fd, err := openIn(rootfd, next, unix.O_PATH|unix.O_NOFOLLOW)
		if errors.Is(err, unix.ENOENT) && create {
			if err := createIn(rootfd, cur, c, dir || !last); err != nil {
				return -1, err
			}
			fd, err = openIn(rootfd, next, unix.O_PATH|unix.O_NOFOLLOW)
		}
		if err != nil {
			return -1, err
		}
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			unix.Close(fd)
			return -1, err
		}
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFLNK:
			links++
			target, err := readlinkFd(fd)
			unix.Close(fd)
			if err != nil {
				return -1, err
			}
			if links > maxSymlinks {
				return -1, unix.ELOOP
			}
			if path.IsAbs(target) {
				cur = "/"
			}
			queue = append(splitPath(target), queue...)
			continue
		case unix.S_IFDIR:
		default:
			if !last {
				unix.Close(fd)
				return -1, unix.ENOTDIR
			}
		}
		if last {
			return fd, nil
		}
		unix.Close(fd)
		cur = next
	}
	return openIn(rootfd, cur, unix.O_PATH|unix.O_DIRECTORY)
}

// createIn makes name (a directory or an empty file) in directory dir of
// the root. An existing entry is fine: the caller opens it next.
func createIn(rootfd int, dir, name string, isDir bool) error {
	pfd, err := openIn(rootfd, dir, unix.O_PATH|unix.O_DIRECTORY)
	if err != nil {
		return err
	}
	defer unix.Close(pfd)
	if isDir {
		err = unix.Mkdirat(pfd, name, 0o755)
	} else {
		var fd int
		// O_EXCL|O_NOFOLLOW: never through a symlink.
		fd, err = unix.Openat(pfd, name, unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_WRONLY|unix.O_CLOEXEC, 0o644)
		if err == nil {
			unix.Close(fd)
		}
	}
	if errors.Is(err, unix.EEXIST) {
		return nil
	}
	return err
}

// readlinkFd reads the symlink fd refers to (an O_PATH|O_NOFOLLOW fd).
func readlinkFd(fd int) (string, error) {
	buf := make([]byte, unix.PathMax)
	n, err := unix.Readlinkat(fd, "", buf)
	if err != nil {
		return "", err
	}
	return string(buf[:n]), nil
}

// newFS creates a detached mount of a new fstype instance with options
// and mount attributes; the returned fd is its root.
func newFS(fstype string, attrs int, opts map[string]string) (int, error) {
	fsfd, err := unix.Fsopen(fstype, unix.FSOPEN_CLOEXEC)
	if err != nil {
		return -1, err
	}
	defer unix.Close(fsfd)
	for k, v := range opts {
		if v == "" {
			err = unix.FsconfigSetFlag(fsfd, k)
		} else {
			err = unix.FsconfigSetString(fsfd, k, v)
		}
		if err != nil {
			return -1, err
		}
	}
	if err := unix.FsconfigCreate(fsfd); err != nil {
		return -1, err
	}
	return unix.Fsmount(fsfd, unix.FSMOUNT_CLOEXEC, attrs)
}

// attach moves the detached mount mfd onto target (dirfd+path, or the fd
// itself when path is "").
func attach(mfd, dirfd int, path string) error {
	flags := unix.MOVE_MOUNT_F_EMPTY_PATH
	if path == "" {
		flags |= unix.MOVE_MOUNT_T_EMPTY_PATH
	}
	return unix.MoveMount(mfd, "", dirfd, path, flags)
}

// mountFS mounts a new fstype instance on dirfd+path.
func mountFS(fstype string, dirfd int, path string, attrs int, opts map[string]string) *StartError {
	mfd, err := newFS(fstype, attrs, opts)
	if err != nil {
		return NewStartError("mount("+fstype+")", err)
	}
	defer unix.Close(mfd)
	if err := attach(mfd, dirfd, path); err != nil {
		return NewStartError("mount("+fstype+" on "+path+")", err)
	}
	return nil
}

// mountFSIn mounts a new fstype instance on directory p inside the root.
func mountFSIn(rootfd int, fstype, p string, attrs int, opts map[string]string) *StartError {
	tfd, err := mkdirAllIn(rootfd, p)
	if err != nil {
		return NewStartError("mkdir("+p+")", err)
	}
	defer unix.Close(tfd)
	mfd, err := newFS(fstype, attrs, opts)
	if err != nil {
		return NewStartError("mount("+fstype+")", err)
	}
	defer unix.Close(mfd)
	if err := attach(mfd, tfd, ""); err != nil {
		return NewStartError("mount("+fstype+" on "+p+")", err)
	}
	return nil
}

// devices are the nodes of the minimal /dev.
var devices = []struct {
	name         string
	major, minor uint32
}{
	{"null", 1, 3}, {"zero", 1, 5}, {"full", 1, 7},
	{"random", 1, 8}, {"urandom", 1, 9}, {"tty", 5, 0},
}

// setupDev mounts a minimal /dev: a tmpfs with the basic character
// devices, its own devpts instance with ptmx pointing into it, and a shm
// tmpfs.
func setupDev(rootfd int) *StartError {
	tfd, err := mkdirAllIn(rootfd, "/dev")
	if err != nil {
		return NewStartError("mkdir(/dev)", err)
	}
	defer unix.Close(tfd)
	mfd, err := newFS("tmpfs", unix.MOUNT_ATTR_NOSUID|unix.MOUNT_ATTR_NOEXEC, map[string]string{"mode": "755", "size": "65536k"})
	if err != nil {
		return NewStartError("mount(tmpfs on /dev)", err)
	}
	defer unix.Close(mfd)
	for _, d := range devices {
		if err := unix.Mknodat(mfd, d.name, unix.S_IFCHR|0o666, int(unix.Mkdev(d.major, d.minor))); err != nil {
			return NewStartError("mknod(/dev/"+d.name+")", err)
		}
		if err := unix.Fchmodat(mfd, d.name, 0o666, 0); err != nil {
			return NewStartError("chmod(/dev/"+d.name+")", err)
		}
	}
	links := [][2]string{
		{"pts/ptmx", "ptmx"}, {"/proc/self/fd", "fd"},
		{"/proc/self/fd/0", "stdin"}, {"/proc/self/fd/1", "stdout"}, {"/proc/self/fd/2", "stderr"},
	}
	for _, l := range links {
		if err := unix.Symlinkat(l[0], mfd, l[1]); err != nil {
			return NewStartError("symlink(/dev/"+l[1]+")", err)
		}
	}
	for _, d := range []string{"pts", "shm"} {
		if err := unix.Mkdirat(mfd, d, 0o755); err != nil {
			return NewStartError("mkdir(/dev/"+d+")", err)
		}
	}
	if err := attach(mfd, tfd, ""); err != nil {
		return NewStartError("mount(tmpfs on /dev)", err)
	}
	// mfd is now the attached /dev: mount into it.
	if se := mountFS("devpts", mfd, "pts", unix.MOUNT_ATTR_NOSUID|unix.MOUNT_ATTR_NOEXEC,
		map[string]string{"newinstance": "", "ptmxmode": "0666", "mode": "0620", "gid": "5"}); se != nil {
		return se
	}
	if se := mountFS("tmpfs", mfd, "shm", unix.MOUNT_ATTR_NOSUID|unix.MOUNT_ATTR_NODEV|unix.MOUNT_ATTR_NOEXEC,
		map[string]string{"mode": "1777", "size": "65536k"}); se != nil {
		return se
	}
	return nil
}

// mountOS adds what an init of an OS container needs: a tmpfs /run.
func mountOS(rootfd int) *StartError {
	return mountFSIn(rootfd, "tmpfs", "/run", unix.MOUNT_ATTR_NOSUID|unix.MOUNT_ATTR_NODEV, map[string]string{"mode": "755"})
}

// mountBinds attaches a clone of every source onto its target, resolved
// inside the tree of rootfd (and created there when create is set).
func mountBinds(rootfd int, srcs []source, create bool) *StartError {
	for _, s := range srcs {
		op := "bind(" + s.bind.Source + " " + s.bind.Target + ")"
		tfd, err := targetIn(rootfd, s.bind.Target, s.isDir, create)
		if err != nil {
			return NewStartError(op, err)
		}
		se := bindOne(s, tfd, op)
		unix.Close(tfd)
		if se != nil {
			return se
		}
	}
	return nil
}

func bindOne(s source, tfd int, op string) *StartError {
	tree, err := unix.OpenTree(s.fd, "", unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC|unix.AT_EMPTY_PATH|unix.AT_RECURSIVE)
	if err != nil {
		return NewStartError(op, err)
	}
	defer unix.Close(tree)
	if s.bind.ReadOnly {
		attr := &unix.MountAttr{Attr_set: unix.MOUNT_ATTR_RDONLY}
		if err := unix.MountSetattr(tree, "", unix.AT_EMPTY_PATH|unix.AT_RECURSIVE, attr); err != nil {
			return NewStartError(op, err)
		}
	}
	if err := attach(tree, tfd, ""); err != nil {
		return NewStartError(op, err)
	}
	return nil
}
