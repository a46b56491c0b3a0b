package service

import (
	"os/user"
	"strconv"
	"syscall"

	"github.com/porto-dev/porto/api"
	"github.com/porto-dev/porto/units"
)

type statsView = units.Stats

func syscallWaitStatus(s int) syscall.WaitStatus { return syscall.WaitStatus(s) }

func userName(uid uint32) string {
	if u, err := user.LookupId(strconv.FormatUint(uint64(uid), 10)); err == nil {
		return u.Username
	}
	return strconv.FormatUint(uint64(uid), 10)
}

func groupName(gid uint32) string {
	if g, err := user.LookupGroupId(strconv.FormatUint(uint64(gid), 10)); err == nil {
		return g.Name
	}
	return strconv.FormatUint(uint64(gid), 10)
}

func primaryGID(uid uint32) (uint32, bool) {
	u, err := user.LookupId(strconv.FormatUint(uint64(uid), 10))
	if err != nil {
		return 0, false
	}
	g, err := strconv.ParseUint(u.Gid, 10, 32)
	return uint32(g), err == nil
}

func lookupUID(v string) (uint32, error) {
	if n, err := strconv.ParseUint(v, 10, 32); err == nil {
		return uint32(n), nil
	}
	u, err := user.Lookup(v)
	if err != nil {
		return 0, api.Errorf(api.InvalidValue, "unknown user %q", v)
	}
	n, err := strconv.ParseUint(u.Uid, 10, 32)
	return uint32(n), err
}

func lookupGID(v string) (uint32, error) {
	if n, err := strconv.ParseUint(v, 10, 32); err == nil {
		return uint32(n), nil
	}
	g, err := user.LookupGroup(v)
	if err != nil {
		return 0, api.Errorf(api.InvalidValue, "unknown group %q", v)
	}
	n, err := strconv.ParseUint(g.Gid, 10, 32)
	return uint32(n), err
}

// canonUser maps a user name or uid to the name (or the uid when the
// user database has no entry).
func canonUser(v string) (string, error) {
	if v == "" {
		return "", api.Errorf(api.InvalidValue, "empty user")
	}
	uid, err := lookupUID(v)
	if err != nil {
		return "", err
	}
	if uid > 1<<31-2 {
		return "", api.Errorf(api.InvalidValue, "invalid uid %d", uid)
	}
	return userName(uid), nil
}

func canonGroup(v string) (string, error) {
	if v == "" {
		return "", api.Errorf(api.InvalidValue, "empty group")
	}
	gid, err := lookupGID(v)
	if err != nil {
		return "", err
	}
	if gid > 1<<31-2 {
		return "", api.Errorf(api.InvalidValue, "invalid gid %d", gid)
	}
	return groupName(gid), nil
}

// supplementaryGroups lists the groups of the user (initgroups).
func supplementaryGroups(uid uint32, gid uint32) []int {
	out := []int{int(gid)}
	u, err := user.LookupId(strconv.FormatUint(uint64(uid), 10))
	if err != nil {
		return out
	}
	ids, err := u.GroupIds()
	if err != nil {
		return out
	}
	for _, s := range ids {
		if n, err := strconv.Atoi(s); err == nil && n != int(gid) {
			out = append(out, n)
		}
	}
	return out
}
