package service

import (
	"os"
	"syscall"

	"github.com/porto-dev/porto/isolation"
	"github.com/porto-dev/porto/units"
)

// Spawner creates container processes and reports their exits. The
// production Spawner is the supervisor (isolation/supervise): a small master
// process that is the parent of every container, so exit statuses survive a
// crash of the process that serves D-Bus.
type Spawner interface {
	// Spawn starts the isolation stage with files as its fds 0, 1, 2, 3
	// (stdin, stdout, stderr, the child end of the sync socket) and returns
	// its pid in the daemon's pid namespace.
	Spawn(spec isolation.LaunchSpec, files []*os.File) (pid int, err error)
	// Exits delivers the exit of every direct child of the supervisor. Each
	// must be acknowledged with Ack once it has been recorded durably; until
	// then the zombie is kept, and it is delivered again after a restart.
	Exits() <-chan isolation.Exit
	Ack(pid int) error
	// SupervisorPid is the pid that container processes are children of.
	SupervisorPid() int
}

// Cgroups owns the cgroups of containers, addressed by container name
// ("a/b"). Implementations: units.V1, units.V2 (cgroupfs) and the systemd
// driver. Every method is safe for concurrent use on different names.
type Cgroups interface {
	// Create makes the container's cgroups; its parent's exist already.
	// It is idempotent.
	Create(name string) error
	// Attach moves pid (and its threads) into the container's cgroups.
	Attach(name string, pid int) error
	// Procs lists every pid in the container's cgroups, subtree included.
	Procs(name string) ([]int, error)
	// Kill signals every process in the subtree, frozen first so none can
	// fork away, then thawed.
	Kill(name string, sig syscall.Signal) error
	Freeze(name string) error
	Thaw(name string) error
	Frozen(name string) (bool, error)
	// Apply sets limits; a limit the kernel cannot apply is an *api.Error
	// NotSupported naming it.
	Apply(name string, l units.Limits) error
	Stats(name string) (units.Stats, error)
	// OOMKills is Stats(name).OOMKills, read alone (a container's death
	// asks only for it).
	OOMKills(name string) (uint64, error)
	// Remove deletes the container's cgroups (they must be empty; children
	// are removed first). A missing cgroup is not an error.
	Remove(name string) error
	Exists(name string) bool
}
