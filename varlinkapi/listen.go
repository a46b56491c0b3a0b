package varlinkapi

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/coreos/go-systemd/v22/activation"
	"golang.org/x/sys/unix"
)

// DefaultSocket is where portod serves io.porto.Manager unless porto.conf
// says otherwise (varlink_socket).
const DefaultSocket = "/run/porto/" + Interface

// RegistryDir is the Varlink registry: one symlink per interface, named
// after it, to the socket that serves it (as systemd's /run/varlink/registry).
var RegistryDir = "/run/varlink/registry"

// registryPrefix: only sockets under it are registered (a socket elsewhere
// is private, a test's for one). A variable for tests.
var registryPrefix = "/run/"

// ActivationName is the FileDescriptorName= of porto.socket.
const ActivationName = "varlink"

// InheritEnv names the variable through which the supervisor master tells
// its worker which inherited fd is the activated socket (PassActivated).
const InheritEnv = "PORTO_VARLINK_FD"

// inheritMinFD is the lowest fd PassActivated moves the socket to, clear
// of the fds the master hands its worker (0-3).
const inheritMinFD = 100

// Listen returns the listener to serve on, in this order: the socket
// systemd passed by socket activation (LISTEN_FDNAMES containing
// "varlink"); the one the supervisor master handed down (PassActivated);
// else a socket bound at path (its directory is created; a stale socket
// file is removed, anything else there is an error; mode 0666). A socket
// under /run gets a symlink in RegistryDir; closing a socket Listen bound
// removes it.
func Listen(path string) (net.Listener, error) {
	l, err := activated()
	if err != nil {
		return nil, err
	}
	bound := l == nil
	if bound {
		if l, err = bind(path); err != nil {
			return nil, err
		}
	}
	if a, ok := l.Addr().(*net.UnixAddr); ok && a.Name != "" {
		path = a.Name
	}
	rl := &listener{Listener: l}
	if strings.HasPrefix(path, registryPrefix) && RegistryDir != "" {
		rl.link, rl.target = register(path, bound)
		if !bound {
			// The socket outlives portod (systemd holds it): so does its
			// registry entry.
			rl.link = ""
		}
	}
	return rl, nil
}

// listener removes the registry link it made when closed.
type listener struct {
	net.Listener
	link, target string
}

func (l *listener) Close() error {
	err := l.Listener.Close()
	if l.link != "" {
		if t, rerr := os.Readlink(l.link); rerr == nil && t == l.target {
			os.Remove(l.link)
		}
		l.link = ""
	}
	return err
}

// activated finds a socket passed by systemd or by the master.
func activated() (net.Listener, error) {
	for name, files := range activation.FilesWithNames() {
		if name != ActivationName {
			continue // not ours; FilesWithNames made them close-on-exec
		}
		for i, f := range files {
			if i > 0 {
				f.Close()
				continue
			}
			l, err := net.FileListener(f)
			f.Close()
			if err != nil {
				return nil, fmt.Errorf("socket-activated %s: %w", name, err)
			}
			return l, nil
		}
	}
	v := os.Getenv(InheritEnv)
	if v == "" {
		return nil, nil
	}
	os.Unsetenv(InheritEnv)
	fd, err := strconv.Atoi(v)
	if err != nil || fd < 3 {
		return nil, fmt.Errorf("%s=%q is not a file descriptor", InheritEnv, v)
	}
	if err := checkListening(fd); err != nil {
		return nil, fmt.Errorf("%s=%d: %w", InheritEnv, fd, err)
	}
	unix.CloseOnExec(fd)
	f := os.NewFile(uintptr(fd), "varlink")
	l, err := net.FileListener(f)
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("%s=%d: %w", InheritEnv, fd, err)
	}
	return l, nil
}

// checkListening makes sure fd is a listening unix stream socket.
func checkListening(fd int) error {
	if d, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_DOMAIN); err != nil || d != unix.AF_UNIX {
		return fmt.Errorf("not a unix socket (%v)", err)
	}
	if t, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TYPE); err != nil || t != unix.SOCK_STREAM {
		return fmt.Errorf("not a stream socket (%v)", err)
	}
	if a, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ACCEPTCONN); err != nil || a != 1 {
		return fmt.Errorf("not listening (%v)", err)
	}
	return nil
}

// PassActivated is for the supervisor master, which does not serve: if
// systemd passed it the "varlink" socket, it moves the socket to an fd
// (>= 100) that the worker inherits across fork and exec, and names it in
// $PORTO_VARLINK_FD for the worker's Listen. It reports whether it did.
// The isolation stage closes every inherited fd before it runs anything
// of a container, so the socket never reaches one.
func PassActivated() (bool, error) {
	var sock *os.File
	for name, files := range activation.FilesWithNames() {
		for _, f := range files {
			if name == ActivationName && sock == nil {
				sock = f
			} else {
				f.Close()
			}
		}
	}
	if sock == nil {
		return false, nil
	}
	defer sock.Close()
	if err := checkListening(int(sock.Fd())); err != nil {
		return false, fmt.Errorf("socket-activated %s: %w", ActivationName, err)
	}
	fd, err := unix.FcntlInt(sock.Fd(), unix.F_DUPFD, inheritMinFD) // without FD_CLOEXEC
	if err != nil {
		return false, fmt.Errorf("pass the varlink socket on: %w", err)
	}
	os.Setenv(InheritEnv, strconv.Itoa(fd))
	return true, nil
}

// bind listens on a new socket at path.
func bind(path string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, err
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode().Type() != os.ModeSocket {
			return nil, fmt.Errorf("%s exists and is not a socket; not removing it", path)
		}
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("%s is served by another process (is another portod running?)", path)
		}
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("remove stale socket: %w", err)
		}
	}
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, err
	}
	// Everyone may call, as the D-Bus policy allows; service authorizes
	// each call.
	if err := os.Chmod(path, 0o666); err != nil {
		l.Close()
		return nil, err
	}
	// ... so everyone must be able to reach it: the directory may be
	// porto's state_dir, created 0700 (/run/porto). Searching it is all
	// that is granted (its files keep their own modes; containers/ is 0700).
	if err := searchable(filepath.Dir(path)); err != nil {
		l.Close()
		return nil, err
	}
	return l, nil
}

// searchable adds search (x) permission for everyone to dir, if missing.
func searchable(dir string) error {
	fi, err := os.Stat(dir)
	if err != nil {
		return err
	}
	if m := fi.Mode().Perm(); m&0o111 != 0o111 {
		if err := os.Chmod(dir, m|0o111); err != nil {
			return fmt.Errorf("make %s searchable for the socket: %w", dir, err)
		}
	}
	return nil
}

// register links RegistryDir/io.porto.Manager to path, unless the link
// exists and leads to another socket that answers. It returns the link to
// remove on close: one it made, or found pointing at a socket it bound
// itself (a socket systemd holds keeps its link when portod stops).
func register(path string, bound bool) (link, target string) {
	link = filepath.Join(RegistryDir, Interface)
	if t, err := os.Readlink(link); err == nil {
		if t == path {
			if bound {
				return link, path
			}
			return "", "" // systemd's Symlinks= made it: keep it
		}
		if c, err := net.DialTimeout("unix", link, time.Second); err == nil {
			c.Close()
			return "", "" // another live service owns the name
		}
		os.Remove(link)
	} else if _, err := os.Lstat(link); err == nil {
		return "", "" // not a symlink: leave it alone
	}
	if err := os.MkdirAll(RegistryDir, 0o755); err != nil {
		return "", ""
	}
	if err := os.Symlink(path, link); err != nil {
		return "", ""
	}
	return link, path
}
