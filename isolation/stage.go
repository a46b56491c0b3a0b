package isolation

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"runtime"
	"slices"
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
// socket first), joins Config.CgroupProcs, enters the namespaces Launch
// passed it, sets up mounts, pivot_root, hostname, rlimits, stdio, cwd,
// credentials and capabilities, and execs the command (or the porto-init
// binary at Config.InitFD, with Argv as its argv). Any failure is reported
// as a *StartError on fd 3, and the stage exits with status 127.
//
// Everything happens on one locked OS thread: namespaces joined with setns
// (after unshare(CLONE_FS)), the mount namespace, cwd and root, the
// capability bounding set and the credentials are that thread's own. When
// a pid namespace was joined, setns only changed the namespace that
// thread's children are created in, so instead of executing the command
// the stage forks it from that thread (it is created directly in the
// joined pid namespace, with none of the stage's runtime threads there),
// reports its pid on fd 3 and exits 0; the command is then reparented to
// the nearest child subreaper above the stage (the supervisor).
func RunStage() {
	// Credentials and the final execve are per-thread: keep everything on
	// this one.
	runtime.LockOSThread()
	if len(os.Args) > 2 && os.Args[2] == poolArg {
		// A warm stage: wait for the real files, then carry on as a stage
		// launched with them.
		receiveHand()
		os.Args = append(os.Args[:2:2], os.Args[3:]...)
	}
	if len(os.Args) > 2 && os.Args[2] == relayArg {
		runRelay(os.Args[3:])
	}
	sync := os.NewFile(3, "porto-sync")
	cfg, err := readConfig(sync)
	if err != nil {
		if errors.Is(err, io.EOF) {
			os.Exit(0)
		}
		fail(sync, NewStartError("read config", err))
	}
	pid, se := runSetup(cfg, os.Args[2:])
	if se != nil {
		fail(sync, se)
	}
	// Only a forked command gets here: report it and leave it running.
	if err := writeReply(sync, &stageReply{Pid: pid}); err != nil {
		// The parent is gone or broken: the command must not run on
		// unaccounted for.
		unix.Kill(pid, unix.SIGKILL)
		os.Exit(stageExitFailure)
	}
	os.Exit(0)
}

func fail(sync *os.File, se *StartError) {
	writeError(sync, se)
	os.Exit(stageExitFailure)
}

func runSetup(cfg *Config, args []string) (pid int, se *StartError) {
	defer func() {
		if r := recover(); r != nil {
			se = stageError(unix.EINVAL, "isolation stage", fmt.Sprintf("Internal error: %v", r))
		}
	}()
	return setup(cfg, args)
}

// nsJoin is one namespace to enter: its kind and the fd Launch passed.
type nsJoin struct {
	kind string
	fd   int
}

// parseArgs reads the join= and unshare= arguments of Launch.
func parseArgs(args []string) (joins []nsJoin, unshare uintptr, se *StartError) {
	for _, a := range args {
		if v, ok := strings.CutPrefix(a, joinArg); ok {
			kind, fd, _ := strings.Cut(v, ":")
			n, err := strconv.Atoi(fd)
			if _, known := nsFlag[kind]; !known || err != nil || n < 3 {
				return nil, 0, stageError(unix.EINVAL, "setns", "Bad namespace argument "+strconv.Quote(a))
			}
			joins = append(joins, nsJoin{kind, n})
		} else if v, ok := strings.CutPrefix(a, unshareArg); ok {
			f, err := strconv.ParseUint(v, 10, 64)
			if err != nil {
				return nil, 0, stageError(unix.EINVAL, "unshare", "Bad unshare argument "+strconv.Quote(a))
			}
			unshare = uintptr(f)
		}
	}
	return joins, unshare, nil
}

// setup returns the pid of the forked command (pid namespace joined), or
// only on failure.
func setup(cfg *Config, args []string) (int, *StartError) {
	joins, unshareFlags, se := parseArgs(args)
	if se != nil {
		return 0, se
	}
	if unshareFlags&unix.CLONE_NEWPID != 0 {
		return nest(cfg, joins, unshareFlags)
	}
	for _, p := range cfg.CgroupProcs {
		if err := writeFile(p, "0"); err != nil {
			return 0, NewStartError("attach to cgroup "+p, err)
		}
	}
	// The init of a new pid namespace: its runtime threads took the pids
	// after 1; the cursor is moved past them before the exec (see
	// pidCursor). Opened now, while /proc is the host's.
	var cursor *os.File
	if cfg.Isolate && unix.Getpid() == 1 {
		cursor, _ = os.OpenFile("/proc/sys/kernel/ns_last_pid", os.O_WRONLY, 0)
		if cursor != nil {
			defer cursor.Close()
		}
	}
	fork := false
	if len(joins) > 0 {
		if se := joinNamespaces(joins, unshareFlags); se != nil {
			return 0, se
		}
		for _, j := range joins {
			fork = fork || j.kind == "pid"
		}
	}
	if se := setupMounts(cfg); se != nil {
		return 0, se
	}
	if cfg.Hostname != "" {
		if err := unix.Sethostname([]byte(cfg.Hostname)); err != nil {
			return 0, NewStartError("sethostname("+cfg.Hostname+")", err)
		}
	}
	for _, rl := range cfg.Rlimits {
		lim := syscall.Rlimit{Cur: rl.Soft, Max: rl.Hard}
		if err := syscall.Setrlimit(rl.Resource, &lim); err != nil {
			return 0, NewStartError("setrlimit("+RlimitName(rl.Resource)+")", err)
		}
	}
	if se := asUser(cfg, func() *StartError { return setupStdio(cfg) }); se != nil {
		return 0, se
	}
	if cfg.Capabilities != nil {
		if se := limitCapabilities(cfg.Capabilities); se != nil {
			return 0, se
		}
	}
	// porto-init can move the cursor back once its threads exist if it
	// has CAP_SYS_ADMIN (root) or CAP_CHECKPOINT_RESTORE, which a non-root
	// porto-init gets as an ambient capability (it drops it right after).
	initResets, grantCR := false, false
	if cursor != nil && cfg.InitFD > 0 {
		if cfg.UID == 0 {
			initResets = inBounding(capSysAdmin) || inBounding(capCheckpointRestore)
		} else if inBounding(capCheckpointRestore) {
			initResets = unix.Prctl(unix.PR_SET_KEEPCAPS, 1, 0, 0, 0) == nil
			grantCR = initResets
		}
	}
	if cursor != nil {
		setPidCursor(cursor, initResets)
	}
	if se := setCredentials(cfg); se != nil {
		return 0, se
	}
	if grantCR {
		if err := raiseAmbient(capCheckpointRestore); err != nil {
			return 0, NewStartError("cap_ambient_raise(CAP_CHECKPOINT_RESTORE)", err)
		}
	}
	// A non-root container never gains privileges through execve: with a
	// bind of the user's own /etc/pam.d over the host's (or the host's su
	// bound into the user's root), setuid su would make it root on the host.
	if cfg.UID != 0 {
		if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
			return 0, NewStartError("prctl(no_new_privs)", err)
		}
	}
	// Nothing of ours may leak into the command: the sync socket closes
	// when execve succeeds, which is how the parent learns it did.
	if err := unix.CloseRange(3, ^uint(0), unix.CLOSE_RANGE_CLOEXEC); err != nil {
		return 0, NewStartError("close_range", err)
	}
	if fork {
		return forkCommand(cfg)
	}
	if cfg.InitFD > 0 {
		return 0, execInit(cfg)
	}
	return 0, execvpe(cfg.Argv, cfg.Env, execRunner)
}

// joinNamespaces moves this thread (the one that will exec or fork the
// command) into the namespaces Launch passed, in joinOrder, then unshares
// the new namespaces of the joined kinds: a copy of the joined mount
// namespace, a new UTS namespace for a hostname, and so on.
func joinNamespaces(joins []nsJoin, unshareFlags uintptr) *StartError {
	// setns(mnt) needs a thread that shares its fs_struct with no other;
	// it also keeps this thread's root and cwd its own.
	if err := unix.Unshare(unix.CLONE_FS); err != nil {
		return NewStartError("unshare(CLONE_FS)", err)
	}
	for _, kind := range joinOrder {
		for _, j := range joins {
			if j.kind != kind {
				continue
			}
			err := unix.Setns(j.fd, int(nsFlag[kind]))
			unix.Close(j.fd)
			if err != nil {
				return NewStartError("setns("+kind+")", err)
			}
		}
	}
	if unshareFlags != 0 {
		if err := unix.Unshare(int(unshareFlags)); err != nil {
			return NewStartError("unshare("+strconv.FormatUint(uint64(unshareFlags), 16)+")", err)
		}
	}
	return nil
}

// setPidCursor makes the next pid of the new pid namespace (this stage is
// its init) come right after 1, although the stage's own runtime threads
// hold the pids after it until the exec: those are free again by the time
// the command forks. porto-init (Config.InitFD) is a Go program with
// runtime threads of its own: when it can move the cursor back to 1 once
// they exist (initResets), the cursor is moved near pid_max instead, so
// that they take high pids; otherwise its children follow its threads.
// Best effort: a failure only makes pids less pretty.
func setPidCursor(cursor *os.File, initResets bool) {
	next := 1
	if initResets {
		if b, err := os.ReadFile("/proc/sys/kernel/pid_max"); err == nil {
			if max, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && max > 4*initThreadPids {
				next = max - initThreadPids
			}
		}
	}
	_, _ = cursor.WriteString(strconv.Itoa(next))
}

// inBounding reports whether capability c is in this thread's bounding set.
func inBounding(c int) bool {
	v, err := unix.PrctlRetInt(unix.PR_CAPBSET_READ, uintptr(c), 0, 0, 0)
	return err == nil && v == 1
}

// raiseAmbient leaves this thread (after setresuid with PR_SET_KEEPCAPS)
// with capability c only, permitted, effective, inheritable and ambient,
// so that a non-root program it executes keeps c.
func raiseAmbient(c int) error {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	data[c/32].Permitted = 1 << uint(c%32)
	data[c/32].Effective = data[c/32].Permitted
	data[c/32].Inheritable = data[c/32].Permitted
	if err := unix.Capset(&hdr, &data[0]); err != nil {
		return err
	}
	return unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_RAISE, uintptr(c), 0, 0)
}

// initThreadPids is how many pids below pid_max porto-init's runtime
// threads may take.
const initThreadPids = 1024

const (
	capSysAdmin          = 21
	capCheckpointRestore = 40
)

// forkCommand creates the command as a child of this thread, so in the
// pid namespace it joined, and returns its pid (in the stage's own,
// host-level, pid namespace).
func forkCommand(cfg *Config) (int, *StartError) {
	var pid int
	run := func(file string, argv, env []string) error {
		var err error
		pid, err = syscall.ForkExec(file, argv, &syscall.ProcAttr{
			Env:   env,
			Files: []uintptr{0, 1, 2},
			Sys:   &syscall.SysProcAttr{Setsid: true},
		})
		return err
	}
	if cfg.InitFD > 0 {
		argv := cfg.Argv
		if len(argv) == 0 {
			argv = []string{"porto-init"}
		}
		if err := run("/proc/self/fd/"+strconv.Itoa(cfg.InitFD), argv, cfg.Env); err != nil {
			return 0, NewStartError("execveat(porto-init)", err)
		}
		return pid, nil
	}
	if se := execvpe(cfg.Argv, cfg.Env, forkRunner(run)); se != nil {
		return 0, se
	}
	return pid, nil
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

// runner runs one candidate file for execvpe: an exec (which returns only
// on failure) or a fork of the command. precheck makes execvpe look at a
// candidate before running it, because a failed fork-and-exec costs a pid
// in the container's pid namespace.
type runner struct {
	run      func(file string, argv, env []string) error
	precheck bool
}

var execRunner = runner{run: func(file string, argv, env []string) error {
	return syscall.Exec(file, argv, env)
}}

func forkRunner(run func(file string, argv, env []string) error) runner {
	return runner{run: run, precheck: true}
}

// execvpe has the semantics of glibc's execvpe: a name with a '/' is run
// as is, otherwise it is searched in PATH (from env, or a default);
// EACCES on one candidate does not stop the search; a file the kernel
// cannot execute (ENOEXEC) is run by /bin/sh. It returns nil only when r
// forked the command; otherwise only on failure.
func execvpe(argv, env []string, r runner) *StartError {
	if len(argv) == 0 || argv[0] == "" {
		return stageError(unix.ENOENT, "execvpe()", "Command is empty")
	}
	op := "execvpe(" + argv[0] + ")"
	try := func(file string) error {
		err := r.run(file, argv, env)
		if err == syscall.ENOEXEC {
			sh := append([]string{"/bin/sh", file}, argv[1:]...)
			if err2 := r.run("/bin/sh", sh, env); err2 != nil {
				return err
			}
			return nil
		}
		return err
	}
	if strings.Contains(argv[0], "/") {
		if err := try(argv[0]); err != nil {
			return NewStartError(op, err)
		}
		return nil
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
		file := dir + "/" + argv[0]
		var err error
		if r.precheck {
			err = executable(file)
		}
		if err == nil {
			err = try(file)
		}
		switch err {
		case nil:
			return nil
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

// executable fails the way execve most likely would on file: the error of
// finding it, EACCES for what is not a regular file or not executable by
// this thread's (real, here also effective) credentials.
func executable(file string) error {
	var st unix.Stat_t
	if err := unix.Stat(file, &st); err != nil {
		return err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return syscall.EACCES
	}
	return unix.Access(file, unix.X_OK)
}

// initReadyFDEnv tells porto-init which descriptor to close once it is
// ready (cmd/porto-init).
const initReadyFDEnv = "PORTO_INIT_READY_FD"

// execInit runs the porto-init binary open at cfg.InitFD with cfg.Argv as
// its argv (["porto-init"] when empty): ["porto-init"] holds the
// namespaces, ["porto-init", "--", CMD...] runs CMD under it.
func execInit(cfg *Config) *StartError {
	argv := cfg.Argv
	if len(argv) == 0 {
		argv = []string{"porto-init"}
	}
	op := "execveat(porto-init)"
	// porto-init inherits the sync socket and closes it once it is ready
	// (signals handled, pid cursor reset), which is when WaitExec returns.
	env := append(slices.Clip(cfg.Env), initReadyFDEnv+"=3")
	if _, err := unix.FcntlInt(3, unix.F_SETFD, 0); err != nil {
		return NewStartError(op, err)
	}
	// Prefer syscall.Exec through /proc: it also restores the soft
	// RLIMIT_NOFILE that the Go runtime raised in this stage.
	viaProc := "/proc/self/fd/" + strconv.Itoa(cfg.InitFD)
	if _, err := os.Stat(viaProc); err == nil {
		err := syscall.Exec(viaProc, argv, env)
		if err != syscall.ENOENT {
			return NewStartError(op, err)
		}
	}
	argvp, err := syscall.SlicePtrFromStrings(argv)
	if err != nil {
		return NewStartError(op, err)
	}
	envp, err := syscall.SlicePtrFromStrings(env)
	if err != nil {
		return NewStartError(op, err)
	}
	empty := [1]byte{}
	_, _, e := unix.RawSyscall6(unix.SYS_EXECVEAT, uintptr(cfg.InitFD), uintptr(unsafe.Pointer(&empty[0])),
		uintptr(unsafe.Pointer(&argvp[0])), uintptr(unsafe.Pointer(&envp[0])), unix.AT_EMPTY_PATH, 0)
	return NewStartError(op, e)
}
