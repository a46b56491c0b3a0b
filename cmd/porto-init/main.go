package main

import (
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"strconv"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// init names the process: executed by fd, our comm is the fd number.
// PR_SET_NAME names the calling thread, and only during init is that
// surely the main thread, whose comm is the process's.
func init() {
	name := []byte("porto-init\x00")
	_ = unix.Prctl(unix.PR_SET_NAME, uintptr(unsafe.Pointer(&name[0])), 0, 0, 0)
}

func main() {
	// First thing: a signal that comes before we handle it would end us
	// with the wrong status (or, as a namespace's init, be lost).
	sigs := make(chan os.Signal, 16)
	signal.Notify(sigs, unix.SIGCHLD, unix.SIGTERM, unix.SIGINT, unix.SIGQUIT)
	args := os.Args[1:]
	switch {
	case len(args) == 0:
	case args[0] == "--" || args[0] == "--wait":
		args = args[1:]
		if len(args) > 0 && args[0] == "--" {
			args = args[1:]
		}
		if len(args) == 0 {
			usage()
		}
	default:
		usage()
	}

	// Orphans of our subtree come to us even when we are not pid 1.
	_ = unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
	// As the init of a pid namespace, make the next pid 2: the isolation
	// stage moved the namespace's pid cursor near pid_max before executing
	// us, so that our runtime threads took pids up there. Best effort
	// (needs CAP_SYS_ADMIN); without it our children follow our threads.
	if os.Getpid() == 1 {
		settleThreads()
		_ = os.WriteFile("/proc/sys/kernel/ns_last_pid", []byte("1"), 0)
	}
	// Not root: whatever capability we got for that (ambient
	// CAP_CHECKPOINT_RESTORE) goes now, from every thread.
	if os.Getuid() != 0 {
		if err := dropCapabilities(); err != nil {
			fmt.Fprintf(os.Stderr, "porto-init: drop capabilities: %v\n", err)
			os.Exit(127)
		}
	}
	// Ready (signals handled, pids reset): close the isolation stage's
	// sync socket, which it left open for us; the service's wait for the
	// start ends there.
	if fd, err := strconv.Atoi(os.Getenv(readyFDEnv)); err == nil && fd > 2 {
		_ = unix.Close(fd)
	}
	_ = os.Unsetenv(readyFDEnv)

	target := 0 // the child whose exit ends us; 0: hold forever
	if len(args) > 0 {
		path, err := exec.LookPath(args[0])
		if err != nil {
			fmt.Fprintf(os.Stderr, "porto-init: %v\n", err)
			os.Exit(127)
		}
		// syscall.ForkExec, not os.StartProcess: the latter first forks a
		// probe of pidfd support, which would take pid 2.
		pid, err := syscall.ForkExec(path, args, &syscall.ProcAttr{Env: os.Environ(), Files: []uintptr{0, 1, 2}})
		if err != nil {
			fmt.Fprintf(os.Stderr, "porto-init: %v\n", err)
			os.Exit(127)
		}
		target = pid // reaped below with wait4
	}

	for {
		reap(target)
		switch sig := <-sigs; sig {
		case unix.SIGCHLD:
		default:
			if target == 0 {
				os.Exit(0)
			}
			_ = unix.Kill(target, sig.(syscall.Signal))
		}
	}
}

// reap collects every exited child; when target is among them it exits
// with target's status.
func reap(target int) {
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
		if err == unix.EINTR {
			continue
		}
		if pid <= 0 || err != nil {
			return
		}
		if pid == target {
			exitLike(ws)
		}
	}
}

// exitLike ends this process the way the target ended.
func exitLike(ws unix.WaitStatus) {
	if ws.Exited() {
		os.Exit(ws.ExitStatus())
	}
	if !ws.Signaled() {
		os.Exit(1)
	}
	sig := ws.Signal()
	signal.Reset(sig)
	// Restore the default action behind the runtime's back and raise the
	// signal on this very thread. As the init of a pid namespace we are
	// immune to it and fall through to 128+sig.
	runtime.LockOSThread()
	var act [4]uintptr // struct sigaction: handler SIG_DFL, no flags, empty mask
	unix.RawSyscall6(unix.SYS_RT_SIGACTION, uintptr(sig), uintptr(unsafe.Pointer(&act[0])), 0, 8, 0, 0)
	var set unix.Sigset_t
	set.Val[(int(sig)-1)/64] |= 1 << ((uint(sig) - 1) % 64)
	unix.PthreadSigmask(unix.SIG_UNBLOCK, &set, nil)
	unix.Tgkill(unix.Getpid(), unix.Gettid(), sig)
	os.Exit(128 + int(sig))
}

// dropCapabilities empties the ambient, permitted, effective and
// inheritable capability sets of every thread.
func dropCapabilities() error {
	if _, _, e := syscall.AllThreadsSyscall(unix.SYS_PRCTL, unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0); e != 0 && e != unix.EINVAL {
		return e
	}
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if _, _, e := syscall.AllThreadsSyscall(unix.SYS_CAPSET, uintptr(unsafe.Pointer(&hdr)), uintptr(unsafe.Pointer(&data[0])), 0); e != 0 {
		return e
	}
	return nil
}

// readyFDEnv names the descriptor porto-init closes once it is ready (the
// isolation stage's sync socket); it is not passed on to CMD.
const readyFDEnv = "PORTO_INIT_READY_FD"

// settleThreads creates the runtime threads we need and waits (at most
// 200 ms) until their number is stable for 10 ms, so none is created, and
// no pid of our namespace taken, after the pid cursor is reset.
func settleThreads() {
	warmThreads()
	count := func() int {
		ents, _ := os.ReadDir("/proc/self/task")
		return len(ents)
	}
	prev, stable := count(), 0
	for i := 0; i < 100 && stable < 5; i++ {
		time.Sleep(2 * time.Millisecond)
		if n := count(); n == prev {
			stable++
		} else {
			prev, stable = n, 0
		}
	}
}

// warmThreads makes the runtime create now the threads it may need later
// (locked goroutines each hold a thread; unlocked, those threads wait idle
// for reuse), so that no thread is created, and no pid taken, after the
// pid cursor is reset.
func warmThreads() {
	n := runtime.GOMAXPROCS(0) + 2
	var ready, done sync.WaitGroup
	release := make(chan struct{})
	ready.Add(n)
	done.Add(n)
	for i := 0; i < n; i++ {
		go func() {
			defer done.Done()
			runtime.LockOSThread()
			ready.Done()
			<-release
			runtime.UnlockOSThread()
		}()
	}
	ready.Wait()
	close(release)
	done.Wait()
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: porto-init [-- CMD ARGS... | --wait [--] CMD ARGS...]")
	os.Exit(2)
}
