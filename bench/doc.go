// Package bench measures porto side by side with its floors, in one run:
// the lifecycle of `true` (Go client over D-Bus and Varlink, portoctl)
// against `unshare --pid --fork --mount-proc true`, get-state latency and
// throughput against an empty D-Bus call through the same dbus-daemon,
// 1000 and 3000 running containers (start cost per 100-container bucket,
// list, get-all, daemon RSS per container, destroy-all), and
// `systemd-run --scope true` in the systemd sandbox of tests/sandbox.
//
// The package is a small harness of its own (Env: a private dbus-daemon
// plus bin/portod under a private cgroup root and state dir, torn down
// completely by Close) and statistics helpers (Sample, Interleave). The
// runner is bench/cmd/portobench, run by `sudo make bench`; the results
// and how to read them are in docs/performance.md. Everything here needs
// root and real cgroups, so the tests of this package skip unless
// PORTO_ROOT_TESTS=1 and euid 0, like the integration tier.
//
// The recovery benchmark (bench/recovery*) is separate.
package bench
