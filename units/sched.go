package units

import (
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// rtPriority is the SCHED_RR priority of cpu_policy=rt (as Porto's).
const rtPriority = 10

// schedAttr is the scheduling policy of a cpu_policy that is set per
// task; ok is false for policies that are set on the cgroup only.
func schedAttr(policy string) (attr unix.SchedAttr, ok bool) {
	switch policy {
	case "batch":
		return unix.SchedAttr{Policy: unix.SCHED_BATCH}, true
	case "rt":
		return unix.SchedAttr{Policy: unix.SCHED_RR, Priority: rtPriority}, true
	case "", "normal", "idle":
		return unix.SchedAttr{Policy: unix.SCHED_NORMAL}, true
	}
	return unix.SchedAttr{}, false
}

// setSched sets the scheduling policy of every thread of every pid.
// Processes and threads that exit meanwhile are skipped.
func setSched(pids []int, policy string) error {
	attr, ok := schedAttr(policy)
	if !ok {
		return fmt.Errorf("unknown cpu_policy %q", policy)
	}
	for _, pid := range pids {
		ents, err := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/task")
		if err != nil {
			continue // gone
		}
		for _, e := range ents {
			tid, err := strconv.Atoi(e.Name())
			if err != nil {
				continue
			}
			a := attr
			if err := unix.SchedSetAttr(tid, &a, 0); err != nil && err != unix.ESRCH {
				return fmt.Errorf("set scheduling policy %s of task %d: %w", policy, tid, err)
			}
		}
	}
	return nil
}

func validPolicy(p string) bool {
	switch p {
	case "", "normal", "rt", "idle", "batch":
		return true
	}
	return false
}

func validIOPolicy(p string) bool {
	switch p {
	case "", "normal", "batch":
		return true
	}
	return false
}

func normPolicy(p string) string {
	if p == "" {
		return "normal"
	}
	return p
}
