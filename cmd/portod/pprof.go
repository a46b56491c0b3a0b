package main

import (
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"syscall"
)

// pprofEnv is a hidden knob for bench/: PORTO_PPROF=<dir> makes the worker
// toggle a CPU profile on SIGUSR2. The first signal starts
// <dir>/worker-<pid>-<n>.cpu.pprof, the next stops it and writes
// <dir>/worker-<pid>-<n>.heap.pprof (written last: its presence says both
// are complete). runtime/pprof rather than net/http/pprof: every container
// start execs this binary ("portod __isolate"), and net/http would make
// that exec bigger and slower for a debugging aid.
const pprofEnv = "PORTO_PPROF"

func startProfiling(log *slog.Logger) {
	dir := os.Getenv(pprofEnv)
	if dir == "" {
		return
	}
	// A heap sample every 4 kB (default 512 kB): per-container costs are
	// a few kB.
	runtime.MemProfileRate = 4096
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGUSR2)
	go func() {
		var f *os.File
		n := 0
		for range sig {
			if f == nil {
				n++
				name := filepath.Join(dir, fmt.Sprintf("worker-%d-%d", os.Getpid(), n))
				var err error
				if f, err = os.Create(name + ".cpu.pprof"); err == nil {
					if err = pprof.StartCPUProfile(f); err != nil {
						f.Close()
						f = nil
					}
				}
				log.Info("pprof: cpu profile", "file", name+".cpu.pprof", "err", err)
				continue
			}
			pprof.StopCPUProfile()
			f.Close()
			f = nil
			name := filepath.Join(dir, fmt.Sprintf("worker-%d-%d.heap.pprof", os.Getpid(), n))
			if h, err := os.Create(name + ".tmp"); err == nil {
				runtime.GC() // the heap profile is as of the last GC
				pprof.WriteHeapProfile(h)
				h.Close()
				os.Rename(name+".tmp", name)
			}
			log.Info("pprof: profile written", "heap", name)
		}
	}()
}
