// Package units owns porto's cgroups and its systemd units: the cgroupfs
// drivers for cgroup v1 and v2, and the systemd driver that delegates each
// first-level container a transient scope (Delegate=yes).
//
// The service package reaches it only through the service.Cgroups
// interface; units never imports service or dbusapi. It imports api (the
// leaf) for the error classes.
//
// # Drivers
//
// NewCgroupfs detects the layout under /sys/fs/cgroup (Detect) and returns
// *V1 or *V2. A host with per-controller v1 hierarchies and an empty
// cgroup2 at /sys/fs/cgroup/unified (these machines) is v1.
//
// V1: container "a/b" is <mount>/<controller>/<Root>/a/b in each of
// freezer, memory, cpu, cpuacct, pids (required), devices, blkio, cpuset
// (used when mounted; co-mounted hierarchies are used once). porto creates
// <Root> itself and marks it with the extended attribute
// trusted.porto.owner; an existing unmarked directory of that name is
// refused, and porto writes nothing outside <Root>. A name component that
// could collide with a control file (one containing '.', or tasks,
// notify_on_release, release_agent) is percent-escaped in the directory
// name (EscapeComponent), reversibly.
//
// V2: container "a/b" is <mount>/<Root>/a/b on the unified hierarchy, and
// its own processes live in the leaf <...>/a/b/.self, because v2 forbids a
// cgroup that distributes domain controllers to children from holding
// processes itself, while a porto container may have both. porto enables
// +cpu +memory +pids +io (+cpuset) in every cgroup it creates, and, if
// missing, in the mount root's cgroup.subtree_control: that write is the
// only one outside porto's subtree.
//
// Systemd (NewSystemd, cgroup v1 only): each first-level container "a" is
// a transient scope porto-<a escaped as systemd-escape>.scope in
// <Root>.slice, started by StartTransientUnit (PIDs = the container's
// first attached process, Delegate=yes) when that process is attached;
// porto waits for the job with a timeout (ResourceNotAvailable if it fails
// or never reports), resets a failed scope and retries once on UnitExists,
// and redials the bus once when the connection was lost. Nested containers
// are porto's own sub-cgroups inside the scope. In the hierarchies systemd
// does not delegate on v1 (freezer, cpuacct, cpuset) porto creates its own
// marked cgroups at the scope's path. porto never writes an attribute of a
// cgroup systemd created: a first-level container's limits are unit
// properties (MemoryLimit, CPUQuotaPerSecUSec, CPUShares, TasksMax,
// BlockIO*Bandwidth via /dev/block/M:m); devices, cpu_policy idle/rt and
// memory_guarantee are NotSupported there. A nested container created, or
// limited, before its first-level scope exists (a meta parent without
// processes) gets its delegated cgroups and limits when the scope starts.
// systemd removes a scope's cgroups as soon as it is empty, so the counters
// of a dead first-level container may be gone before porto reads them. Its
// OOMs are kept: the driver subscribes to the scope's memory.oom_control
// through cgroup.event_control (an eventfd, signalled on every OOM and once
// more on removal, told apart by a second eventfd that only the removal
// signals) when the scope starts, or when a restarted porto first looks at
// it, and Stats of a dead first-level container reports what it counted
// (OOM events, at least one when there was an OOM kill; not an exact kill
// count once the cgroup is gone).
// Not covered: OOMs of nested containers' own memory cgroups after the
// whole scope is gone (their own Stats are read while the scope lives).
//
// # Traffic
//
// net_cls is one more v1 hierarchy (optional): Limits.NetClassID goes to
// net_cls.classid of the container's cgroup. The systemd driver keeps it
// as porto's own at the scope's path (systemd has no net_cls). cgroup v2
// has no net_cls, so the v2 driver keeps the classids in a v1 net_cls
// hierarchy mounted beside the unified one (Options.NetCls; EnsureNetCls
// finds or mounts it), proven only against a directory tree.
//
// Network (network.go) drives traffic control through the TC interface
// (*netsched.Sched, package units/netsched): per managed device, class
// 1:id per container under its parent container's class, and the leaf
// 1:id+1 for its own processes, whose classid its cgroup carries.
//
// # Limits
//
// Apply writes every field of Limits (zero resets to the kernel default),
// skipping fields unchanged since its last write to a cgroup it created.
// All limits are checked before anything is written; a limit the kernel
// cannot apply is an *api.Error NotSupported naming each such limit and
// the reason, and bad values are InvalidValue. On v1 this kernel refuses
// memory_guarantee (no memory.low_limit_in_bytes; memory.soft_limit_in_bytes
// is a reclaim priority, not a guarantee), recharge_on_pgfault and
// io_policy=batch: a weight must act, and blkio.bfq.weight (this kernel
// has no blkio.weight) acts only on disks whose active scheduler is bfq,
// while vda here runs mq-deadline. On v2, io.weight counts only where
// io.cost.qos enables iocost, else io.bfq.weight on a bfq disk. cpu_policy
// idle uses cpu.idle; batch and rt set SCHED_BATCH / SCHED_RR 10 on the
// container's own tasks (and on each task Attach moves in later); rt also
// reserves 100 ms/s of real-time runtime along the cgroup chain when the
// kernel has RT group scheduling. cpu_guarantee maps to cpu.shares
// 1024+1024·cores (v2: cpu.weight 100+100·cores). io_limit throttles reads
// and writes of every whole disk in /sys/block (not loop, ram, zram).
// The hierarchical and overcommit checks of the reference (a child's limit
// against its parent's, the sum of guarantees against RAM) need the
// container tree and are the service's.
//
// # What has been proven where
//
// V1 is tested on this machine's real hierarchies (kernel 6.18, gated by
// PORTO_ROOT_TESTS=1 and root): nested and escaped names, attach, recursive
// procs, freeze to FROZEN (tasks in D state) and thaw, kill of forked and
// double-forked processes and of a paused nested container, busy removal,
// every Stats counter (io via O_DIRECT), a real OOM kill counted in
// OOMKills, every limit read back from the kernel, cpu_limit and io_limit
// measured in behaviour, and that nothing is left behind. Attach to 8
// hierarchies costs about 0.2 ms back to back; the first write after an
// idle spell pays the kernel's RCU grace period (median about 8 ms here).
//
// net_cls (v1) is tested on this machine's real hierarchies: found or
// mounted, created, classid written and read back, a process attached,
// removed. Classification and shaping are tested in units/netsched and,
// end to end through portod, in tests/network_test.go (in a network
// namespace of the test's own).
//
// The systemd driver is tested against real systemd 252, dbus and polkit in
// the sandbox of docs/sandbox.md (PORTO_SYSTEMD_TESTS=1): scope with
// Delegate=yes in the slice, the first process in every hierarchy at the
// scope's path, limits set at start and changed through
// SetUnitProperties and read back from the kernel, pending limits of a
// nested container, freeze, kill, removal and reuse of the scope name.
// Starting a scope with its first process takes a median of 3.4 ms there.
// Its failure paths (UnitExists, failed job, job timeout, lost bus) are
// tested against a fake systemd only (systemd_test.go).
//
// V2 has been proven on a real cgroup v2 host with its controllers:
// NOTHING. Two kinds of evidence exist:
//   - On the real cgroup2 these hosts mount at /sys/fs/cgroup/unified,
//     which has no cpu, memory, pids or io controller (they are bound to
//     v1), TestV2RealUnified runs what is cgroup core on v2: the .self
//     leaf layout, Attach, recursive Procs, cgroup.freeze with
//     cgroup.events, Thaw, Kill by freeze/signal/thaw and by cgroup.kill
//     (a paused container and a daemonized grandchild included),
//     cpu.stat's usage_usec, and removal.
//   - Everything else runs only against a directory tree seeded with v2's
//     file names and formats (v2_test.go), where the tests play the
//     kernel's part. That proves paths, file names, value formats,
//     parsing, the order of writes and the error classification; it does
//     not prove the kernel's behaviour with controllers: enabling
//     +cpu +memory +pids +io in subtree_control, the no-internal-process
//     rule with a container that has both processes and children, every
//     limit (memory.max, memory.low, cpu.max, cpu.weight, cpu.idle,
//     pids.max, io.max, io.weight), the memory, pids and io counters,
//     memory.peak, OOM counting in memory.events, and the cpu_policy
//     scheduling calls in v2's cpu controller.
//
// Devices on v2 need a BPF_CGROUP_DEVICE program; porto does not load one,
// so device rules are NotSupported there.
package units
