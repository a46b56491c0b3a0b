package isolation

// Config is everything the setup stage needs. It is pure data and travels as
// JSON over the sync socket, so it must not hold fds or functions.
type Config struct {
	Name    string   `json:"name"`   // container name, for messages
	Argv    []string `json:"argv"`   // command; Argv[0] is looked up in PATH of Env
	Env     []string `json:"env"`    // complete environment, "K=V"
	Cwd     string   `json:"cwd"`    // working directory, inside the container's root
	UID     int      `json:"uid"`    // credentials the command runs with
	GID     int      `json:"gid"`    //
	Groups  []int    `json:"groups"` // supplementary groups
	Rlimits []Rlimit `json:"rlimits,omitempty"`

	// Isolate: the process got a new pid namespace (Launch's clone flags);
	// the stage then mounts a fresh /proc in its own mount namespace.
	Isolate bool `json:"isolate"`
	// NewMountNS: the process got a new mount namespace.
	NewMountNS bool `json:"new_mount_ns"`

	Root         string `json:"root,omitempty"` // host path of the root; "" or "/" is the host's
	RootReadonly bool   `json:"root_readonly,omitempty"`
	Binds        []Bind `json:"binds,omitempty"`
	BindDNS      bool   `json:"bind_dns,omitempty"`
	Hostname     string `json:"hostname,omitempty"` // set in a new UTS namespace

	// Capabilities, when non-nil, is the bounding set (capability numbers);
	// nil keeps the default. (No omitempty: an empty, non-nil list drops
	// every capability and must survive the JSON round trip.)
	Capabilities []int  `json:"capabilities"`
	VirtMode     string `json:"virt_mode,omitempty"` // "app" or "os"

	// Paths the stage opens itself, with the container's credentials, for
	// stdio descriptors the parent did not pass (empty: keep what was passed).
	StdinPath  string `json:"stdin_path,omitempty"`
	StdoutPath string `json:"stdout_path,omitempty"`
	StderrPath string `json:"stderr_path,omitempty"`

	// InitFD, when > 0, is the number (in the stage) of an open porto-init
	// binary to execute as pid 1 instead of looking up Argv[0] (meta
	// containers). Argv is then porto-init's own argv: ["porto-init"] (or
	// empty) holds the namespaces, ["porto-init", "--", CMD...] runs CMD.
	InitFD int `json:"init_fd,omitempty"`
	// CgroupProcs lists cgroup.procs files the stage writes "0" into
	// before anything else, to join its cgroups itself.
	CgroupProcs []string `json:"cgroup_procs,omitempty"`
}

// Rlimit is one resource limit; Resource is an RLIMIT_* number.
type Rlimit struct {
	Resource int    `json:"resource"`
	Soft     uint64 `json:"soft"`
	Hard     uint64 `json:"hard"`
}

// Bind is one bind mount: Source on the host, Target inside the container.
type Bind struct {
	Source   string `json:"source"`
	Target   string `json:"target"`
	ReadOnly bool   `json:"read_only,omitempty"`
}

// LaunchSpec is what the process that forks the stage needs: clone flags
// and namespaces to join first. It is small so the supervisor stays small.
type LaunchSpec struct {
	Cloneflags uintptr `json:"cloneflags"`
	// JoinPid, when > 0, makes the stage join the namespaces of this pid
	// (those listed in JoinNS: "pid", "mnt", "net", "ipc", "uts") before it
	// is created, so it lands inside a running parent container.
	JoinPid int      `json:"join_pid,omitempty"`
	JoinNS  []string `json:"join_ns,omitempty"`
}

// StartError is the failure the stage reports over the sync socket.
type StartError struct {
	Errno int    `json:"errno"` // errno of the failed syscall, 0 if none
	Op    string `json:"op"`    // e.g. "execvpe(ls)", "pivot_root"
	Msg   string `json:"msg"`   // strerror-style text
}

// Error renders as Porto does: "No such file or directory: execvpe(ls)".
func (e *StartError) Error() string {
	if e.Op == "" {
		return e.Msg
	}
	return e.Msg + ": " + e.Op
}

// Exit is one exit of a direct child of the supervisor: its pid and raw
// wait(2) status. The receiver acknowledges it (after persisting it) so the
// supervisor can reap the zombie.
type Exit struct {
	Pid    int `json:"pid"`
	Status int `json:"status"`
}
