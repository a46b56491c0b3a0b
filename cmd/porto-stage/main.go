package main

import (
	"fmt"
	"os"

	"github.com/porto-dev/porto/isolation"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == isolation.StageArg {
		isolation.RunStage() // never returns
	}
	fmt.Fprintf(os.Stderr, "porto-stage: the isolation stage of portod; it is started by portod only (%s ...)\n", isolation.StageArg)
	os.Exit(2)
}
