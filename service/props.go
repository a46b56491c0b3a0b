package service

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/porto-dev/porto/api"
	"github.com/porto-dev/porto/isolation"
)

// prop describes one property or datum. Properties are stored in
// record.Props in canonical form; data are computed by get.
type prop struct {
	name, desc string
	data       bool // a read-only datum
	dynamic    bool // settable while running, paused or meta
	rootOnly   bool // needs uid 0 or org.porto.set-privileged
	// def is a property's value when not set.
	def func(m *Manager, c *Container) string
	// get computes a datum (or overrides a property's read).
	get func(m *Manager, c *Container) (string, error)
	// validate checks a new value and returns its canonical form.
	validate func(m *Manager, c *Container, v string) (string, error)
	// apply pushes a dynamic property into a live container.
	apply func(m *Manager, c *Container, v string) error
	// allow: a root-only property may still be set by others to this value
	// (e.g. user = the caller's own user).
	allow func(m *Manager, c *Container, caller Caller, canon string) bool
}

func (p *prop) harmless(m *Manager, c *Container, caller Caller, canon string) bool {
	return p.allow != nil && p.allow(m, c, caller, canon)
}

var propList []*prop
var propIndex = map[string]*prop{}

func register(ps ...*prop) {
	for _, p := range ps {
		if _, dup := propIndex[p.name]; dup {
			panic("duplicate property " + p.name)
		}
		propList = append(propList, p)
		propIndex[p.name] = p
	}
}

func lookupProp(name string) *prop { return propIndex[name] }

// getKey reads key of c.
func (m *Manager) getKey(c *Container, key string) (string, error) {
	p := lookupProp(key)
	if p == nil {
		return "", api.Errorf(api.InvalidProperty, "unknown property or data %q", key)
	}
	if p.get != nil {
		return p.get(m, c)
	}
	if v, ok := c.prop(key); ok {
		return v, nil
	}
	if p.def != nil {
		return p.def(m, c), nil
	}
	return "", nil
}

// value returns the effective value of a property (set or default).
func (m *Manager) value(c *Container, key string) string {
	v, _ := m.getKey(c, key)
	return v
}

func (m *Manager) boolValue(c *Container, key string) bool {
	b, _ := ParseBool(m.value(c, key))
	return b
}

// ---- validators -----------------------------------------------------------

func constDef(v string) func(*Manager, *Container) string {
	return func(*Manager, *Container) string { return v }
}

func vBool(_ *Manager, _ *Container, v string) (string, error) {
	b, err := ParseBool(v)
	if err != nil {
		return "", api.Errorf(api.InvalidValue, "%v", err)
	}
	return strconv.FormatBool(b), nil
}

func vString(max int) func(*Manager, *Container, string) (string, error) {
	return func(_ *Manager, _ *Container, v string) (string, error) {
		if len(v) > max {
			return "", api.Errorf(api.InvalidValue, "value is longer than %d bytes", max)
		}
		if strings.IndexByte(v, 0) >= 0 {
			return "", api.Errorf(api.InvalidValue, "value contains a NUL byte")
		}
		return v, nil
	}
}

func vPath(allowEmpty bool) func(*Manager, *Container, string) (string, error) {
	return func(_ *Manager, _ *Container, v string) (string, error) {
		if v == "" && allowEmpty {
			return "", nil
		}
		if !filepath.IsAbs(v) {
			return "", api.Errorf(api.InvalidValue, "%q is not an absolute path", v)
		}
		if len(v) > 4096 || strings.IndexByte(v, 0) >= 0 {
			return "", api.Errorf(api.InvalidValue, "invalid path")
		}
		return filepath.Clean(v), nil
	}
}

func vSize(max uint64) func(*Manager, *Container, string) (string, error) {
	return func(_ *Manager, _ *Container, v string) (string, error) {
		n, err := ParseSize(v)
		if err != nil {
			return "", api.Errorf(api.InvalidValue, "%v (a byte count, optionally with K, M, G or T)", err)
		}
		if max > 0 && n > max {
			return "", api.Errorf(api.InvalidValue, "%s exceeds the maximum %d", v, max)
		}
		return strconv.FormatUint(n, 10), nil
	}
}

func vInt(min, max int64) func(*Manager, *Container, string) (string, error) {
	return func(_ *Manager, _ *Container, v string) (string, error) {
		n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		if err != nil || n < min || n > max {
			return "", api.Errorf(api.InvalidValue, "%q is not an integer from %d to %d", v, min, max)
		}
		return strconv.FormatInt(n, 10), nil
	}
}

// ---- data helpers ---------------------------------------------------------

func needState(c *Container, key string, ok ...api.State) (record, error) {
	c.mu.Lock()
	r := c.rec
	c.mu.Unlock()
	for _, s := range ok {
		if r.State == s {
			return r, nil
		}
	}
	return r, api.Errorf(api.InvalidState, "%s is not available in state %s", key, r.State)
}

var live = []api.State{api.StateRunning, api.StatePaused, api.StateMeta}
var started = []api.State{api.StateRunning, api.StatePaused, api.StateMeta, api.StateDead}

func statData(key string, f func(s statsView) uint64) *prop {
	return &prop{name: key, data: true, get: func(m *Manager, c *Container) (string, error) {
		if _, err := needState(c, key, started...); err != nil {
			return "", err
		}
		st, err := m.cg.Stats(c.name)
		if err != nil {
			return "", api.Wrap(api.Unknown, err, fmt.Sprintf("%s: %v", key, err))
		}
		return strconv.FormatUint(f(statsView(st)), 10), nil
	}}
}

func init() {
	register(
		// ---- properties
		&prop{name: "command", desc: "command to run (shell-like words, no expansions); empty: a meta container",
			def: func(m *Manager, c *Container) string {
				if v, _ := c.prop("virt_mode"); v == "os" {
					return "/sbin/init"
				}
				return ""
			},
			validate: func(_ *Manager, _ *Container, v string) (string, error) {
				if len(v) > 64<<10 {
					return "", api.Errorf(api.InvalidValue, "command is longer than 64K")
				}
				if _, err := SplitCommand(v); err != nil {
					return "", api.Errorf(api.InvalidValue, "command: %v", err)
				}
				return v, nil
			}},
		&prop{name: "user", desc: "user the command runs as (name or uid); default: the container's owner", rootOnly: true,
			def:      func(m *Manager, c *Container) string { return userName(c.ownerUID()) },
			validate: func(_ *Manager, _ *Container, v string) (string, error) { return canonUser(v) },
			allow: func(_ *Manager, c *Container, caller Caller, canon string) bool {
				uid, err := lookupUID(canon)
				return err == nil && uid == caller.UID
			}},
		&prop{name: "group", desc: "group the command runs as (name or gid); default: the owner's primary group", rootOnly: true,
			def:      func(m *Manager, c *Container) string { return groupName(c.ownerGID()) },
			validate: func(_ *Manager, _ *Container, v string) (string, error) { return canonGroup(v) },
			allow: func(_ *Manager, c *Container, caller Caller, canon string) bool {
				gid, err := lookupGID(canon)
				if err != nil {
					return false
				}
				if g, ok := primaryGID(caller.UID); ok && g == gid {
					return true
				}
				return gid == caller.GID
			}},
		&prop{name: "env", desc: "environment: NAME=VALUE; NAME2=VALUE2 (\\; escapes ;)",
			validate: func(_ *Manager, _ *Container, v string) (string, error) {
				if len(v) > 64<<10 {
					return "", api.Errorf(api.InvalidValue, "env is longer than 64K")
				}
				if _, err := ParseEnv(v); err != nil {
					return "", err
				}
				return v, nil
			}},
		&prop{name: "cwd", desc: "working directory; default: /place/porto/<name> (created and removed by porto), or / with root",
			def:      func(m *Manager, c *Container) string { return m.defaultCwd(c) },
			validate: vPath(false)},
		&prop{name: "isolate", desc: "run in a new pid namespace (the command is pid 1)",
			def: constDef("true"), validate: vBool},
		&prop{name: "root", desc: "root directory of the container (pivot_root); / shares the host's",
			def: constDef("/"), validate: vPath(false)},
		&prop{name: "root_readonly", desc: "mount the root read-only", def: constDef("false"), validate: vBool},
		&prop{name: "bind", desc: "bind mounts: SRC DST [ro|rw]; ... (DST inside the container)",
			validate: func(_ *Manager, _ *Container, v string) (string, error) {
				if _, err := isolation.ParseBinds(v); err != nil {
					return "", api.Errorf(api.InvalidValue, "bind: %v", err)
				}
				return v, nil
			}},
		&prop{name: "bind_dns", desc: "bind the host's /etc/hosts and /etc/resolv.conf; default: true with an isolated root",
			def: func(m *Manager, c *Container) string {
				return strconv.FormatBool(m.boolValue(c, "isolate") && m.value(c, "root") != "/")
			}, validate: vBool},
		&prop{name: "hostname", desc: "hostname in a new UTS namespace", validate: func(_ *Manager, _ *Container, v string) (string, error) {
			if len(v) > 64 || strings.ContainsAny(v, "/ \t\n\x00") {
				return "", api.Errorf(api.InvalidValue, "%q is not a valid hostname (at most 64 bytes, no spaces or /)", v)
			}
			return v, nil
		}},
		&prop{name: "virt_mode", desc: "app (default) or os (the command defaults to /sbin/init)", def: constDef("app"),
			validate: func(_ *Manager, _ *Container, v string) (string, error) {
				if v != "app" && v != "os" {
					return "", api.Errorf(api.InvalidValue, "virt_mode is app or os, not %q", v)
				}
				return v, nil
			}},
		&prop{name: "capabilities", desc: "capability bounding set: NAME; NAME... (root only)", rootOnly: true,
			validate: func(_ *Manager, _ *Container, v string) (string, error) {
				if _, err := isolation.ParseCapabilities(v); err != nil {
					return "", api.Errorf(api.InvalidValue, "capabilities: %v", err)
				}
				return v, nil
			}},
		&prop{name: "allowed_devices", desc: "device cgroup rules: <type> <major>:<minor> <access>; ... (root only)", rootOnly: true,
			def: constDef("a *:* rwm"), validate: vString(4096)},
		&prop{name: "stdin_path", desc: "stdin of the command", def: constDef("/dev/null"), validate: vPath(false)},
		&prop{name: "stdout_path", desc: "stdout of the command; default: a file porto creates (read it with get stdout)",
			def: func(m *Manager, c *Container) string { return m.defaultStd(c, "stdout") }, validate: vPath(false)},
		&prop{name: "stderr_path", desc: "stderr of the command; default: a file porto creates (read it with get stderr)",
			def: func(m *Manager, c *Container) string { return m.defaultStd(c, "stderr") }, validate: vPath(false)},
		&prop{name: "stdout_limit", desc: "bytes of stdout/stderr returned by get",
			def: func(m *Manager, _ *Container) string { return strconv.FormatUint(m.cfg.StdoutLimit, 10) }, validate: vSize(1 << 30)},
		&prop{name: "ulimit", desc: "resource limits: name: soft [hard]; ... (e.g. nofile: 4096 8192)",
			validate: func(_ *Manager, _ *Container, v string) (string, error) {
				if _, err := ParseUlimit(v); err != nil {
					return "", err
				}
				return v, nil
			}},
		&prop{name: "respawn", desc: "restart the container when it dies", def: constDef("false"), validate: vBool},
		&prop{name: "max_respawn", desc: "how many times to respawn; -1: unlimited", def: constDef("-1"), validate: vInt(-1, 1<<31-1)},
		&prop{name: "aging_time", desc: "seconds after which a dead container is destroyed",
			def: func(m *Manager, _ *Container) string {
				return strconv.FormatInt(int64(m.cfg.AgingTime/time.Second), 10)
			},
			validate: vInt(0, 10*365*86400)},
		&prop{name: "private", desc: "free-form text for the user (at most 4096 bytes)", dynamic: true, validate: vString(4096)},
	)
	registerLimits()
	register(
		// ---- data
		&prop{name: "state", desc: "stopped, running, paused, dead or meta", data: true,
			get: func(_ *Manager, c *Container) (string, error) { return string(c.state()), nil }},
		&prop{name: "parent", desc: "name of the parent container", data: true,
			get: func(_ *Manager, c *Container) (string, error) {
				if c.parent == nil {
					return "", nil
				}
				return c.parent.name, nil
			}},
		&prop{name: "owner_user", desc: "user who created the container", data: true,
			get: func(_ *Manager, c *Container) (string, error) { return userName(c.ownerUID()), nil }},
		&prop{name: "owner_group", desc: "primary group of the user who created the container", data: true,
			get: func(_ *Manager, c *Container) (string, error) { return groupName(c.ownerGID()), nil }},
		&prop{name: "root_pid", desc: "host pid of the container's first process", data: true,
			get: func(_ *Manager, c *Container) (string, error) {
				r, err := needState(c, "root_pid", live...)
				if err != nil {
					return "", err
				}
				return strconv.Itoa(r.RootPid), nil
			}},
		&prop{name: "exit_status", desc: "raw wait(2) status of the dead container", data: true,
			get: func(_ *Manager, c *Container) (string, error) {
				r, err := needState(c, "exit_status", api.StateDead)
				if err != nil {
					return "", err
				}
				if r.ExitLost {
					return "", api.Errorf(api.LostError, "exit status is unknown: the container died while no porto process was watching it")
				}
				return strconv.Itoa(r.ExitStatus), nil
			}},
		&prop{name: "exit_code", desc: "exit code of the dead container, or -signal", data: true,
			get: func(_ *Manager, c *Container) (string, error) {
				r, err := needState(c, "exit_code", api.StateDead)
				if err != nil {
					return "", err
				}
				if r.ExitLost {
					return "", api.Errorf(api.LostError, "exit status is unknown: the container died while no porto process was watching it")
				}
				ws := syscallWaitStatus(r.ExitStatus)
				if ws.Signaled() {
					return strconv.Itoa(-int(ws.Signal())), nil
				}
				return strconv.Itoa(ws.ExitStatus()), nil
			}},
		&prop{name: "oom_killed", desc: "whether the container was killed by the OOM killer", data: true,
			get: func(_ *Manager, c *Container) (string, error) {
				r, err := needState(c, "oom_killed", api.StateDead)
				if err != nil {
					return "", err
				}
				return strconv.FormatBool(r.OOMKilled), nil
			}},
		&prop{name: "start_errno", desc: "errno of the failed start, 0 if none", data: true,
			get: func(_ *Manager, c *Container) (string, error) {
				c.mu.Lock()
				defer c.mu.Unlock()
				return strconv.Itoa(c.rec.StartErrno), nil
			}},
		&prop{name: "respawn_count", desc: "respawns since the last explicit start", data: true,
			get: func(_ *Manager, c *Container) (string, error) {
				c.mu.Lock()
				defer c.mu.Unlock()
				return strconv.Itoa(c.rec.Respawns), nil
			}},
		&prop{name: "time", desc: "seconds since start (until death when dead)", data: true,
			get: func(_ *Manager, c *Container) (string, error) {
				r, err := needState(c, "time", started...)
				if err != nil {
					return "", err
				}
				end := time.Now().UnixMilli()
				if r.State == api.StateDead && r.DeathTime > 0 {
					end = r.DeathTime
				}
				return strconv.FormatInt((end-r.StartTime)/1000, 10), nil
			}},
		&prop{name: "stdout", desc: "the command's stdout (the last stdout_limit bytes)", data: true,
			get: func(m *Manager, c *Container) (string, error) { return m.readStd(c, "stdout") }},
		&prop{name: "stderr", desc: "the command's stderr (the last stdout_limit bytes)", data: true,
			get: func(m *Manager, c *Container) (string, error) { return m.readStd(c, "stderr") }},
		statData("cpu_usage", func(s statsView) uint64 { return s.CPUUsage }),
		statData("memory_usage", func(s statsView) uint64 { return s.MemoryUsage }),
		statData("max_rss", func(s statsView) uint64 { return s.MaxRSS }),
		statData("minor_faults", func(s statsView) uint64 { return s.MinorFaults }),
		statData("major_faults", func(s statsView) uint64 { return s.MajorFaults }),
		statData("io_read", func(s statsView) uint64 { return s.IORead }),
		statData("io_write", func(s statsView) uint64 { return s.IOWrite }),
		statData("process_count", func(s statsView) uint64 { return s.ProcessCount }),
	)
	descs := map[string]string{
		"cpu_usage": "CPU time used, ns", "memory_usage": "memory used, bytes", "max_rss": "peak memory use, bytes",
		"minor_faults": "minor page faults", "major_faults": "major page faults", "io_read": "bytes read from disks",
		"io_write": "bytes written to disks", "process_count": "number of processes",
	}
	for k, d := range descs {
		propIndex[k].desc = d
	}
}

func (c *Container) ownerUID() uint32 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.rec.OwnerUID
}

func (c *Container) ownerGID() uint32 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.rec.OwnerGID
}

// defaultCwd: "/" inside a container with its own root, else place/<name>.
func (m *Manager) defaultCwd(c *Container) string {
	if m.value(c, "root") != "/" {
		return "/"
	}
	return filepath.Join(m.cfg.Place, c.name)
}

// workDir is the host directory where porto keeps the default std files:
// the container's root (the seed lists stdout and stderr there), or
// place/<name>.
func (m *Manager) workDir(c *Container) string {
	if r := m.value(c, "root"); r != "/" {
		return r
	}
	return filepath.Join(m.cfg.Place, c.name)
}

func (m *Manager) defaultStd(c *Container, which string) string {
	c.mu.Lock()
	f := c.rec.Stdout
	if which == "stderr" {
		f = c.rec.Stderr
	}
	c.mu.Unlock()
	if f.Path != "" {
		return f.Path
	}
	return filepath.Join(m.workDir(c), which)
}

var _ = os.Getpid
