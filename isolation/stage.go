package isolation

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// stageExitFailure is the exit status of a stage that failed to set up.
const stageExitFailure = 127

// defaultPath is used to look up the command when Config.Env has no PATH.
const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// RunStage is the "__isolate" stage; it never returns. The daemon's main and
// the TestMain of test binaries that launch containers call it when
// os.Args[1] == StageArg.
//
// It reads the Config from fd 3 (exiting quietly if the parent closes the
// socket first), joins Config.CgroupProcs, sets up mounts, pivot_root,
// hostname, rlimits, stdio, cwd, credentials and capabilities, and execs
// the command (or the porto-init binary at Config.InitFD, with Argv as its
// argv). Any failure is reported as a *StartError on fd 3, and the
// stage exits with status 127.
func RunStage() {
	// Credentials and the final execve are per-thread: keep everything on
	// this one.
	runtime.LockOSThread()
	sync := os.NewFile(3, "porto-sync")
	cfg, err := readConfig(sync)
	if err != nil {
		if errors.Is(err, io.EOF) {
			os.Exit(0)
		}
		fail(sync, NewStartError("read config", err))
	}
	fail(sync, runSetup(cfg, os.Args[2:]))
}

func fail(sync *os.File, se *StartError) {
	writeError(sync, se)
	os.Exit(stageExitFailure)
}

func runSetup(cfg *Config, args []string) (se *StartError) {
	defer func() {
		if r := recover(); r != nil {
			se = stageError(unix.EINVAL, "isolation stage", fmt.Sprintf("Internal error: %v", r))
		}
	}()
	return setup(cfg, args)
}

// setup returns only on failure.
func setup(cfg *Config, args []string) *StartError {
	for _, p := range cfg.CgroupProcs {
		if err := writeFile(p, "0"); err != nil {
			return NewStartError("attach to cgroup "+p, err)
		}
	}
	for _, a := range args {
		if v, ok := strings.CutPrefix(a, mntnsArg); ok {
			if se := joinMountNS(v, cfg.NewMountNS); se != nil {
				return se
			}
		}
	}
	if se := setupMounts(cfg); se != nil {
		return se
	}
	if cfg.Hostname != "" {
		if err := unix.Sethostname([]byte(cfg.Hostname)); err != nil {
			return NewStartError("sethostname("+cfg.Hostname+")", err)
		}
	}
	for _, rl := range cfg.Rlimits {
		lim := syscall.Rlimit{Cur: rl.Soft, Max: rl.Hard}
		if err := syscall.Setrlimit(rl.Resource, &lim); err != nil {
			return NewStartError("setrlimit("+RlimitName(rl.Resource)+")", err)
		}
	}
	if se := asUser(cfg, func() *StartError { return setupStdio(cfg) }); se != nil {
		return se
	}
	if cfg.Capabilities != nil {
		if se := limitCapabilities(cfg.Capabilities); se != nil {
			return se
		}
	}
	if se := setCredentials(cfg); se != nil {
		return se
	}
	// A non-root container never gains privileges through execve: with a
	// bind of the user's own /etc/pam.d over the host's (or the host's su
	// bound into the user's root), setuid su would make it root on the host.
	if cfg.UID != 0 {
		if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
			return NewStartError("prctl(no_new_privs)", err)
		}
	}
	// Nothing of ours may leak into the command: the sync socket closes
	// when execve succeeds, which is how the parent learns it did.
	if err := unix.CloseRange(3, ^uint(0), unix.CLOSE_RANGE_CLOEXEC); err != nil {
		return NewStartError("close_range", err)
	}
	if cfg.InitFD > 0 {
		return execInit(cfg)
	}
	return execvpe(cfg.Argv, cfg.Env)
}

// joinMountNS moves this thread (the one that will exec) into the mount
// namespace open at fd, and into a private copy of it when the stage was
// meant to have a new mount namespace.
func joinMountNS(fd string, copyNS bool) *StartError {
	n, err := strconv.Atoi(fd)
	if err != nil || n < 3 {
		return stageError(unix.EINVAL, "setns(mnt)", "Bad mount namespace fd "+strconv.Quote(fd))
	}
	defer unix.Close(n)
	// setns(mnt) needs a thread that shares its fs_struct with no other.
	if err := unix.Unshare(unix.CLONE_FS); err != nil {
		return NewStartError("unshare(CLONE_FS)", err)
	}
	if err := unix.Setns(n, unix.CLONE_NEWNS); err != nil {
		return NewStartError("setns(mnt)", err)
	}
	if copyNS {
		if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
			return NewStartError("unshare(CLONE_NEWNS)", err)
		}
	}
	return nil
}

func writeFile(name, data string) error {
	f, err := os.OpenFile(name, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, err = f.WriteString(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// setGroupsThread sets the supplementary groups of the calling thread only
// (the raw syscall; glibc and Go's syscall.Setgroups change every thread).
func setGroupsThread(groups []int) error {
	gids := make([]uint32, len(groups))
	for i, g := range groups {
		gids[i] = uint32(g)
	}
	var p unsafe.Pointer
	if len(gids) > 0 {
		p = unsafe.Pointer(&gids[0])
	}
	_, _, e := unix.RawSyscall(unix.SYS_SETGROUPS, uintptr(len(gids)), uintptr(p), 0)
	if e != 0 {
		return e
	}
	return nil
}

// asUser runs fn with the container's supplementary groups and file-system
// uid/gid on this (locked) thread, so files are opened and directories
// entered with the container's rights, not root's. It is a no-op for uid 0.
func asUser(cfg *Config, fn func() *StartError) *StartError {
	if cfg.UID == 0 {
		return fn()
	}
	if err := setGroupsThread(cfg.Groups); err != nil {
		return NewStartError("setgroups", err)
	}
	unix.Setfsgid(cfg.GID)
	unix.Setfsuid(cfg.UID)
	se := fn()
	unix.Setfsuid(0)
	unix.Setfsgid(0)
	return se
}

func setupStdio(cfg *Config) *StartError {
	std := []struct {
		path  string
		fd    int
		flags int
	}{
		{cfg.StdinPath, 0, unix.O_RDONLY},
		{cfg.StdoutPath, 1, unix.O_WRONLY | unix.O_CREAT | unix.O_APPEND},
		{cfg.StderrPath, 2, unix.O_WRONLY | unix.O_CREAT | unix.O_APPEND},
	}
	for _, s := range std {
		if s.path == "" {
			continue
		}
		p := s.path
		if !path.IsAbs(p) && cfg.Cwd != "" {
			p = path.Join(cfg.Cwd, p)
		}
		fd, err := unix.Open(p, s.flags|unix.O_CLOEXEC|unix.O_NOCTTY, 0o660)
		if err != nil {
			return NewStartError("open("+s.path+")", err)
		}
		if fd == s.fd {
			_, err = unix.FcntlInt(uintptr(fd), unix.F_SETFD, 0)
		} else {
			err = unix.Dup3(fd, s.fd, 0)
			unix.Close(fd)
		}
		if err != nil {
			return NewStartError("dup("+s.path+")", err)
		}
	}
	if cfg.Cwd != "" {
		if err := unix.Chdir(cfg.Cwd); err != nil {
			return NewStartError("chdir("+cfg.Cwd+")", err)
		}
	}
	return nil
}

// limitCapabilities drops every capability not in keep from the bounding
// set (and from the inheritable and ambient sets) of this thread.
func limitCapabilities(keep []int) *StartError {
	var mask uint64
	for _, c := range keep {
		if c >= 0 && c < 64 {
			mask |= 1 << uint(c)
		}
	}
	for c := 0; c < 64; c++ {
		if _, err := unix.PrctlRetInt(unix.PR_CAPBSET_READ, uintptr(c), 0, 0, 0); err != nil {
			break // past the last capability the kernel knows
		}
		if mask&(1<<uint(c)) != 0 {
			continue
		}
		if err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(c), 0, 0, 0); err != nil {
			return NewStartError("capbset_drop("+CapabilityName(c)+")", err)
		}
	}
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return NewStartError("capget", err)
	}
	data[0].Inheritable &= uint32(mask)
	data[1].Inheritable &= uint32(mask >> 32)
	if err := unix.Capset(&hdr, &data[0]); err != nil {
		return NewStartError("capset", err)
	}
	if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0); err != nil && err != unix.EINVAL {
		return NewStartError("cap_ambient_clear_all", err)
	}
	return nil
}

// setCredentials switches this thread, the one that calls execve, to the
// container's groups, gid and uid. The raw syscalls change only this
// thread; the others vanish at execve.
func setCredentials(cfg *Config) *StartError {
	if err := setGroupsThread(cfg.Groups); err != nil {
		return NewStartError("setgroups", err)
	}
	g := uintptr(cfg.GID)
	if _, _, e := unix.RawSyscall(unix.SYS_SETRESGID, g, g, g); e != 0 {
		return NewStartError("setgid("+strconv.Itoa(cfg.GID)+")", e)
	}
	u := uintptr(cfg.UID)
	if _, _, e := unix.RawSyscall(unix.SYS_SETRESUID, u, u, u); e != 0 {
		return NewStartError("setuid("+strconv.Itoa(cfg.UID)+")", e)
	}
	return nil
}

// lookupEnv returns the value of the first key=value in env.
func lookupEnv(env []string, key string) (string, bool) {
	for _, kv := range env {
		if k, v, ok := strings.Cut(kv, "="); ok && k == key {
			return v, true
		}
	}
	return "", false
}

// execvpe has the semantics of glibc's execvpe: a name with a '/' is run
// as is, otherwise it is searched in PATH (from env, or a default);
// EACCES on one candidate does not stop the search; a file the kernel
// cannot execute (ENOEXEC) is run by /bin/sh. It returns only on failure.
func execvpe(argv, env []string) *StartError {
	if len(argv) == 0 || argv[0] == "" {
		return stageError(unix.ENOENT, "execvpe()", "Command is empty")
	}
	op := "execvpe(" + argv[0] + ")"
	try := func(file string) error {
		err := syscall.Exec(file, argv, env)
		if err == syscall.ENOEXEC {
			sh := append([]string{"/bin/sh", file}, argv[1:]...)
			if err2 := syscall.Exec("/bin/sh", sh, env); err2 != nil {
				return err
			}
		}
		return err
	}
	if strings.Contains(argv[0], "/") {
		return NewStartError(op, try(argv[0]))
	}
	p, ok := lookupEnv(env, "PATH")
	if !ok {
		p = defaultPath
	}
	sawEACCES := false
	for _, dir := range strings.Split(p, ":") {
		if dir == "" {
			dir = "."
		}
		err := try(dir + "/" + argv[0])
		switch err {
		case syscall.EACCES:
			sawEACCES = true
		case syscall.ENOENT, syscall.ENOTDIR, syscall.ESTALE, syscall.ENODEV, syscall.ETIMEDOUT, syscall.ENAMETOOLONG:
		default:
			return NewStartError(op, err)
		}
	}
	if sawEACCES {
		return NewStartError(op, syscall.EACCES)
	}
	return NewStartError(op, syscall.ENOENT)
}

// execInit runs the porto-init binary open at cfg.InitFD with cfg.Argv as
// its argv (["porto-init"] when empty): ["porto-init"] holds the
// namespaces, ["porto-init", "--", CMD...] runs CMD under it.
func execInit(cfg *Config) *StartError {
	argv := cfg.Argv
	if len(argv) == 0 {
		argv = []string{"porto-init"}
	}
	op := "execveat(porto-init)"
	// Prefer syscall.Exec through /proc: it also restores the soft
	// RLIMIT_NOFILE that the Go runtime raised in this stage.
	viaProc := "/proc/self/fd/" + strconv.Itoa(cfg.InitFD)
	if _, err := os.Stat(viaProc); err == nil {
		err := syscall.Exec(viaProc, argv, cfg.Env)
		if err != syscall.ENOENT {
			return NewStartError(op, err)
		}
	}
	argvp, err := syscall.SlicePtrFromStrings(argv)
	if err != nil {
		return NewStartError(op, err)
	}
	envp, err := syscall.SlicePtrFromStrings(cfg.Env)
	if err != nil {
		return NewStartError(op, err)
	}
	empty := [1]byte{}
	_, _, e := unix.RawSyscall6(unix.SYS_EXECVEAT, uintptr(cfg.InitFD), uintptr(unsafe.Pointer(&empty[0])),
		uintptr(unsafe.Pointer(&argvp[0])), uintptr(unsafe.Pointer(&envp[0])), unix.AT_EMPTY_PATH, 0)
	return NewStartError(op, e)
}
