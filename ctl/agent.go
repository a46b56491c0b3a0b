package ctl

import (
	"bufio"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"time"
)

// startPolkitAgent starts pkttyagent for this process, as systemctl does
// (systemd's polkit_agent_open): "pkttyagent --notify-fd 3 --fallback
// --process PID", then waits until the agent closes the notify fd, which
// it does once it is registered with polkitd, or at most 5 s. It does
// nothing when pkttyagent is not installed. The returned func stops it.
// Run uses it only when stdin is a terminal and the caller is not root.
func startPolkitAgent() func() {
	path, err := exec.LookPath("pkttyagent")
	if err != nil {
		return func() {}
	}
	r, w, err := os.Pipe()
	if err != nil {
		return func() {}
	}
	cmd := exec.Command(path, "--notify-fd", "3", "--fallback", "--process", strconv.Itoa(os.Getpid()))
	// The agent talks to the user on the controlling terminal, not on its
	// standard streams; its stderr would only carry registration errors
	// (no polkitd running), which are noise for a command that may not
	// need authorization at all.
	cmd.Stdin = os.Stdin
	cmd.ExtraFiles = []*os.File{w}
	err = cmd.Start()
	w.Close()
	if err != nil {
		r.Close()
		return func() {}
	}
	ready := make(chan struct{})
	go func() {
		defer close(ready)
		bufio.NewReader(r).ReadString(0) // returns at EOF: the agent closed fd 3 or exited
	}()
	select {
	case <-ready:
	case <-time.After(5 * time.Second):
	}
	r.Close()
	return func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	}
}
