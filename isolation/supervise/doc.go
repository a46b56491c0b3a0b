// Package supervise keeps container processes and their exit statuses safe
// from crashes of the process that serves D-Bus. It owns the portod master
// (RunMaster), the worker's client of it (Dial, *Client) and a master-less
// stand-in (NewLocal, *Local). *Client and *Local both implement
// service.Spawner.
//
// It imports only the standard library, golang.org/x/sys and isolation.
// cmd/portod imports it (RunMaster in the default mode, Dial in the
// "__worker" mode, NewLocal with --no-supervisor); service sees it only
// through its Spawner interface.
//
// # Processes
//
//	portod                      master: tiny, PR_SET_CHILD_SUBREAPER, rarely changes
//	├── portod __worker --supervisor-fd 3 [WorkerArgs]   serves D-Bus, owns the tree
//	├── portod __isolate        container (launched by the master for the worker)
//	└── ...                     orphans of containers, reparented to the master
//
// Every container process is a child of the master, so when the worker
// dies its containers keep running and their exits wait, as zombies, for
// the next worker. The master:
//
//   - starts the worker with its end of a fresh AF_UNIX SOCK_SEQPACKET
//     socket pair as fd 3 (stdin /dev/null, stdout and stderr inherited);
//   - launches container processes on request with isolation.Launch (each
//     request in its own goroutine: a launch may block in setns), then
//     closes its copies of the fds it was sent;
//   - on SIGCHLD (and every second) finds exited children without reaping
//     them, reports {pid, status} to the worker, and reaps a zombie only
//     when the worker acknowledges that pid;
//   - when the worker exits: reaps it, logs its status, starts a new one
//     at once if the dead one ran 10 s or more, else after 100 ms,
//     doubling up to 5 s for quick successive deaths (a crash loop), and
//     sends the new worker every exit not yet acknowledged. A worker that
//     closed its socket but keeps running is killed after 10 s. The
//     environment variable PORTO_SUPERVISOR_RESTART_RESET (a duration)
//     overrides the 10 s, for tests;
//   - on SIGTERM or SIGINT: sends SIGTERM to the worker, SIGKILL after
//     10 s, and returns nil once the worker is reaped. Containers are never
//     signalled; unacknowledged zombies are then reaped by init;
//   - on SIGHUP: upgrades in place. It stops reading requests, waits (up to
//     10 s) for launches in flight, stops its writer, clears FD_CLOEXEC on
//     its end of the socket and re-executes Self with its original
//     arguments plus --takeover=<token>. The pid does not change, so every
//     child and zombie stays its child. The token (base64url JSON) carries
//     the fd number, the worker's pid, the datagrams not yet written and the
//     ids of spawns still in flight (answered with an error by the
//     successor). The successor serves the same worker and re-reports every
//     zombie it finds. To move the worker to the new binary too, send it
//     SIGTERM afterwards: the master restarts it from Self.
//
// The master never blocks on the worker: what it sends goes through an
// unbounded queue drained by a writer goroutine, and a dead worker only
// means the exits are sent again to the next one.
//
// # Finding every zombie
//
// waitid(P_ALL, WNOWAIT) keeps returning the same zombie, so the master
// (and Local) asks each candidate in turn with waitid(P_PID, pid,
// WEXITED|WNOHANG|WNOWAIT). The candidates are the pids it launched plus
// every pid in /proc/self/task/*/children (which lists zombies too, and
// orphans reparented to the subreaper). The raw wait(2) status is rebuilt
// from si_code/si_status: exit code << 8, the signal number, | 0x80 when a
// core was dumped.
//
// Asking every child on every SIGCHLD made each exit O(N). So every child
// seen alive (launched, the worker, an orphan found by a scan) has a pidfd
// in an epoll set (pidwatch.go; the pidfds live in a private file table of
// one locked thread, so that forks do not copy them), and a SIGCHLD asks
// only the children whose pidfd became readable. The full scan above runs
// at start (an upgraded master rebuilds its pidfds there), every ten
// ticks, on a tick (every second; every 0.2 s for 5 s after a SIGCHLD)
// that finds some zombie, and on a
// SIGCHLD that no readable pidfd explains while some zombie exists (an
// orphan not seen alive, a child of a launch in flight) or that came with
// several exits. Without pidfds (old kernels) every SIGCHLD scans in full,
// as before.
//
// A launch's reply always precedes the exit of the pid it returns: a
// zombie whose pid is not yet known is held back until every launch that
// was in flight when it was seen has completed.
//
// # Wire protocol
//
// One JSON object per SOCK_SEQPACKET datagram (at most 64 KiB), with the
// field "op". Fields that are zero are omitted. File descriptors travel
// as one SCM_RIGHTS control message on the datagram that needs them (at
// most 16).
//
// Worker to master:
//
//	{"op":"spawn","id":N,"spec":<isolation.LaunchSpec>,"nfiles":K,"nil":[i...]}
//	    + SCM_RIGHTS with K-len(nil) fds, filling in order the slots
//	      0..K-1 that are not listed in "nil". N > 0 is chosen by the worker
//	      and unique among its requests in flight.
//	{"op":"ack","pid":P}
//	    The exit of P is recorded durably: the master may reap it.
//	    Acknowledging a pid that is not a reported zombie does nothing.
//	{"op":"warm","flags":F,"n":N}
//	    Start N warm isolation stages with clone flags F (pool.go, warm.go).
//
// Master to worker:
//
//	{"op":"spawned","id":N,"pid":P}
//	{"op":"spawned","id":N,"error":"text","errno":E}
//	    The reply to spawn N. E is the errno of the failed system call, or
//	    absent.
//	{"op":"exit","pid":P,"status":S}
//	    Child P exited; S is its raw wait(2) status (absent means 0). Sent
//	    for every child of the master: launched containers, orphans, and
//	    again after a worker restart or a master upgrade until acknowledged.
//	{"op":"warmed","pid":P,"flags":F} + SCM_RIGHTS with the stage's socket
//	{"op":"warmed","flags":F,"error":"text"}
//	    One warm stage asked for with warm, or why there is none. The stage
//	    is the master's child; its exit is reported like any other.
//
// A worker must therefore acknowledge every exit it receives, including
// pids it does not know (after recording what it needs), and must accept
// the same exit more than once.
//
// # Worker side
//
// cmd/portod's "__worker" mode parses --supervisor-fd (always 3) and calls
// Dial with it. The Client matches replies to concurrent Spawn calls by
// id; a lost connection makes every pending and later Spawn and Ack fail
// with an error wrapping ErrLost, and closes Exits. The master never goes
// away on its own, so a worker whose Exits is closed should exit.
//
// An exit can reach Exits before the Spawn that returned its pid has
// returned to its caller (the reply and the exit are read in order, but
// are consumed by different goroutines). The consumer of Exits must not
// treat an unknown pid as foreign right away: either serialise Spawn plus
// recording the pid against the exit handler, or keep unknown exits
// (unacknowledged) until the spawner has recorded its pid.
//
// # Local
//
// NewLocal runs the same machinery inside the current process: it becomes
// a subreaper, launches directly, and reports and (after Ack) reaps its
// own children. Exits do not survive a crash of that process, and since
// it owns every child, the process must not wait for children otherwise.
package supervise
