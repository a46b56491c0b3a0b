package isolation

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"
)

// StageArg is the hidden subcommand of the daemon binary that runs the
// isolation stage: "portod __isolate". Its main (and the TestMain of any
// test binary that launches containers) calls RunStage when os.Args[1] is
// StageArg.
const StageArg = "__isolate"

// joinArg, followed by "KIND:FD", tells the stage to enter the namespace
// of that kind ("ipc", "uts", "net", "pid", "mnt") open at fd FD; one
// argument per namespace, in joinOrder.
const joinArg = "join="

// unshareArg, followed by a decimal clone-flags value, tells the stage to
// unshare those namespaces after joining (the new namespaces of the
// LaunchSpec whose kinds it joins: a new namespace is then a child or a
// copy of the joined one).
const unshareArg = "unshare="

// CloneFlags returns the clone flags for cfg's new namespaces and records
// in cfg whether the stage gets a new mount namespace (cfg.NewMountNS):
//
//	Isolate                             CLONE_NEWPID|CLONE_NEWNS|CLONE_NEWIPC
//	Root (not "" or "/"), Binds,
//	RootReadonly, VirtMode "os"         CLONE_NEWNS
//	Hostname                            CLONE_NEWUTS
//
// The service puts the result in LaunchSpec.Cloneflags and sends the
// modified cfg with Release.
func CloneFlags(cfg *Config) uintptr {
	var f uintptr
	if cfg.Isolate {
		f |= unix.CLONE_NEWPID | unix.CLONE_NEWNS | unix.CLONE_NEWIPC
	}
	if hasRoot(cfg) || len(cfg.Binds) > 0 || cfg.RootReadonly || cfg.VirtMode == "os" {
		f |= unix.CLONE_NEWNS
	}
	if cfg.Hostname != "" {
		f |= unix.CLONE_NEWUTS
	}
	cfg.NewMountNS = f&unix.CLONE_NEWNS != 0
	return f
}

func hasRoot(cfg *Config) bool { return cfg.Root != "" && cfg.Root != "/" }

// joinOrder is the order namespaces are entered in; mnt comes last
// because it changes what paths mean.
var joinOrder = []string{"ipc", "uts", "net", "pid", "mnt"}

// nsFlag is the CLONE_NEW* flag of each namespace kind.
var nsFlag = map[string]uintptr{
	"ipc": unix.CLONE_NEWIPC, "uts": unix.CLONE_NEWUTS, "net": unix.CLONE_NEWNET,
	"pid": unix.CLONE_NEWPID, "mnt": unix.CLONE_NEWNS,
}

// Launch starts "self __isolate" with files as its descriptors (0 stdin,
// 1 stdout, 2 stderr, 3 the child end of the sync socket, then any extra
// ones such as Config.InitFD), spec.Cloneflags for new namespaces, a new
// session, and no parent-death signal: containers outlive their spawner.
// The caller becomes the parent of the stage and must reap it. Launch
// closes none of the caller's files and changes no namespace of the
// calling process or of any of its threads.
//
// With spec.JoinPid > 0, Launch opens the namespaces spec.JoinNS of that
// pid and passes them to the stage (appended after files, named by
// "join=KIND:FD" arguments after StageArg); the stage itself is created
// in the caller's namespaces, minus the new namespaces of the joined kinds
// (passed as "unshare=FLAGS"). The stage enters them on its own locked
// thread (see RunStage), so no thread of the stage's Go runtime lives in a
// joined pid namespace. When "pid" is joined, the stage forks the command
// into it and exits; WaitExec then returns the command's pid. Joining
// "pid" with CLONE_NEWPID nests a new pid namespace in the joined one
// (through a relay process, see nest); WaitExec then returns the pid of
// the nested namespace's init, which is the command.
func Launch(self string, spec LaunchSpec, files []*os.File) (pid int, err error) {
	if spec.JoinPid < 0 {
		return 0, fmt.Errorf("launch: bad join pid %d", spec.JoinPid)
	}
	if spec.JoinPid == 0 {
		return start(self, spec.Cloneflags, files)
	}
	var joined uintptr
	for _, ns := range spec.JoinNS {
		if !slices.Contains(joinOrder, ns) {
			return 0, fmt.Errorf("join namespace %q: unknown kind", ns)
		}
		joined |= nsFlag[ns]
	}
	var nsFiles []*os.File
	defer func() {
		for _, f := range nsFiles {
			f.Close()
		}
	}()
	files = slices.Clip(files)
	var args []string
	for _, ns := range joinOrder {
		if !slices.Contains(spec.JoinNS, ns) {
			continue
		}
		f, err := os.Open("/proc/" + strconv.Itoa(spec.JoinPid) + "/ns/" + ns)
		if err != nil {
			return 0, fmt.Errorf("join namespaces of %d: %w", spec.JoinPid, err)
		}
		nsFiles = append(nsFiles, f)
		files = append(files, f)
		args = append(args, joinArg+ns+":"+strconv.Itoa(len(files)-1))
	}
	if u := spec.Cloneflags & joined; u != 0 {
		args = append(args, unshareArg+strconv.FormatUint(uint64(u), 10))
	}
	return start(self, spec.Cloneflags&^joined, files, args...)
}

func start(self string, cloneflags uintptr, files []*os.File, extraArgs ...string) (int, error) {
	if len(files) < 4 {
		return 0, errors.New("launch: need stdin, stdout, stderr and the sync socket")
	}
	p, err := os.StartProcess(self, append([]string{self, StageArg}, extraArgs...), &os.ProcAttr{
		Files: files,
		Sys: &syscall.SysProcAttr{
			Cloneflags: cloneflags,
			Setsid:     true,
		},
	})
	if err != nil {
		return 0, fmt.Errorf("start isolation stage: %w", err)
	}
	pid := p.Pid
	// The caller reaps the stage with wait(2); drop the handle (pidfd).
	_ = p.Release()
	return pid, nil
}
