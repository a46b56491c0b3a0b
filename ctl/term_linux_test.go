package ctl

import (
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"
)

// openPty opens a pseudo-terminal pair with the syscall package only.
func openPty(t *testing.T) (master, slave *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pty: %v", err)
	}
	var unlock int32
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, m.Fd(), syscall.TIOCSPTLCK, uintptr(unsafe.Pointer(&unlock))); e != 0 {
		m.Close()
		t.Skipf("unlockpt: %v", e)
	}
	var n uint32
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, m.Fd(), syscall.TIOCGPTN, uintptr(unsafe.Pointer(&n))); e != 0 {
		m.Close()
		t.Skipf("ptsname: %v", e)
	}
	s, err := os.OpenFile("/dev/pts/"+strconv.Itoa(int(n)), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		m.Close()
		t.Skipf("open pts: %v", err)
	}
	t.Cleanup(func() { s.Close(); m.Close() })
	return m, s
}

func TestTerminal(t *testing.T) {
	_, tty := openPty(t)
	if !isTerminal(tty) || !isTerminalWriter(tty) {
		t.Fatal("a pty is not a terminal")
	}
	f, err := os.CreateTemp(t.TempDir(), "x")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if isTerminal(f) || isTerminalWriter(f) || isTerminal(nil) {
		t.Fatal("a file is a terminal")
	}
	if _, err := rawMode(f); err == nil {
		t.Fatal("rawMode on a file succeeded")
	}

	before, err := tcget(tty.Fd())
	if err != nil {
		t.Fatal(err)
	}
	if before.Lflag&syscall.ICANON == 0 {
		t.Skip("pty not in canonical mode to begin with")
	}
	restore, err := rawMode(tty)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := tcget(tty.Fd())
	if raw.Lflag&(syscall.ICANON|syscall.ECHO) != 0 || raw.Lflag&syscall.ISIG == 0 {
		t.Errorf("raw mode lflag %#x: want ICANON and ECHO off, ISIG on", raw.Lflag)
	}
	restore()
	after, _ := tcget(tty.Fd())
	if after.Lflag != before.Lflag {
		t.Errorf("restore: lflag %#x, want %#x", after.Lflag, before.Lflag)
	}
}

// TestTopOnTerminal: on a real terminal, top switches it out of canonical
// mode (a lone "q" arrives without a newline and quits) and restores it.
func TestTopOnTerminal(t *testing.T) {
	master, tty := openPty(t)
	before, err := tcget(tty.Fd())
	if err != nil {
		t.Fatal(err)
	}
	f := newFake()
	running(f, "a", "sleep 1")
	done := make(chan result, 1)
	go func() {
		done <- runCLI(f, []string{"top"}, func(c *CLI) {
			c.Stdin = tty
			c.Terminal = true
		})
	}()
	// Wait until top has put the terminal in non-canonical mode.
	for i := 0; ; i++ {
		cur, _ := tcget(tty.Fd())
		if cur.Lflag&syscall.ICANON == 0 {
			break
		}
		if i > 5000 {
			t.Fatal("top did not leave canonical mode")
		}
		time.Sleep(time.Millisecond)
	}
	if _, err := master.Write([]byte("q")); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-done:
		if r.status != 0 || !strings.Contains(r.stdout, "\na ") {
			t.Errorf("top: status %d, output %q", r.status, r.stdout)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("top did not quit on q")
	}
	after, _ := tcget(tty.Fd())
	if after.Lflag != before.Lflag {
		t.Errorf("terminal not restored: lflag %#x, want %#x", after.Lflag, before.Lflag)
	}
}
