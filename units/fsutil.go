package units

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// writeFile writes a whole value to a cgroup control file in one write(2),
// as the kernel expects. O_TRUNC is harmless on cgroupfs and keeps the
// fake trees of the unit tests honest.
func writeFile(path, val string) error {
	fd, err := openRetry(path, unix.O_WRONLY|unix.O_TRUNC|unix.O_CLOEXEC)
	if err != nil {
		return &fs.PathError{Op: "open", Path: path, Err: err}
	}
	defer unix.Close(fd)
	b := []byte(val)
	for {
		_, err = unix.Write(fd, b)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		return &fs.PathError{Op: "write " + strconv.Quote(val) + " to", Path: path, Err: err}
	}
	return nil
}

func openRetry(path string, flags int) (int, error) {
	for {
		fd, err := unix.Open(path, flags, 0)
		if err != unix.EINTR {
			return fd, err
		}
	}
}

func readFile(path string) ([]byte, error) { return os.ReadFile(path) }

func readUint(path string) (uint64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	v, err := parseUint(b)
	if err != nil {
		return 0, &fs.PathError{Op: "parse", Path: path, Err: err}
	}
	return v, nil
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

func isDir(path string) bool {
	st, err := os.Stat(path)
	return err == nil && st.IsDir()
}

// subdirs returns dir and every directory below it, parents before
// children.
func subdirs(dir string) ([]string, error) {
	out := []string{dir}
	for i := 0; i < len(out); i++ {
		ents, err := os.ReadDir(out[i])
		if err != nil {
			if i > 0 && errors.Is(err, fs.ErrNotExist) {
				continue // removed meanwhile
			}
			return out, err
		}
		for _, e := range ents {
			if e.IsDir() {
				out = append(out, filepath.Join(out[i], e.Name()))
			}
		}
	}
	return out, nil
}

// rmdirTree removes dir and its subdirectories bottom-up. A missing
// directory is fine; EBUSY of a cgroup that has no processes left (they
// may still be exiting) is retried until deadline; any other error, or
// EBUSY with live processes inside, stops it.
func rmdirTree(dir string, deadline time.Time) error {
	// The common case, an empty leaf, costs one rmdir: no listing of the
	// directory (a third of the worker's CPU time in a destroy; bench/).
	if fakeRmdirHook == nil {
		if err := unix.Rmdir(dir); err == nil || err == unix.ENOENT {
			return nil
		}
	}
	dirs, err := subdirs(dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return err
	}
	for i := len(dirs) - 1; i >= 0; i-- {
		if err := rmdirRetry(dirs[i], deadline); err != nil {
			return err
		}
	}
	return nil
}

// fakeRmdirHook, set only by unit tests, empties a directory of a fake
// tree of its control files before rmdir, as the kernel would.
var fakeRmdirHook func(dir string) error

func rmdirRetry(dir string, deadline time.Time) error {
	sleep := time.Millisecond
	for {
		err := unix.Rmdir(dir)
		if fakeRmdirHook != nil {
			if ferr := fakeRmdirHook(dir); ferr != nil {
				err = ferr
			} else {
				err = unix.Rmdir(dir)
			}
		}
		switch {
		case err == nil, err == unix.ENOENT:
			return nil
		case err == unix.EINTR:
			continue
		case err == unix.EBUSY && time.Now().Before(deadline):
			if pids, perr := readProcs(dir); perr == nil && len(pids) > 0 {
				return &fs.PathError{Op: "rmdir", Path: dir, Err: err}
			}
			time.Sleep(sleep)
			sleep = min(2*sleep, 50*time.Millisecond)
			continue
		}
		return &fs.PathError{Op: "rmdir", Path: dir, Err: err}
	}
}

// fakeMkdirHook, set only by unit tests, populates a directory made in a
// fake tree with the files the kernel would create.
var fakeMkdirHook func(dir string)

// mkdir creates dir; created reports whether it did not exist before.
func mkdir(dir string) (created bool, err error) {
	err = unix.Mkdir(dir, 0o755)
	switch err {
	case nil:
		if fakeMkdirHook != nil {
			fakeMkdirHook(dir)
		}
		return true, nil
	case unix.EEXIST:
		return false, nil
	}
	return false, &fs.PathError{Op: "mkdir", Path: dir, Err: err}
}

// readProcs reads cgroup.procs of dir and of every cgroup below it.
func readProcs(dir string) ([]int, error) {
	dirs, err := subdirs(dir)
	if err != nil {
		return nil, err
	}
	var pids []int
	seen := make(map[int]bool)
	for _, d := range dirs {
		b, err := os.ReadFile(filepath.Join(d, "cgroup.procs"))
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) && d != dir {
				continue
			}
			return nil, err
		}
		var got []int
		got, err = parsePids(b, got)
		if err != nil {
			return nil, err
		}
		for _, p := range got {
			if !seen[p] {
				seen[p] = true
				pids = append(pids, p)
			}
		}
	}
	return pids, nil
}

const ownerXattr = "trusted.porto.owner"

// claimRoot creates porto's subtree root dir (and marks it as porto's), or
// accepts an existing one that carries porto's mark. It returns whether
// it created the directory.
func claimRoot(dir string) (bool, error) {
	created, err := mkdir(dir)
	if err != nil {
		return false, err
	}
	if created {
		if err := unix.Setxattr(dir, ownerXattr, []byte("porto"), 0); err != nil && err != unix.ENOTSUP && err != unix.EOPNOTSUPP && err != unix.EPERM {
			return true, &fs.PathError{Op: "setxattr " + ownerXattr, Path: dir, Err: err}
		}
		return true, nil
	}
	buf := make([]byte, 64)
	n, err := unix.Getxattr(dir, ownerXattr, buf)
	switch {
	case err == nil && string(buf[:n]) == "porto":
		return false, nil
	case err == unix.ENOTSUP || err == unix.EOPNOTSUPP:
		return false, nil // the filesystem cannot carry the mark
	case err == nil || err == unix.ENODATA:
		return false, errors.New("cgroup " + dir + " exists and was not created by porto (no " + ownerXattr + " mark); refusing to use it")
	}
	return false, &fs.PathError{Op: "getxattr " + ownerXattr, Path: dir, Err: err}
}
