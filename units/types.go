package units

import (
	"log/slog"
	"syscall"
)

// Limits are the resource limits porto applies to a container's cgroups.
// A zero value means "not set / unlimited" unless said otherwise.
//
// Apply sets every field each time: a zero field resets that limit to the
// kernel's default. A driver remembers what it last wrote for a cgroup it
// created and writes only the fields that changed.
type Limits struct {
	MemoryLimit       uint64 // bytes
	MemoryGuarantee   uint64 // bytes
	RechargeOnPgfault bool
	CPULimit          float64 // cores (1.0 = one core); 0 = unlimited
	CPUGuarantee      float64 // cores
	CPUPolicy         string  // normal|rt|idle|batch ("" = normal)
	IOLimit           uint64  // bytes/s, applied to reads and writes of every whole disk
	IOPolicy          string  // normal|batch ("" = normal)
	PidsLimit         uint64  // 0 = unlimited
	// NetClassID is the net_cls classid of the container's own sockets
	// (tc handle major<<16|minor; 0 = unclassified). Written where the
	// net_cls hierarchy is mounted, ignored where it is not.
	NetClassID uint32
	// Devices are device-cgroup rules ("c 1:3 rwm"); nil keeps the default.
	// A non-nil empty slice denies every device.
	Devices []string
}

// Stats are a container's resource counters, summed over its subtree.
type Stats struct {
	CPUUsage     uint64 // ns
	MemoryUsage  uint64 // bytes
	MaxRSS       uint64 // bytes (peak memory usage of the cgroup)
	MinorFaults  uint64
	MajorFaults  uint64
	IORead       uint64 // bytes
	IOWrite      uint64 // bytes
	ProcessCount uint64 // processes (thread groups)
	ThreadCount  uint64 // tasks, as counted by the pids controller
	OOMKills     uint64
}

// Version is a cgroup hierarchy layout.
type Version int

const (
	// CgroupV1 is one hierarchy per controller (a cgroup2 mounted beside
	// them at <mount>/unified, as on hybrid hosts, does not change that).
	CgroupV1 Version = 1
	// CgroupV2 is the unified hierarchy mounted at the mount root.
	CgroupV2 Version = 2
)

func (v Version) String() string {
	switch v {
	case CgroupV1:
		return "cgroup-v1"
	case CgroupV2:
		return "cgroup-v2"
	}
	return "cgroup-unknown"
}

// Driver is what every driver of this package offers: the method set of
// service.Cgroups plus its Version. *V1 and *V2 implement it.
type Driver interface {
	Create(name string) error
	Attach(name string, pid int) error
	Procs(name string) ([]int, error)
	Kill(name string, sig syscall.Signal) error
	Freeze(name string) error
	Thaw(name string) error
	Frozen(name string) (bool, error)
	Apply(name string, l Limits) error
	Stats(name string) (Stats, error)
	OOMKills(name string) (uint64, error)
	Remove(name string) error
	Exists(name string) bool

	Version() Version
}

// Options configure a cgroupfs driver.
type Options struct {
	// MountRoot is where cgroups are mounted; default /sys/fs/cgroup.
	MountRoot string
	// Root is the name of porto's own subtree in every hierarchy; default
	// "porto". It is created by the driver and marked with the extended
	// attribute trusted.porto.owner; an existing unmarked directory of that
	// name is refused.
	Root string
	// Log receives the driver's few log lines; default slog.Default().
	Log *slog.Logger
	// BlockRoot lists block devices for io_limit; default /sys/block.
	BlockRoot string
	// NetCls, for the v2 driver, is a mounted cgroup v1 net_cls hierarchy
	// to keep containers' classids in (cgroup v2 has no net_cls; see
	// MountNetCls). "" leaves their traffic unclassified. The v1 drivers
	// use <MountRoot>/net_cls when it is mounted and ignore this.
	NetCls string
}
