// Command portobench measures porto side by side with its floors in one
// run and prints the figures as markdown (see docs/performance.md, which
// quotes them, and `sudo make bench`, which runs this). It needs root: it
// starts a private dbus-daemon and bin/portod of its own (package bench)
// and tears them down, containers and cgroups included.
//
//	portobench [-suites lifecycle,get,scale,sandbox] [-n 200] [-scale 1000,3000] [-pprof DIR] [-bin-b DIR] [-out FILE]
//
// Suites: lifecycle (create, set command, start, wait, destroy of `true`
// through the Go client over Varlink and D-Bus and through portoctl,
// against `unshare --pid --fork --mount-proc true`), get (get state
// latency and throughput with 1 and 8 clients against an empty D-Bus call
// through the same dbus-daemon), scale (1000 and 3000 running `sleep 1000`:
// start cost per 100, list, get-all, RSS, CPU, destroy), sandbox
// (systemd-run --scope and porto with the systemd driver inside
// tests/sandbox), hold (one env for probing by hand). -bin-b runs a second
// build beside the first (lifecycle, scale): before/after figures.
package main
