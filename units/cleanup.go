package units

import (
	"errors"
	"os"
	"syscall"
)

// Cleanup removes porto's own root cgroup in every hierarchy when nothing
// is left below it (the daemon calls it on exit when it has no
// containers). A root that still has children or processes is left alone.
func (v *V1) Cleanup() error {
	var errs []error
	for _, h := range v.hiers {
		errs = append(errs, rmdirIfEmpty(h.root))
	}
	return errors.Join(errs...)
}

// Cleanup removes porto's subtree root on the unified hierarchy when empty.
func (v *V2) Cleanup() error {
	if err := rmdirIfEmpty(v.root + "/.self"); err != nil {
		return err
	}
	return rmdirIfEmpty(v.root)
}

// Cleanup removes the roots of the hierarchies porto manages itself.
func (s *Systemd) Cleanup() error { return s.v.Cleanup() }

func rmdirIfEmpty(dir string) error {
	err := syscall.Rmdir(dir)
	if err == nil || errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.EBUSY) || errors.Is(err, syscall.ENOTEMPTY) {
		return nil
	}
	return &os.PathError{Op: "rmdir", Path: dir, Err: err}
}
