package main

import (
	"os"
	"runtime/debug"

	"github.com/porto-dev/porto/isolation"
)

// GC targets of the daemon's two processes, unless the administrator set
// GOGC in the environment (GOMEMLIMIT, if set, applies as usual: we set no
// limit).
//
// Go's heap goal is the live heap times (1 + GOGC/100), and at least
// 4 MB x GOGC/100, and the runtime returns the pages above the goal only
// slowly: that slack is most of a portod process's RSS beyond its
// binary. The master keeps almost nothing per container (its live heap
// is about 1 MB with thousands of containers) but allocates on every
// spawn, so with the default its RSS climbs to the 4 MB minimum goal
// plus slack; the worker keeps about 1.5 kB per container. Measured with
// bench's scale suite (1000 running containers, 3 runs each, load 8-11):
// master + worker RSS per container 5.7-6.2 kB with the defaults, 3.4-3.9
// kB with these; with 3000 containers 4.3 -> 2.6 kB. No cost seen in
// the interleaved lifecycle A/B (medians within noise). GOGC=25 for the
// worker, GOGC=10 for the master, or a soft memory limit for the master
// gained nothing more.
const (
	masterGCPercent = 25
	workerGCPercent = 50
)

// tuneMemory sets the GC target of this process from its role in args
// (os.Args): the master, the worker (or the master serving itself with
// --no-supervisor), or the isolation stage (left alone: it execs at
// once).
func tuneMemory(args []string) {
	if len(args) > 1 && args[1] == isolation.StageArg {
		return
	}
	if os.Getenv("GOGC") != "" {
		return
	}
	percent := masterGCPercent
	for i, a := range args {
		if (i == 1 && a == workerArg) || a == "--no-supervisor" || a == "--no-supervisor=true" {
			percent = workerGCPercent
		}
	}
	debug.SetGCPercent(percent)
}
