package main

import (
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

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

	// Executed by fd, our comm is the fd number: name ourselves.
	name := []byte("porto-init\x00")
	_ = unix.Prctl(unix.PR_SET_NAME, uintptr(unsafe.Pointer(&name[0])), 0, 0, 0)
	// Orphans of our subtree come to us even when we are not pid 1.
	_ = unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)

	target := 0 // the child whose exit ends us; 0: hold forever
	if len(args) > 0 {
		path, err := exec.LookPath(args[0])
		if err != nil {
			fmt.Fprintf(os.Stderr, "porto-init: %v\n", err)
			os.Exit(127)
		}
		p, err := os.StartProcess(path, args, &os.ProcAttr{Files: []*os.File{os.Stdin, os.Stdout, os.Stderr}})
		if err != nil {
			fmt.Fprintf(os.Stderr, "porto-init: %v\n", err)
			os.Exit(127)
		}
		target = p.Pid
		_ = p.Release() // reaped below with wait4
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

func usage() {
	fmt.Fprintln(os.Stderr, "usage: porto-init [-- CMD ARGS... | --wait [--] CMD ARGS...]")
	os.Exit(2)
}
