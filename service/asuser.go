package service

import (
	"fmt"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Paths a non-root owner chose (a root directory's std files, custom
// stdout/stderr paths) are created, removed and read by porto with the
// container user's file-system credentials, so the kernel checks them: no
// creating, deleting or reading through porto what the user could not
// (issue 7). Root's containers keep porto's own rights.

// pathCreds returns the credentials c's paths are used with, and false
// when c's owner is root (porto's own rights).
func (m *Manager) pathCreds(c *Container) (uid, gid int, groups []int, ok bool, err error) {
	if c.ownerUID() == 0 {
		return 0, 0, nil, false, nil
	}
	u, err := lookupUID(m.value(c, "user"))
	if err != nil {
		return 0, 0, nil, false, err
	}
	g, err := lookupGID(m.value(c, "group"))
	if err != nil {
		return 0, 0, nil, false, err
	}
	return int(u), int(g), supplementaryGroups(u, g), true, nil
}

// runAs runs fn on a dedicated OS thread whose file-system uid and gid and
// supplementary groups are uid, gid and groups; the thread is thrown away
// afterwards (its goroutine exits locked). uid 0 runs fn directly.
func runAs(uid, gid int, groups []int, fn func() error) error {
	if uid == 0 {
		return fn()
	}
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with this goroutine
		gids := make([]uint32, len(groups))
		for i, g := range groups {
			gids[i] = uint32(g)
		}
		var p unsafe.Pointer
		if len(gids) > 0 {
			p = unsafe.Pointer(&gids[0])
		}
		// The raw syscall: this thread only (syscall.Setgroups is process-wide).
		if _, _, e := unix.RawSyscall(unix.SYS_SETGROUPS, uintptr(len(gids)), uintptr(p), 0); e != 0 {
			done <- fmt.Errorf("setgroups: %w", e)
			return
		}
		unix.SetfsgidRetGid(gid)
		unix.SetfsuidRetUid(uid)
		if cur, _ := unix.SetfsuidRetUid(-1); cur != uid {
			done <- fmt.Errorf("setfsuid(%d) did not take", uid)
			return
		}
		done <- fn()
	}()
	return <-done
}
