package isolation

import (
	"os"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// relayArg, as the first argument after StageArg, makes the stage a relay
// (see nest): it forks the real stage with CLONE_PARENT|CLONE_NEWPID and
// the rest of its arguments, and exits.
const relayArg = "relay"

// A pid namespace nested in a joined one must be created by a process
// that is an active member of the joined one; setns(pid) only sets the
// namespace of a thread's future children. So a stage asked to join a pid
// namespace and nest a new one in it (Launch's join=pid and unshare with
// CLONE_NEWPID) does no setup itself:
//
//	stage (host level) --setns(pid), fork--> relay (in the joined namespace)
//	relay --clone(CLONE_PARENT|CLONE_NEWPID)--> real stage (pid 1, nested)
//
// CLONE_PARENT makes the real stage a child of the first stage (the
// relay's parent), so when the first stage exits the kernel reparents it
// to the nearest subreaper at the first stage's level: the supervisor.
// The real stage joins the other namespaces itself, gets the config from
// the first stage over a new sync socket and sets up and executes the
// command as any isolated stage does. The first stage relays its result:
// the real stage's pid (the command's, since it executes it), or its
// StartError. The relay is a Go program too: its runtime threads take a
// few pids of the joined namespace, for a moment.
func nest(cfg *Config, joins []nsJoin, unshareFlags uintptr) (int, *StartError) {
	for _, p := range cfg.CgroupProcs {
		if err := writeFile(p, "0"); err != nil {
			return 0, NewStartError("attach to cgroup "+p, err)
		}
	}
	// The real stage's descriptors keep their numbers: 0-2, the config's
	// InitFD and the namespaces it joins; 3 becomes the new sync socket.
	n := 4
	if cfg.InitFD >= n {
		n = cfg.InitFD + 1
	}
	args := []string{"/proc/self/exe", StageArg, relayArg}
	var pidFd int
	for _, j := range joins {
		if j.kind == "pid" {
			pidFd = j.fd
			continue
		}
		if j.fd >= n {
			n = j.fd + 1
		}
		args = append(args, joinArg+j.kind+":"+strconv.Itoa(j.fd))
	}
	if u := unshareFlags &^ unix.CLONE_NEWPID; u != 0 {
		args = append(args, unshareArg+strconv.FormatUint(uint64(u), 10))
	}
	if err := unix.Setns(pidFd, unix.CLONE_NEWPID); err != nil {
		return 0, NewStartError("setns(pid)", err)
	}
	unix.Close(pidFd)
	inner, innerChild, err := SyncPair()
	if err != nil {
		return 0, NewStartError("socketpair", err)
	}
	defer inner.Close()
	files := make([]uintptr, n)
	for i := range files {
		files[i] = ^uintptr(0)
	}
	files[0], files[1], files[2] = 0, 1, 2
	files[3] = innerChild.Fd()
	if cfg.InitFD > 3 {
		files[cfg.InitFD] = uintptr(cfg.InitFD)
	}
	for _, j := range joins {
		if j.kind != "pid" {
			files[j.fd] = uintptr(j.fd)
		}
	}
	relay, err := syscall.ForkExec("/proc/self/exe", args, &syscall.ProcAttr{Env: os.Environ(), Files: files})
	innerChild.Close()
	if err != nil {
		return 0, NewStartError("start the nesting relay", err)
	}
	if err := Release(inner, cfg); err != nil {
		return 0, NewStartError("relay config", err)
	}
	var ws unix.WaitStatus
	for {
		_, err = unix.Wait4(relay, &ws, 0, nil)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		return 0, NewStartError("wait for the nesting relay", err)
	}
	stage := 0
	if ws.Exited() && ws.ExitStatus() == 0 {
		b, err := os.ReadFile("/proc/self/task/" + strconv.Itoa(unix.Gettid()) + "/children")
		if err != nil {
			return 0, NewStartError("find the nested stage", err)
		}
		if f := strings.Fields(string(b)); len(f) == 1 {
			stage, _ = strconv.Atoi(f[0])
		}
		if stage <= 0 {
			return 0, stageError(unix.ESRCH, "find the nested stage", "No nested stage among "+strconv.Quote(string(b)))
		}
	}
	cmd, werr := WaitExec(inner)
	if werr == nil && stage == 0 {
		werr = stageError(unix.ECHILD, "nesting relay", "The nesting relay failed silently")
	}
	if werr != nil {
		if stage > 0 {
			for {
				if _, err := unix.Wait4(stage, &ws, 0, nil); err != unix.EINTR {
					break
				}
			}
		}
		return 0, NewStartError("nested stage", werr)
	}
	if cmd != 0 {
		return 0, stageError(unix.EPROTO, "nested stage", "The nested stage forked")
	}
	return stage, nil
}

// runRelay is the relay of nest, in the joined pid namespace: it forks the
// real stage with CLONE_PARENT|CLONE_NEWPID, passing its descriptors and
// arguments on, and exits; a failure goes to fd 3 as a StartError.
func runRelay(args []string) {
	sync := os.NewFile(3, "porto-sync")
	var files []uintptr
	last := 0
	for i := 0; i < 1024; i++ {
		if _, err := unix.FcntlInt(uintptr(i), unix.F_GETFD, 0); err != nil {
			files = append(files, ^uintptr(0))
			continue
		}
		files = append(files, uintptr(i))
		last = i
	}
	files = files[:last+1]
	_, err := syscall.ForkExec("/proc/self/exe", append([]string{"/proc/self/exe", StageArg}, args...), &syscall.ProcAttr{
		Env:   os.Environ(),
		Files: files,
		Sys:   &syscall.SysProcAttr{Cloneflags: unix.CLONE_PARENT | unix.CLONE_NEWPID, Setsid: true},
	})
	if err != nil {
		fail(sync, NewStartError("clone(CLONE_NEWPID)", err))
	}
	os.Exit(0)
}
