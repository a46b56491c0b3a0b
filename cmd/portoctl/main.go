// Command portoctl is the command-line client of portod. All of it lives in
// package ctl; see "portoctl --help".
package main

import (
	"os"

	"github.com/porto-dev/porto/ctl"
)

func main() {
	os.Exit(ctl.Run(os.Args[1:], os.Stdout, os.Stderr))
}
