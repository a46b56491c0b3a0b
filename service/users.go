package service

import (
	"os/user"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/porto-dev/porto/api"
	"github.com/porto-dev/porto/units"
)

type statsView = units.Stats

func syscallWaitStatus(s int) syscall.WaitStatus { return syscall.WaitStatus(s) }

// The user database is asked (through NSS) on every start and for every
// state event; its answers are kept for nssTTL. Only answers found are
// kept: a user created a moment ago is seen at once; a change to an
// existing user or group (a new supplementary group, say) is seen by the
// starts that come nssTTL later.
const nssTTL = 5 * time.Second

var nss struct {
	sync.Mutex
	users  map[string]nssEntry[*user.User] // by "id:N" or "name:X"
	groups map[string]nssEntry[*user.Group]
	gids   map[uint32]nssEntry[[]string]
}

type nssEntry[T any] struct {
	v  T
	at time.Time
}

func cached[K comparable, T any](m *map[K]nssEntry[T], k K, look func() (T, error)) (T, error) {
	nss.Lock()
	e, ok := (*m)[k]
	nss.Unlock()
	if ok && time.Since(e.at) < nssTTL {
		return e.v, nil
	}
	v, err := look()
	if err != nil {
		return v, err
	}
	nss.Lock()
	if *m == nil || len(*m) > 4096 {
		*m = make(map[K]nssEntry[T])
	}
	(*m)[k] = nssEntry[T]{v, time.Now()}
	nss.Unlock()
	return v, nil
}

func userByID(uid uint32) (*user.User, error) {
	id := strconv.FormatUint(uint64(uid), 10)
	return cached(&nss.users, "id:"+id, func() (*user.User, error) { return user.LookupId(id) })
}

func userByName(name string) (*user.User, error) {
	return cached(&nss.users, "name:"+name, func() (*user.User, error) { return user.Lookup(name) })
}

func groupByID(gid uint32) (*user.Group, error) {
	id := strconv.FormatUint(uint64(gid), 10)
	return cached(&nss.groups, "id:"+id, func() (*user.Group, error) { return user.LookupGroupId(id) })
}

func groupByName(name string) (*user.Group, error) {
	return cached(&nss.groups, "name:"+name, func() (*user.Group, error) { return user.LookupGroup(name) })
}

func userName(uid uint32) string {
	if u, err := userByID(uid); err == nil {
		return u.Username
	}
	return strconv.FormatUint(uint64(uid), 10)
}

func groupName(gid uint32) string {
	if g, err := groupByID(gid); err == nil {
		return g.Name
	}
	return strconv.FormatUint(uint64(gid), 10)
}

func primaryGID(uid uint32) (uint32, bool) {
	u, err := userByID(uid)
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
	u, err := userByName(v)
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
	g, err := groupByName(v)
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
	u, err := userByID(uid)
	if err != nil {
		return out
	}
	ids, err := cached(&nss.gids, uid, u.GroupIds)
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
