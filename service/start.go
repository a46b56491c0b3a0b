package service

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/porto-dev/porto/api"
	"github.com/porto-dev/porto/isolation"
	"golang.org/x/sys/unix"
)

// runPlan is everything a start needs, computed before touching the system.
type runPlan struct {
	cfg      isolation.Config
	spec     isolation.LaunchSpec
	meta     bool // no command: a meta container
	process  bool // a process is started (command, or porto-init for an isolated meta)
	uid, gid int
	workDir  string // porto-owned directory to create (and remove on stop); "" if none
	stdout   string // default std files porto creates ("" when a custom path is set)
	stderr   string
}

func (m *Manager) plan(c *Container) (*runPlan, error) {
	p := &runPlan{}
	argv, err := SplitCommand(m.value(c, "command"))
	if err != nil {
		return nil, api.Errorf(api.InvalidValue, "command: %v", err)
	}
	isolate := m.boolValue(c, "isolate")
	p.meta = len(argv) == 0
	p.process = !p.meta || isolate

	uid, err := lookupUID(m.value(c, "user"))
	if err != nil {
		return nil, err
	}
	gid, err := lookupGID(m.value(c, "group"))
	if err != nil {
		return nil, err
	}
	p.uid, p.gid = int(uid), int(gid)
	if !p.process {
		return p, nil
	}

	root := m.value(c, "root")
	cwd := m.value(c, "cwd")
	cfg := &p.cfg
	cfg.Name = c.name
	cfg.UID, cfg.GID = p.uid, p.gid
	cfg.Groups = supplementaryGroups(uid, gid)
	cfg.Cwd = cwd
	cfg.Isolate = isolate
	if root != "/" {
		cfg.Root = root
		cfg.RootReadonly = m.boolValue(c, "root_readonly")
	}
	if cfg.Binds, err = isolation.ParseBinds(m.value(c, "bind")); err != nil {
		return nil, api.Errorf(api.InvalidValue, "bind: %v", err)
	}
	cfg.BindDNS = m.boolValue(c, "bind_dns")
	cfg.Hostname = m.value(c, "hostname")
	cfg.VirtMode = m.value(c, "virt_mode")
	if caps, ok := c.prop("capabilities"); ok && caps != "" {
		if cfg.Capabilities, err = isolation.ParseCapabilities(caps); err != nil {
			return nil, api.Errorf(api.InvalidValue, "capabilities: %v", err)
		}
	}
	if cfg.Rlimits, err = ParseUlimit(m.value(c, "ulimit")); err != nil {
		return nil, err
	}
	if err := checkRlimits(cfg.Rlimits); err != nil {
		return nil, err
	}
	userEnv, err := ParseEnv(m.value(c, "env"))
	if err != nil {
		return nil, err
	}
	user := m.value(c, "user")
	cfg.Env = buildEnv(userEnv, map[string]string{
		"PATH":       "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"HOME":       cwd,
		"USER":       user,
		"container":  "lxc",
		"PORTO_NAME": c.name,
		"PORTO_HOST": m.host,
		"PORTO_USER": userName(c.ownerUID()),
	})
	if p.meta {
		// porto-init without arguments: it holds the namespaces.
		cfg.Argv = nil
		cfg.InitFD = 4
	} else {
		cfg.Argv = argv
	}

	// std streams: porto's own files unless a path is set.
	if root == "/" {
		p.workDir = filepath.Join(m.cfg.Place, c.name)
	}
	if v, ok := c.prop("stdin_path"); ok && v != "/dev/null" {
		cfg.StdinPath = v
	}
	if v, ok := c.prop("stdout_path"); ok {
		cfg.StdoutPath = v
	} else {
		p.stdout = filepath.Join(m.workDir(c), "stdout")
	}
	if v, ok := c.prop("stderr_path"); ok {
		cfg.StderrPath = v
	} else {
		p.stderr = filepath.Join(m.workDir(c), "stderr")
	}

	p.spec.Cloneflags = isolation.CloneFlags(cfg)
	// Share the namespaces of the nearest ancestor that has a process; an
	// isolated child gets a pid namespace nested in its pid namespace (and
	// copies of its mount and UTS namespaces, a new IPC namespace).
	for a := c.parent; a != nil && !a.isRoot(); a = a.parent {
		a.mu.Lock()
		pid, st := a.rec.RootPid, a.rec.State
		a.mu.Unlock()
		if pid > 0 && (st == api.StateRunning || st == api.StateMeta || st == api.StatePaused) {
			p.spec.JoinPid = pid
			p.spec.JoinNS = []string{"ipc", "uts", "net", "pid", "mnt"}
			if isolate {
				p.spec.JoinNS = []string{"uts", "net", "pid", "mnt"}
			}
			break
		}
	}
	return p, nil
}

// buildEnv puts the user's variables first, in their order (a name set
// twice keeps its last value), then the defaults they did not override.
func buildEnv(user []string, defaults map[string]string) []string {
	out := make([]string, 0, len(user)+len(defaults))
	seen := map[string]int{}
	for _, kv := range user {
		k, _, _ := strings.Cut(kv, "=")
		if i, dup := seen[k]; dup {
			out[i] = kv
			continue
		}
		seen[k] = len(out)
		out = append(out, kv)
	}
	for _, k := range []string{"PATH", "HOME", "USER", "container", "PORTO_NAME", "PORTO_HOST", "PORTO_USER"} {
		if _, set := seen[k]; !set {
			out = append(out, k+"="+defaults[k])
		}
	}
	return out
}

// doStart starts a stopped container whose parent is running or meta. The
// caller holds c's operation lock.
func (m *Manager) doStart(ctx context.Context, c *Container) error {
	p, err := m.plan(c)
	if err != nil {
		return err
	}
	// The cgroups are made while the std files are opened and the stage is
	// spawned (startProcess waits for them before it attaches the stage).
	cgDone := make(chan error, 1)
	go func() { cgDone <- m.prepareCgroups(c) }()
	var cgErr error
	cgWaited := false
	cgroups := func() error {
		if !cgWaited {
			cgErr, cgWaited = <-cgDone, true
		}
		return cgErr
	}
	c.mu.Lock()
	c.rec.StartErrno = 0
	c.rec.ExitStatus = 0
	c.rec.ExitLost = false
	c.rec.OOMKilled = false
	c.rec.DeathTime = 0
	c.rec.StartTime = time.Now().UnixMilli()
	c.mu.Unlock()

	if !p.process {
		if err := cgroups(); err != nil {
			return err
		}
		m.setState(c, api.StateMeta)
		return nil
	}
	err = m.startProcess(c, p, cgroups)
	if err != nil {
		if cerr := cgroups(); cerr != nil {
			err = cerr // a limit the kernel refused says more than what followed
		} else {
			m.removeCgroups(c)
		}
		m.cleanupRun(c)
		c.mu.Lock()
		c.rec.State = api.StateStopped
		c.rec.RootPid = 0
		c.rec.StartTime = 0
		c.mu.Unlock()
		m.save(c)
		return err
	}
	if p.meta {
		m.setState(c, api.StateMeta)
	} else {
		m.setState(c, api.StateRunning)
	}
	return nil
}

// prepareCgroups creates c's cgroups and applies its limits; on failure
// nothing is left.
func (m *Manager) prepareCgroups(c *Container) error {
	if err := m.cg.Create(c.name); err != nil {
		return api.Wrap(api.Unknown, err, "cgroups: "+err.Error())
	}
	if err := m.netSetup(c); err != nil {
		m.removeCgroups(c)
		return err
	}
	if err := m.applyLimits(c); err != nil {
		m.removeCgroups(c)
		return err
	}
	return nil
}

// startProcess spawns the stage and starts the command. cgroups waits for
// the container's cgroups (made concurrently) and says whether they exist.
func (m *Manager) startProcess(c *Container, p *runPlan, cgroups func() error) error {
	files, err := m.openStd(c, p)
	defer closeAll(files)
	if err != nil {
		return err
	}
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return api.Wrap(api.Unknown, err, "socketpair: "+err.Error())
	}
	// Our end is non-blocking so the wait for exec can have a deadline.
	unix.SetNonblock(fds[0], true)
	parentEnd := os.NewFile(uintptr(fds[0]), "sync")
	childEnd := os.NewFile(uintptr(fds[1]), "sync-child")
	defer parentEnd.Close()
	files = append(files, childEnd)
	if p.meta {
		initf, err := os.Open(m.cfg.InitPath)
		if err != nil {
			return api.Errorf(api.Unknown, "porto-init: %v", err)
		}
		files = append(files, initf)
	}

	m.beginStart()
	defer m.endStart()
	pid, err := m.spawner.Spawn(p.spec, files)
	if err == nil {
		m.registerPid(c, pid)
	}
	closeAll(files)
	files = nil
	if err != nil {
		if j := p.spec.JoinPid; j > 0 && joinGone(j) {
			return api.Errorf(api.InvalidState, "the parent container's process exited during the start of %s", c.name)
		}
		return api.Wrap(api.Unknown, err, "spawn: "+err.Error())
	}
	c.mu.Lock()
	c.rec.RootPid = pid
	c.mu.Unlock()

	fail := func(e error) error {
		syscall.Kill(pid, syscall.SIGKILL)
		m.reapRoot(c, m.cfg.KillTimeout, true)
		if j := p.spec.JoinPid; j > 0 && joinGone(j) {
			// The ancestor whose namespaces we were joining died meanwhile.
			return api.Errorf(api.InvalidState, "the parent container's process exited during the start of %s", c.name)
		}
		return e
	}
	if err := cgroups(); err != nil {
		return fail(err)
	}
	if err := m.cg.Attach(c.name, pid); err != nil {
		return fail(api.Wrap(api.Unknown, err, "cgroups: "+err.Error()))
	}
	m.save(c) // RootPid is on disk before the command runs
	if err := isolation.Release(parentEnd, &p.cfg); err != nil {
		return fail(api.Wrap(api.Unknown, err, "start: "+err.Error()))
	}
	parentEnd.SetReadDeadline(time.Now().Add(m.cfg.StartTimeout))
	cmd, err := isolation.WaitExec(parentEnd)
	if err != nil {
		var se *isolation.StartError
		if errors.As(err, &se) {
			c.mu.Lock()
			c.rec.StartErrno = se.Errno
			c.mu.Unlock()
			return fail(api.Errorf(startErrorCode(se), "%s", se.Error()))
		}
		return fail(api.Wrap(api.Unknown, err, "start: "+err.Error()))
	}
	if cmd > 0 {
		// The stage forked the command into the joined pid namespace and
		// exits 0; the command, reparented to the supervisor, is the
		// container's root process from now on.
		if st, _, ok := m.reapRoot(c, m.cfg.KillTimeout, true); !ok || st != 0 {
			m.log.Warn("isolation stage did not exit cleanly after forking the command", "container", c.name, "stage", pid, "status", st, "exited", ok)
			if !ok {
				m.unregisterPid(pid)
			}
		}
		pid = cmd
		m.registerPid(c, pid)
		c.mu.Lock()
		c.rec.RootPid = pid
		c.mu.Unlock()
	}
	st := procStartTime(pid)
	c.mu.Lock()
	c.rec.RootStart = st
	if p.cfg.StdoutPath != "" {
		c.rec.Stdout = fileID(fmt.Sprintf("/proc/%d/fd/1", pid), p.cfg.StdoutPath)
	}
	if p.cfg.StderrPath != "" {
		c.rec.Stderr = fileID(fmt.Sprintf("/proc/%d/fd/2", pid), p.cfg.StderrPath)
	}
	c.mu.Unlock()
	return nil
}

// openStd opens fds 0..2 for the stage: /dev/null for stdin (a custom path
// is opened by the stage itself, with the container's credentials), and
// porto's own stdout/stderr files.
func (m *Manager) openStd(c *Container, p *runPlan) ([]*os.File, error) {
	var files []*os.File
	devnull, err := os.OpenFile("/dev/null", os.O_RDWR, 0)
	if err != nil {
		return nil, api.Wrap(api.Unknown, err, err.Error())
	}
	files = append(files, devnull)
	if p.workDir != "" {
		if err := m.makeWorkDir(c, p.workDir, p.uid, p.gid); err != nil {
			return files, err
		}
	}
	for _, which := range []string{"stdout", "stderr"} {
		path := p.stdout
		if which == "stderr" {
			path = p.stderr
		}
		if path == "" {
			dup, err := os.OpenFile("/dev/null", os.O_WRONLY, 0)
			if err != nil {
				return files, api.Wrap(api.Unknown, err, err.Error())
			}
			files = append(files, dup)
			continue
		}
		var f *os.File
		var id stdFile
		create := func() (err error) { f, id, err = createStd(path, p.uid, p.gid); return err }
		if c.ownerUID() != 0 {
			// A non-root owner's paths are used with the user's rights.
			err = runAs(p.uid, p.gid, p.cfg.Groups, create)
		} else {
			err = create()
		}
		if err != nil {
			return files, api.Errorf(api.Unknown, "%s: %v", which, err)
		}
		files = append(files, f)
		c.mu.Lock()
		if which == "stdout" {
			c.rec.Stdout = id
		} else {
			c.rec.Stderr = id
		}
		c.rec.OwnFiles = append(c.rec.OwnFiles, path)
		c.mu.Unlock()
	}
	return files, nil
}

// makeWorkDir creates place/<name> afresh, owned by the container's user.
func (m *Manager) makeWorkDir(c *Container, dir string, uid, gid int) error {
	if err := os.RemoveAll(dir); err != nil {
		return api.Wrap(api.Unknown, err, "working directory: "+err.Error())
	}
	// The parents are shared with siblings, whose cleanup removes them
	// when they look empty: between our MkdirAll and Mkdir, say. Retry.
	var err error
	for try := 0; try < 5; try++ {
		if err = os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
			break
		}
		if err = os.Mkdir(dir, 0o755); !errors.Is(err, fs.ErrNotExist) {
			break
		}
	}
	if err != nil {
		return api.Wrap(api.Unknown, err, "working directory: "+err.Error())
	}
	if err := os.Lchown(dir, uid, gid); err != nil {
		os.Remove(dir)
		return api.Wrap(api.Unknown, err, "working directory: "+err.Error())
	}
	c.mu.Lock()
	c.rec.WorkDir = dir
	c.mu.Unlock()
	return nil
}

// createStd creates a std file porto owns, never following a symlink,
// and hands it to the container's user.
func createStd(path string, uid, gid int) (*os.File, stdFile, error) {
	if err := os.Remove(path); err != nil && !os.IsNotExist(err) {
		return nil, stdFile{}, err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW|os.O_APPEND, 0o644)
	if err != nil {
		return nil, stdFile{}, err
	}
	if err := f.Chown(uid, gid); err != nil {
		f.Close()
		os.Remove(path)
		return nil, stdFile{}, err
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
		f.Close()
		return nil, stdFile{}, err
	}
	return f, stdFile{Path: path, Dev: st.Dev, Ino: st.Ino}, nil
}

func fileID(procPath, path string) stdFile {
	var st syscall.Stat_t
	if err := syscall.Stat(procPath, &st); err != nil {
		return stdFile{Path: path}
	}
	return stdFile{Path: path, Dev: st.Dev, Ino: st.Ino}
}

func closeAll(files []*os.File) {
	for _, f := range files {
		if f != nil {
			f.Close()
		}
	}
}

// cleanupRun removes the files porto created for the last run.
func (m *Manager) cleanupRun(c *Container) {
	c.mu.Lock()
	own, dir := c.rec.OwnFiles, c.rec.WorkDir
	c.rec.OwnFiles, c.rec.WorkDir = nil, ""
	c.rec.Stdout, c.rec.Stderr = stdFile{}, stdFile{}
	c.mu.Unlock()
	uid, gid, groups, asUser, err := m.pathCreds(c)
	if err != nil && len(own) > 0 {
		m.log.Warn("cannot remove the container's files: unknown user", "container", c.name, "files", own, "err", err)
		own = nil
	}
	for _, f := range own {
		remove := func() error { return os.Remove(f) }
		if asUser {
			err = runAs(uid, gid, groups, remove)
		} else {
			err = remove()
		}
		if err != nil && !os.IsNotExist(err) {
			m.log.Warn("cannot remove file", "container", c.name, "path", f, "err", err)
		}
	}
	if dir != "" {
		if err := os.RemoveAll(dir); err != nil {
			m.log.Warn("cannot remove working directory", "container", c.name, "path", dir, "err", err)
		}
		// Remove empty parents up to place (nested names).
		for d := filepath.Dir(dir); strings.HasPrefix(d, m.cfg.Place+"/"); d = filepath.Dir(d) {
			if os.Remove(d) != nil {
				break
			}
		}
	}
}

func (m *Manager) removeCgroups(c *Container) {
	if err := m.cg.Remove(c.name); err != nil {
		m.log.Warn("cannot remove cgroups", "container", c.name, "err", err)
	}
	m.netTeardown(c)
}

// procStartTime is field 22 of /proc/pid/stat (clock ticks since boot).
func procStartTime(pid int) uint64 {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 20 {
		return 0
	}
	n, _ := strconv.ParseUint(f[19], 10, 64)
	return n
}

// joinGone reports whether the process whose namespaces a start joins has
// exited: gone, a zombie, or a namespace init that waits for the rest of
// its namespace to be reaped (its namespaces are already released).
func joinGone(pid int) bool {
	if s := procState(pid); s == "" || s == "Z" {
		return true
	}
	_, err := os.Stat("/proc/" + strconv.Itoa(pid) + "/ns/mnt") // ns/pid outlives the nsproxy
	return err != nil
}

// procState is field 3 of /proc/pid/stat ("" if gone).
func procState(pid int) string {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return ""
	}
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+2 >= len(s) {
		return ""
	}
	return s[i+2 : i+3]
}

// checkRlimits refuses, before anything starts, a hard limit above the
// daemon's own when the daemon may not raise it (no CAP_SYS_RESOURCE).
func checkRlimits(ls []isolation.Rlimit) error {
	if hasCap(capSysResource) {
		return nil
	}
	for _, l := range ls {
		var cur unix.Rlimit
		if err := unix.Getrlimit(l.Resource, &cur); err != nil {
			continue
		}
		if l.Hard > cur.Max {
			return api.Errorf(api.ResourceNotAvailable, "ulimit %s: hard limit %s exceeds this host's %s, and porto lacks CAP_SYS_RESOURCE to raise it",
				isolation.RlimitName(l.Resource), rlimString(l.Hard), rlimString(cur.Max))
		}
	}
	return nil
}

func rlimString(v uint64) string {
	if v == rlimInfinity {
		return "unlimited"
	}
	return strconv.FormatUint(v, 10)
}

const capSysResource = 24

// hasCap reports whether this process has capability n in its effective set.
func hasCap(n uint) bool {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "CapEff:"); ok {
			mask, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			return err == nil && mask&(1<<n) != 0
		}
	}
	return false
}

// startErrorCode classifies a failure of the setup stage. The seed fixes a
// failed exec as Unknown; a bind source that does not exist is a bad value
// (issue 3), and one the caller may not read is a permission error.
func startErrorCode(se *isolation.StartError) api.Code {
	if strings.HasPrefix(se.Op, "bind(") {
		switch syscall.Errno(se.Errno) {
		case syscall.ENOENT, syscall.ENOTDIR:
			return api.InvalidValue
		case syscall.EACCES, syscall.EPERM:
			return api.Permission
		}
	}
	return api.Unknown
}
