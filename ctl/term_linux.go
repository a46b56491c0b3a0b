package ctl

import (
	"io"
	"os"
	"syscall"
	"unsafe"
)

// Terminal handling uses the termios ioctls of package syscall: ctl may not
// link golang.org/x/sys (see doc.go), and these two calls are all it needs.

func tcget(fd uintptr) (*syscall.Termios, error) {
	var t syscall.Termios
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, fd, syscall.TCGETS, uintptr(unsafe.Pointer(&t))); e != 0 {
		return nil, e
	}
	return &t, nil
}

func tcset(fd uintptr, t *syscall.Termios) error {
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, fd, syscall.TCSETS, uintptr(unsafe.Pointer(t))); e != 0 {
		return e
	}
	return nil
}

// isTerminal tells whether f is a terminal (isatty).
func isTerminal(f *os.File) bool {
	if f == nil {
		return false
	}
	_, err := tcget(f.Fd())
	return err == nil
}

func isTerminalWriter(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && isTerminal(f)
}

// rawMode turns off canonical input and echo on terminal f (signals stay
// on, output processing too) and returns a func restoring the old mode.
func rawMode(f *os.File) (func(), error) {
	old, err := tcget(f.Fd())
	if err != nil {
		return nil, err
	}
	raw := *old
	raw.Lflag &^= syscall.ICANON | syscall.ECHO
	raw.Cc[syscall.VMIN] = 1
	raw.Cc[syscall.VTIME] = 0
	if err := tcset(f.Fd(), &raw); err != nil {
		return nil, err
	}
	return func() { tcset(f.Fd(), old) }, nil
}
