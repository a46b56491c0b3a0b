// Package recovery benchmarks how fast portod recovers its containers after
// a crash of the worker (the process that serves org.porto.Manager): issue
// 8 acceptance 3 and issue 9 item 4.
//
// TestRecoveryTime starts a private dbus-daemon and bin/portod, starts N
// running containers (default 1000, "sleep 1000", isolate=true), then per
// iteration SIGKILLs the worker and measures the time from the kill to
//
//   - first: the first answered call (Version, polled every 0.2 ms);
//   - all: one Get of state and root_pid over every container answering
//     "running" with the old root_pid for each (polled back to back);
//
// and, from the new worker's log, how long its restore took. Before each
// kill it waits until the worker has run 10 s, so the master restarts it at
// once (a worker dying sooner is a crash loop and is restarted with a
// back-off). It logs every run and the medians.
//
// It needs root, cgroups and namespaces and takes a minute or two, so it
// runs only as root with PORTO_ROOT_TESTS=1 and PORTO_BENCH=1:
//
//	make build
//	sudo PORTO_ROOT_TESTS=1 PORTO_BENCH=1 go test ./bench/recovery -run RecoveryTime -count=1 -timeout 30m -v
//
// PORTO_BIN names the directory of the binaries (default ../../bin),
// PORTO_BENCH_CONTAINERS the number of containers (1000), PORTO_BENCH_RUNS
// the number of kills (5). PORTO_PPROF is passed on to portod.
package recovery
