package varlinkapi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/porto-dev/porto/api/client"
	"github.com/porto-dev/porto/apiserver/apitest"
)

const helperEnv = "VARLINKAPI_TEST_HELPER"

// TestHelperProcess is not a test: it is the process that the activation
// tests start (as systemd would portod, or as the master its worker).
// "serve" serves what Listen finds until stdin closes; "master" hands the
// activated socket on (PassActivated) to a "serve" child.
func TestHelperProcess(t *testing.T) {
	mode := os.Getenv(helperEnv)
	if mode == "" {
		t.Skip("helper process only")
	}
	switch mode {
	case "master":
		ok, err := PassActivated()
		if err != nil || !ok {
			fmt.Fprintf(os.Stderr, "PassActivated = %v, %v\n", ok, err)
			os.Exit(3)
		}
		if os.Getenv("LISTEN_FDS") != "" || os.Getenv("LISTEN_PID") != "" {
			fmt.Fprintln(os.Stderr, "LISTEN_* left in the environment")
			os.Exit(3)
		}
		cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$")
		cmd.Env = append(os.Environ(), helperEnv+"=serve")
		cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
		if err := cmd.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "worker:", err)
			os.Exit(3)
		}
		os.Exit(0)
	case "serve":
		// A path that must not be used: the socket comes from the
		// environment.
		l, err := Listen("/nonexistent/porto/socket")
		if err != nil {
			fmt.Fprintln(os.Stderr, "Listen:", err)
			os.Exit(3)
		}
		srv := newServer(apitest.NewManager(t, nil), Options{Logger: quiet})
		go srv.Serve(l)
		io.Copy(io.Discard, os.Stdin)
		srv.Close()
		os.Exit(0)
	}
	os.Exit(4)
}

// Socket activation: systemd passes the socket (LISTEN_FDS, LISTEN_PID,
// LISTEN_FDNAMES=varlink at fd 3) and portod serves it without binding;
// through the supervisor master, the worker gets it by inheritance.
func TestSocketActivation(t *testing.T) {
	for _, mode := range []string{"serve", "master"} {
		t.Run(mode, func(t *testing.T) {
			path := filepath.Join(sockDir(t), "activated")
			ul, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
			if err != nil {
				t.Fatal(err)
			}
			defer ul.Close()
			f, err := ul.File()
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			// LISTEN_PID must be the server's own pid: set it in a shell
			// that then execs the test binary (same pid).
			cmd := exec.Command("/bin/sh", "-c",
				`LISTEN_PID=$$ LISTEN_FDS=2 LISTEN_FDNAMES=other:varlink exec "$0" -test.run='^TestHelperProcess$'`, os.Args[0])
			// TMPDIR: the helper exits without its test cleanup.
			cmd.Env = append(os.Environ(), helperEnv+"="+mode, "TMPDIR="+sockDir(t))
			other, _ := os.Open(os.DevNull)
			defer other.Close()
			cmd.ExtraFiles = []*os.File{other, f} // fds 3 and 4
			stdin, err := cmd.StdinPipe()
			if err != nil {
				t.Fatal(err)
			}
			cmd.Stderr = testWriter{t}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			defer func() {
				stdin.Close()
				select {
				case err := <-done:
					if err != nil {
						t.Errorf("helper: %v", err)
					}
				case <-time.After(10 * time.Second):
					cmd.Process.Kill()
					t.Error("helper did not exit")
				}
			}()
			// The socket was listening before the server started: the
			// first call waits in the backlog until it serves.
			c, err := client.NewVarlink(path)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			if err := c.Create(ctx, "activated"); err != nil {
				t.Fatal(err)
			}
			if v, err := c.GetProperty(ctx, "activated", "state"); err != nil || v != "stopped" {
				t.Fatalf("state %q %v", v, err)
			}
			if _, err := os.Stat("/nonexistent/porto/socket"); !errors.Is(err, os.ErrNotExist) {
				t.Fatal("the helper bound its own socket")
			}
		})
	}
}
