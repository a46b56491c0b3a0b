// Command portod is the porto daemon. By default it runs the supervisor
// master, which starts "portod __worker" to serve D-Bus; container processes
// are the master's children. "portod __isolate" is the hidden setup stage of
// a container's first process.
package main

import (
	"fmt"
	"os"

	"github.com/porto-dev/porto/isolation"
)

func main() {
	tuneMemory(os.Args)
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case isolation.StageArg:
			isolation.RunStage() // never returns
		case workerArg:
			os.Exit(runWorker(os.Args[2:]))
		}
	}
	os.Exit(runMaster(os.Args[1:]))
}

func fatalf(format string, args ...any) int {
	fmt.Fprintf(os.Stderr, "portod: "+format+"\n", args...)
	return 1
}
