// Package isolation owns how a container's first process comes to life:
// namespaces, mounts, pivot_root, hostname, rlimits, credentials and the
// exec of the command. Launch starts the hidden "__isolate" stage of the
// daemon binary with the right clone flags; RunStage is that stage; Config
// is the pure-data description of what it must set up, sent to it over the
// sync socket.
//
// It imports only the standard library and golang.org/x/sys. The service
// package imports it (Config and the parent side of the sync protocol);
// isolation never imports service, dbusapi or units.
//
// # Starting a container process
//
//	flags := isolation.CloneFlags(&cfg)           // also sets cfg.NewMountNS
//	parent, child, _ := isolation.SyncPair()
//	pid, err := isolation.Launch(self, isolation.LaunchSpec{Cloneflags: flags},
//		[]*os.File{stdin, stdout, stderr, child})   // in the supervisor
//	child.Close()                                  // every copy but the stage's
//	// place pid in the container's cgroups, then:
//	isolation.Release(parent, &cfg)                // the "go" signal
//	cmd, err := isolation.WaitExec(parent)         // 0 or the forked pid; or a *StartError
//
// The sync socket carries one frame from the parent (a 4-byte big-endian
// length and the JSON Config) and at most one JSON reply from the stage:
// a StartError (the stage then exits with status 127), or {"pid":N} when
// the stage forked the command into a joined pid namespace (the stage then
// exits 0; N is the command's pid in the caller's pid namespace). The
// stage's end is close-on-exec, so EOF without data means execve
// succeeded and the stage's pid is the command's. Closing the parent end
// without Release makes the stage exit 0 having done nothing. porto-init
// (InitFD) inherits the stage's end and closes it once it is ready.
//
// # The stage
//
// RunStage runs on one locked OS thread. In order it joins
// Config.CgroupProcs; makes mount propagation private (with a root) or
// slave (without), so nothing it mounts reaches the host; mounts a fresh
// /proc (Isolate); sets up the root (Root: a private bind of the
// directory, fresh /proc, read-only /sys, a minimal /dev with its own
// devpts, /run for VirtMode "os", the binds, /etc/hosts and
// /etc/resolv.conf for BindDNS, read-only for RootReadonly, then
// pivot_root and detach of the old root); sets the hostname and rlimits;
// opens the stdio paths and enters Cwd with the container's credentials
// (per-thread setfsuid/setfsgid and groups); drops the capability bounding
// set (Capabilities); switches groups, gid and uid; and execs Argv[0] with
// execvpe semantics (PATH from Config.Env), or the porto-init binary open
// at Config.InitFD with Argv as its argv (["porto-init"] holds the
// namespaces, ["porto-init", "--", CMD...] wraps CMD). Nothing of portod remains after the exec: in an isolated app
// container the command itself is pid 1.
//
// Mount targets inside the root are resolved component by component with
// openat2(RESOLVE_IN_ROOT|RESOLVE_NO_MAGICLINKS), following symlinks by
// hand relative to the root (a dangling one gets its target created inside
// the root), and new mounts are attached to the opened fds with the new
// mount API (open_tree, fsopen/fsmount, mount_setattr, move_mount), so no
// bind destination can resolve outside the root. Bind sources are host
// paths opened before the root changes; for a non-root container they
// must be readable (and writable, for rw) by its user.
//
// # Joining namespaces
//
// A LaunchSpec with JoinPid makes Launch open the listed namespaces of
// that pid and pass them to the stage, which it creates in the caller's
// own namespaces (Launch changes no namespace of the caller). Right after
// joining CgroupProcs, the stage's locked thread unshares CLONE_FS and
// enters them (ipc, uts, net, pid, mnt), then unshares the new namespaces
// the LaunchSpec asked for among those kinds (a copy of the joined mount
// namespace, a UTS namespace of its own for a hostname). Every path in
// Config is then resolved in the joined mount namespace.
//
// setns of a pid namespace only changes the namespace the thread's
// children are created in. So with "pid" joined, the stage does all of its
// setup on that thread and then, instead of executing the command, forks
// it from that thread (syscall.ForkExec, after a PATH search that looks
// before it forks, so a missing command costs no pid): the command is
// created directly in the container's pid namespace, where the stage's
// runtime threads never were, and gets the next free pid (2 next to a
// fresh init). The stage reports its pid and exits 0; the kernel
// reparents the command to the nearest child subreaper above the stage
// at the stage's pid-namespace level, the supervisor, which then gets its
// exit status.
//
// A new pid namespace nested in a joined one (join "pid" with
// CLONE_NEWPID) must be created by an active member of the joined one,
// which setns does not make the stage. So that stage forks a relay
// ("__isolate relay") into the joined namespace, which clones the real
// stage with CLONE_PARENT|CLONE_NEWPID and exits: the real stage is pid 1
// of the nested namespace and a child of the first stage, which hands it
// the config over a new sync socket, relays its result (its pid, or its
// StartError) and exits, so that it too is reparented to the supervisor.
//
// # Pids in a new pid namespace
//
// An isolated stage is pid 1 of its new pid namespace and its runtime
// threads take the pids after 1 until the exec. Before the exec the stage
// writes /proc/sys/kernel/ns_last_pid (root only): 1 for a command, so
// the next process is pid 2; for porto-init, whose own runtime threads
// live on, a value near pid_max, so that those threads take pids up
// there, and porto-init moves the cursor back to 1 once its threads exist
// and only then closes the sync socket.
package isolation
