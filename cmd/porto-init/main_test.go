package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The test binary impersonates porto-init when this variable is set
// (the os/exec test pattern).
const beInit = "PORTO_INIT_TEST_BE_INIT"

func TestMain(m *testing.M) {
	if os.Getenv(beInit) == "1" {
		main()
		return
	}
	os.Exit(m.Run())
}

func initCmd(t *testing.T, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), beInit+"=1")
	cmd.Stderr = os.Stderr
	return cmd
}

func waitStatus(t *testing.T, cmd *exec.Cmd) syscall.WaitStatus {
	t.Helper()
	done := make(chan struct{})
	go func() {
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			cmd.Process.Kill()
		}
	}()
	cmd.Wait()
	close(done)
	return cmd.ProcessState.Sys().(syscall.WaitStatus)
}

func TestExitStatus(t *testing.T) {
	cmd := initCmd(t, "--", "sh", "-c", "exit 3")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if ws := waitStatus(t, cmd); !ws.Exited() || ws.ExitStatus() != 3 {
		t.Errorf("status %#x, want exit 3", ws)
	}
	cmd = initCmd(t, "--wait", "sh", "-c", "exit 0")
	cmd.Start()
	if ws := waitStatus(t, cmd); !ws.Exited() || ws.ExitStatus() != 0 {
		t.Errorf("--wait: status %#x, want exit 0", ws)
	}
}

func TestSignalReRaised(t *testing.T) {
	cmd := initCmd(t, "--", "sh", "-c", "kill -9 $$")
	cmd.Start()
	if ws := waitStatus(t, cmd); !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Errorf("status %#x, want killed by 9", ws)
	}
}

func TestForwardSignal(t *testing.T) {
	cmd := initCmd(t, "--", "sleep", "100")
	cmd.Start()
	time.Sleep(200 * time.Millisecond)
	cmd.Process.Signal(syscall.SIGTERM)
	if ws := waitStatus(t, cmd); !ws.Signaled() || ws.Signal() != syscall.SIGTERM {
		t.Errorf("status %#x, want killed by SIGTERM (forwarded to sleep)", ws)
	}
}

func TestHold(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT, syscall.SIGQUIT} {
		cmd := initCmd(t)
		cmd.Start()
		time.Sleep(100 * time.Millisecond)
		cmd.Process.Signal(sig)
		if ws := waitStatus(t, cmd); !ws.Exited() || ws.ExitStatus() != 0 {
			t.Errorf("%v: status %#x, want exit 0", sig, ws)
		}
	}
}

func TestReapsOrphans(t *testing.T) {
	pidfile := filepath.Join(t.TempDir(), "pid")
	// The subshell exits at once, orphaning sleep to porto-init (a
	// subreaper), which must reap it when it exits.
	script := `(sleep 0.1 & echo $! > ` + pidfile + `); sleep 0.6; p=$(cat ` + pidfile + `); ` +
		`if [ -e /proc/$p ]; then grep State /proc/$p/status; exit 1; fi`
	cmd := initCmd(t, "--", "sh", "-c", script)
	out := new(strings.Builder)
	cmd.Stdout = out
	cmd.Start()
	if ws := waitStatus(t, cmd); !ws.Exited() || ws.ExitStatus() != 0 {
		t.Errorf("orphan not reaped: status %#x, %s", ws, out)
	}
}

func TestUsage(t *testing.T) {
	cmd := initCmd(t, "--bogus")
	cmd.Stderr = nil
	cmd.Start()
	if ws := waitStatus(t, cmd); ws.ExitStatus() != 2 {
		t.Errorf("status %#x, want 2", ws)
	}
}
