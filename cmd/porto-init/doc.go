// Command porto-init is porto's own tiny pid 1 for containers with a pid
// namespace where there is no user command to be pid 1 (a meta container
// with isolate=true), or where one is wrapped (virt_mode=os, --wait).
//
// Usage:
//
//	porto-init                 hold the namespaces: reap every child
//	                           forever; exit 0 on SIGTERM, SIGINT, SIGQUIT
//	porto-init -- CMD ARGS...  run CMD as a child, forward SIGTERM, SIGINT
//	                           and SIGQUIT to it, reap orphans, and exit
//	                           with CMD's status when it exits
//	porto-init --wait [--] CMD ARGS...  the same as "--"
//
// When the target is killed by a signal, porto-init re-raises that signal
// on itself with its default action; as the init of a pid namespace it
// cannot be killed by its own signal, so it then exits with 128+signal.
//
// As pid 1 it first makes the runtime create the threads it needs and
// waits until their number settles, then writes 1 to
// /proc/sys/kernel/ns_last_pid (best effort), so its first child, or the
// first process porto starts in its namespace, is pid 2: the isolation
// stage moved the cursor near pid_max before executing it, so its runtime
// threads took pids up there. It then closes the descriptor named by
// $PORTO_INIT_READY_FD (the stage's sync socket: the start is complete
// only then) and removes that variable from the environment CMD gets.
//
// It contains no portod code and imports only the standard library and
// golang.org/x/sys (deps_test.go checks this); it builds with
// CGO_ENABLED=0. The isolation stage executes it by fd (Config.InitFD).
package main
