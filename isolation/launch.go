package isolation

import (
	"errors"
	"fmt"
	"os"
	"runtime"
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

// mntnsArg, followed by an fd number, tells the stage to enter the mount
// namespace open at that fd.
const mntnsArg = "mntns="

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

// Launch starts "self __isolate" with files as its descriptors (0 stdin,
// 1 stdout, 2 stderr, 3 the child end of the sync socket, then any extra
// ones such as Config.InitFD), spec.Cloneflags for new namespaces, a new
// session, and no parent-death signal: containers outlive their spawner.
// The caller becomes the parent of the stage and must reap it. Launch
// closes none of the caller's files.
//
// With spec.JoinPid > 0, the stage is forked from a dedicated, locked OS
// thread that first enters the namespaces spec.JoinNS of that pid (in the
// order ipc, uts, net, pid); the thread is thrown away afterwards (never
// the main thread: its namespaces stand for the whole process). The mount
// namespace ("mnt") is entered by the stage itself, first thing after it
// has the config, through an fd Launch passes it (appended after files, its
// number given as "mntns=N" after StageArg); so self is always executed
// from the host's filesystem, and with CLONE_NEWNS the stage then makes
// itself a private copy of the joined mount namespace. Joining "pid"
// cannot be combined with CLONE_NEWPID: the kernel nests a new pid
// namespace only in the creator's active one, which setns does not change.
func Launch(self string, spec LaunchSpec, files []*os.File) (pid int, err error) {
	if spec.JoinPid < 0 {
		return 0, fmt.Errorf("launch: bad join pid %d", spec.JoinPid)
	}
	if spec.JoinPid == 0 {
		return start(self, spec, files)
	}
	type result struct {
		pid int
		err error
	}
	ch := make(chan result, 1)
	join := func(ch chan<- result) {
		// Never unlocked: the thread's namespaces are changed, so the
		// runtime must discard it when this goroutine ends.
		runtime.LockOSThread()
		pid, err := launchJoined(self, spec, files)
		ch <- result{pid, err}
	}
	go func() {
		runtime.LockOSThread()
		if unix.Gettid() != unix.Getpid() {
			join(ch)
			return
		}
		// This is the main thread, which Go never discards (it wedges it
		// instead) and whose namespaces are what /proc/<pid>/{ns,mountinfo,
		// root} show for the whole process. Keep it busy here so the join
		// runs on another thread.
		inner := make(chan result, 1)
		go join(inner)
		r := <-inner
		runtime.UnlockOSThread()
		ch <- r
	}()
	r := <-ch
	return r.pid, r.err
}

func launchJoined(self string, spec LaunchSpec, files []*os.File) (int, error) {
	for _, ns := range spec.JoinNS {
		if !slices.Contains(joinOrder, ns) {
			return 0, fmt.Errorf("join namespace %q: unknown kind", ns)
		}
	}
	if slices.Contains(spec.JoinNS, "pid") && spec.Cloneflags&unix.CLONE_NEWPID != 0 {
		// The kernel creates a new pid namespace only as a child of the
		// creator's own (active) one, which setns does not change.
		return 0, errors.New("launch: cannot join a pid namespace and create a nested one")
	}
	nsTypes := map[string]int{
		"ipc": unix.CLONE_NEWIPC, "uts": unix.CLONE_NEWUTS, "net": unix.CLONE_NEWNET,
		"pid": unix.CLONE_NEWPID, "mnt": unix.CLONE_NEWNS,
	}
	// Open everything first.
	var nsFiles []*os.File
	defer func() {
		for _, f := range nsFiles {
			f.Close()
		}
	}()
	var kinds []string
	var extraArgs []string
	for _, ns := range joinOrder {
		if !slices.Contains(spec.JoinNS, ns) {
			continue
		}
		f, err := os.Open("/proc/" + strconv.Itoa(spec.JoinPid) + "/ns/" + ns)
		if err != nil {
			return 0, fmt.Errorf("join namespaces of %d: %w", spec.JoinPid, err)
		}
		nsFiles = append(nsFiles, f)
		if ns == "mnt" {
			// The stage enters the mount namespace itself, so that self is
			// still executed from the host's filesystem.
			files = append(slices.Clip(files), f)
			extraArgs = append(extraArgs, mntnsArg+strconv.Itoa(len(files)-1))
			continue
		}
		kinds = append(kinds, ns)
	}
	for i, kind := range kinds {
		if err := unix.Setns(int(nsFiles[i].Fd()), nsTypes[kind]); err != nil {
			return 0, fmt.Errorf("setns(%s of %d): %w", kind, spec.JoinPid, err)
		}
	}
	return start(self, spec, files, extraArgs...)
}

func start(self string, spec LaunchSpec, files []*os.File, extraArgs ...string) (int, error) {
	if len(files) < 4 {
		return 0, errors.New("launch: need stdin, stdout, stderr and the sync socket")
	}
	p, err := os.StartProcess(self, append([]string{self, StageArg}, extraArgs...), &os.ProcAttr{
		Files: files,
		Sys: &syscall.SysProcAttr{
			Cloneflags: spec.Cloneflags,
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
