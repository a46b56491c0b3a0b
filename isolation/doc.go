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
//	err = isolation.WaitExec(parent)               // nil, or a *StartError
//
// The sync socket carries one frame from the parent (a 4-byte big-endian
// length and the JSON Config) and, on failure only, one JSON StartError
// from the stage, which then exits with status 127. The stage's end is
// close-on-exec, so EOF without data means execve succeeded; closing the
// parent end without Release makes the stage exit 0 having done nothing.
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
// A LaunchSpec with JoinPid forks the stage from a dedicated locked
// thread (never the main thread) that first enters the listed ipc, uts,
// net and pid namespaces of that pid; the thread is discarded afterwards.
// The stage enters the mount namespace itself, right after joining
// CgroupProcs (an fd passed by Launch), so every other path in Config is
// resolved inside it. Container processes created this way land in a
// running container's namespaces; a pid namespace cannot be both joined
// and nested (CLONE_NEWPID), but a joined mount namespace can be copied
// (CLONE_NEWNS, as for an isolated child sharing its parent's root).
package isolation
