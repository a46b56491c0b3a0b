//go:build !linux

package ctl

import (
	"errors"
	"io"
	"os"
)

func isTerminal(*os.File) bool        { return false }
func isTerminalWriter(io.Writer) bool { return false }
func rawMode(*os.File) (func(), error) {
	return nil, errors.New("not supported")
}
