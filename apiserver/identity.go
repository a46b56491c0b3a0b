package apiserver

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/user"
	"slices"
	"strconv"
	"strings"

	"github.com/porto-dev/porto/service"
)

// Identity is who a peer is, as its transport established it: the bus
// daemon (D-Bus) or the kernel (SO_PEERCRED on the Varlink socket). Never
// what the peer claims.
type Identity struct {
	UID    uint32
	GID    uint32
	Groups []uint32
	Pid    int32 // 0 when the transport did not tell
}

// AuthorizeFunc asks polkit whether the caller may perform action. It is
// bound by the transport to the caller's subject (a bus name, a process).
type AuthorizeFunc func(ctx context.Context, action string) (bool, error)

// NewCaller makes the service.Caller of a call from id. A nil auth means
// no authority is reachable: service then lets only uid 0 do privileged
// things.
func NewCaller(id Identity, auth AuthorizeFunc) service.Caller {
	c := service.Caller{
		UID:    id.UID,
		GID:    id.GID,
		Groups: slices.Clone(id.Groups),
		Pid:    id.Pid,
	}
	if auth != nil {
		c.Authorize = auth
	}
	return c
}

// ResolveGID picks the caller's primary group when the transport vouched
// only for uid and groups (D-Bus): the effective gid of the calling process
// (as Porto takes it from SO_PEERCRED) when that process still runs as uid
// and the gid is one the transport vouched for (a member of groups, or
// uid's primary group in the user database); otherwise uid's primary
// group; otherwise the first of groups; otherwise uid itself.
func ResolveGID(uid uint32, pid int32, groups []uint32,
	procIDs func(pid int32) (ruid, euid, egid uint32, err error),
	pwGID func(uid uint32) (uint32, bool)) uint32 {
	pw, pwOK := pwGID(uid)
	if pid > 0 {
		if ruid, euid, egid, err := procIDs(pid); err == nil && ruid == uid && euid == uid {
			if slices.Contains(groups, egid) || (pwOK && pw == egid) {
				return egid
			}
		}
	}
	if pwOK {
		return pw
	}
	if len(groups) > 0 {
		return groups[0]
	}
	return uid
}

// ProcStatus is what /proc/PID/status says of a process's credentials.
type ProcStatus struct {
	RUID, EUID uint32
	RGID, EGID uint32
	Groups     []uint32 // supplementary groups
}

// ReadProcStatus reads pid's credentials from /proc/PID/status.
func ReadProcStatus(pid int32) (ProcStatus, error) {
	var st ProcStatus
	f, err := os.Open("/proc/" + strconv.Itoa(int(pid)) + "/status")
	if err != nil {
		return st, err
	}
	defer f.Close()
	var gotUID, gotGID bool
	two := func(line string) (uint32, uint32, error) {
		fs := strings.Fields(line)
		if len(fs) < 2 {
			return 0, 0, fmt.Errorf("bad line %q in /proc/%d/status", line, pid)
		}
		r, err1 := strconv.ParseUint(fs[0], 10, 32)
		e, err2 := strconv.ParseUint(fs[1], 10, 32)
		if err1 != nil || err2 != nil {
			return 0, 0, fmt.Errorf("bad line %q in /proc/%d/status", line, pid)
		}
		return uint32(r), uint32(e), nil
	}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "Uid:"):
			if st.RUID, st.EUID, err = two(line[4:]); err != nil {
				return st, err
			}
			gotUID = true
		case strings.HasPrefix(line, "Gid:"):
			if st.RGID, st.EGID, err = two(line[4:]); err != nil {
				return st, err
			}
			gotGID = true
		case strings.HasPrefix(line, "Groups:"):
			for _, g := range strings.Fields(line[7:]) {
				n, err := strconv.ParseUint(g, 10, 32)
				if err != nil {
					return st, fmt.Errorf("bad Groups line %q in /proc/%d/status", line, pid)
				}
				st.Groups = append(st.Groups, uint32(n))
			}
		}
	}
	if err := sc.Err(); err != nil {
		return st, err
	}
	if !gotUID || !gotGID {
		return st, fmt.Errorf("no Uid/Gid in /proc/%d/status", pid)
	}
	return st, nil
}

// ProcIDs is ResolveGID's reader of a live process: real and effective uid
// and effective gid from /proc/PID/status.
func ProcIDs(pid int32) (ruid, euid, egid uint32, err error) {
	st, err := ReadProcStatus(pid)
	if err != nil {
		return 0, 0, 0, err
	}
	return st.RUID, st.EUID, st.EGID, nil
}

// PasswdGID is uid's primary group from the user database.
func PasswdGID(uid uint32) (uint32, bool) {
	u, err := user.LookupId(strconv.FormatUint(uint64(uid), 10))
	if err != nil {
		return 0, false
	}
	g, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return 0, false
	}
	return uint32(g), true
}

// ProcStartTime is field 22 of /proc/PID/stat: the process's start time in
// clock ticks since boot, which polkit's unix-process subject carries to
// tell a process from a later one with the same pid.
func ProcStartTime(pid int32) (uint64, error) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(int(pid)) + "/stat")
	if err != nil {
		return 0, err
	}
	return parseStartTime(data)
}

// parseStartTime reads field 22 of a /proc/PID/stat line. The command
// (field 2) is in parentheses and may itself contain ") ", so fields are
// counted after the last ')'.
func parseStartTime(stat []byte) (uint64, error) {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, fmt.Errorf("malformed /proc stat line")
	}
	fs := strings.Fields(string(stat[i+1:]))
	// fs[0] is field 3 (state); start time is field 22.
	if len(fs) < 20 {
		return 0, fmt.Errorf("malformed /proc stat line: %d fields after the command", len(fs))
	}
	v, err := strconv.ParseUint(fs[19], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("malformed start time %q in /proc stat line", fs[19])
	}
	return v, nil
}

// Process is a local process as polkit's unix-process subject names it:
// the Varlink edge's callers, who are not bus peers.
type Process struct {
	Pid       int32
	StartTime uint64 // clock ticks since boot (/proc/PID/stat field 22)
	UID       uint32
	// Pidfd refers to the process itself (SO_PEERPIDFD), so that polkit
	// (121 and later) cannot mistake a later process with the same pid
	// for it; -1 when there is none. The authorizer must not close it.
	Pidfd int
}
