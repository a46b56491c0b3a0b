package units

import (
	"encoding/binary"
	"fmt"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// oomWatch counts the OOMs of one memory cgroup (cgroup v1) through the
// kernel's event notification, so that the count survives the cgroup:
// systemd removes a scope's cgroups as soon as its last process exits,
// before porto reads the counters of the dead container.
//
// Two eventfds are registered in cgroup.event_control (a subscription;
// no attribute of the cgroup changes):
//
//   - gone: a memory.usage_in_bytes threshold at the maximum, which usage
//     never crosses, so it is signalled only when the cgroup is removed;
//   - oom: memory.oom_control, signalled on every OOM of the cgroup and
//     once more when the cgroup is removed.
//
// gone is registered first: the kernel queues the removal signals newest
// registration first, so once gone has fired the removal signal of oom
// is in as well, and the OOMs are oom's signals minus one.
//
// It counts OOM events of the cgroup, not kills: one kill can take more
// than one OOM (allocations that fail again before the victim is gone),
// and an OOM may find no victim. Zero or not is what it tells exactly.
type oomWatch struct {
	mu        sync.Mutex
	oom, gone int // eventfds; -1 once closed
	signals   uint64
	removed   bool
}

// newOOMWatch subscribes to the OOMs of memory cgroup dir.
func newOOMWatch(dir string) (*oomWatch, error) {
	w := &oomWatch{oom: -1, gone: -1}
	ctl, err := os.OpenFile(dir+"/cgroup.event_control", os.O_WRONLY, 0)
	if err != nil {
		return nil, err
	}
	defer ctl.Close()
	register := func(file, args string) (int, error) {
		f, err := os.Open(dir + "/" + file)
		if err != nil {
			return -1, err
		}
		defer f.Close()
		efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
		if err != nil {
			return -1, err
		}
		line := fmt.Sprintf("%d %d", efd, f.Fd())
		if args != "" {
			line += " " + args
		}
		if _, err := ctl.WriteString(line); err != nil {
			unix.Close(efd)
			return -1, fmt.Errorf("register %s event of %s: %w", file, dir, err)
		}
		return efd, nil
	}
	if w.gone, err = register("memory.usage_in_bytes", "-1"); err != nil {
		return nil, err
	}
	if w.oom, err = register("memory.oom_control", ""); err != nil {
		w.closeLocked()
		return nil, err
	}
	return w, nil
}

func readEventfd(fd int) uint64 {
	var b [8]byte
	if n, err := unix.Read(fd, b[:]); err != nil || n != 8 {
		return 0
	}
	return binary.NativeEndian.Uint64(b[:])
}

// poll takes the pending signals without blocking.
func (w *oomWatch) poll() {
	if w.oom < 0 {
		return
	}
	if readEventfd(w.gone) > 0 {
		w.removed = true
	}
	w.signals += readEventfd(w.oom)
	if w.removed {
		w.signals += readEventfd(w.oom)
		w.closeLocked()
	}
}

// count is the number of OOMs seen. When the cgroup is gone but its
// removal not yet signalled (the kernel offlines it asynchronously) and
// there were signals, it waits up to wait for the removal.
func (w *oomWatch) count(wait time.Duration) uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.poll()
	// No signal at all: no OOM (it is signalled before its victim dies,
	// so before the cgroup can be removed). Else wait for the removal, to
	// know whether one of the signals is the removal's.
	if !w.removed && w.signals > 0 && w.gone >= 0 && wait > 0 {
		fds := []unix.PollFd{{Fd: int32(w.gone), Events: unix.POLLIN}}
		unix.Poll(fds, int(wait/time.Millisecond))
		w.poll()
	}
	if w.removed {
		if w.signals > 0 {
			return w.signals - 1
		}
		return 0
	}
	return w.signals
}

func (w *oomWatch) close() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.closeLocked()
}

func (w *oomWatch) closeLocked() {
	for _, fd := range []*int{&w.oom, &w.gone} {
		if *fd >= 0 {
			unix.Close(*fd)
			*fd = -1
		}
	}
}
