package dbusapi

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/user"
	"slices"
	"strconv"
	"strings"

	"github.com/godbus/dbus/v5"
)

// identity is who a bus peer is, as the bus daemon established it when the
// peer connected.
type identity struct {
	UID    uint32
	GID    uint32
	Groups []uint32
	Pid    int32 // 0 when the bus did not tell
}

const (
	busName      = "org.freedesktop.DBus"
	busPath      = dbus.ObjectPath("/org/freedesktop/DBus")
	busInterface = "org.freedesktop.DBus"
)

// busIdentify asks the bus daemon for sender's credentials:
// GetConnectionCredentials (UnixUserID, ProcessID, UnixGroupIDs), falling
// back to GetConnectionUnixUser on a bus that lacks it.
func busIdentify(ctx context.Context, conn *dbus.Conn, sender string) (identity, error) {
	var id identity
	bus := conn.Object(busName, busPath)
	var creds map[string]dbus.Variant
	err := bus.CallWithContext(ctx, busInterface+".GetConnectionCredentials", 0, sender).Store(&creds)
	if err == nil {
		uid, ok := creds["UnixUserID"].Value().(uint32)
		if !ok {
			return id, fmt.Errorf("bus gave no UnixUserID for %s", sender)
		}
		id.UID = uid
		if pid, ok := creds["ProcessID"].Value().(uint32); ok {
			id.Pid = int32(pid)
		}
		if gs, ok := creds["UnixGroupIDs"].Value().([]uint32); ok {
			id.Groups = gs
		}
	} else {
		var de dbus.Error
		if !errors.As(err, &de) || de.Name != "org.freedesktop.DBus.Error.UnknownMethod" {
			return id, fmt.Errorf("GetConnectionCredentials(%s): %w", sender, err)
		}
		var uid uint32
		if err := bus.CallWithContext(ctx, busInterface+".GetConnectionUnixUser", 0, sender).Store(&uid); err != nil {
			return id, fmt.Errorf("GetConnectionUnixUser(%s): %w", sender, err)
		}
		id.UID = uid
		var pid uint32
		if bus.CallWithContext(ctx, busInterface+".GetConnectionUnixProcessID", 0, sender).Store(&pid) == nil {
			id.Pid = int32(pid)
		}
	}
	id.GID = resolveGID(id.UID, id.Pid, id.Groups, procStatusIDs, passwdGID)
	return id, nil
}

// resolveGID picks the caller's primary group: the effective gid of the
// calling process (as Porto takes it from SO_PEERCRED) when that process
// still runs as uid and the gid is one the bus vouched for (a member of
// groups, or uid's primary group in the user database); otherwise uid's
// primary group; otherwise the first of groups; otherwise uid itself.
func resolveGID(uid uint32, pid int32, groups []uint32,
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

// procStatusIDs reads the real and effective uid and effective gid of pid.
func procStatusIDs(pid int32) (ruid, euid, egid uint32, err error) {
	f, err := os.Open("/proc/" + strconv.Itoa(int(pid)) + "/status")
	if err != nil {
		return 0, 0, 0, err
	}
	defer f.Close()
	var gotUID, gotGID bool
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "Uid:"):
			f := strings.Fields(line[4:])
			if len(f) < 2 {
				return 0, 0, 0, fmt.Errorf("bad Uid line %q", line)
			}
			r, err1 := strconv.ParseUint(f[0], 10, 32)
			e, err2 := strconv.ParseUint(f[1], 10, 32)
			if err1 != nil || err2 != nil {
				return 0, 0, 0, fmt.Errorf("bad Uid line %q", line)
			}
			ruid, euid, gotUID = uint32(r), uint32(e), true
		case strings.HasPrefix(line, "Gid:"):
			f := strings.Fields(line[4:])
			if len(f) < 2 {
				return 0, 0, 0, fmt.Errorf("bad Gid line %q", line)
			}
			e, err := strconv.ParseUint(f[1], 10, 32)
			if err != nil {
				return 0, 0, 0, fmt.Errorf("bad Gid line %q", line)
			}
			egid, gotGID = uint32(e), true
		}
	}
	if !gotUID || !gotGID {
		return 0, 0, 0, fmt.Errorf("no Uid/Gid in /proc/%d/status", pid)
	}
	return ruid, euid, egid, sc.Err()
}

// passwdGID is uid's primary group from the user database.
func passwdGID(uid uint32) (uint32, bool) {
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
