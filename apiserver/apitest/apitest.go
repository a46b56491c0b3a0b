package apitest

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/porto-dev/porto/api"
	"github.com/porto-dev/porto/isolation"
	"github.com/porto-dev/porto/service"
	"github.com/porto-dev/porto/units"
)

// fakePidBase is above any possible pid_max (2^22), so a stray kill(2) of
// a fake pid can only fail with ESRCH.
const fakePidBase = 1 << 23

// Spawner plays the supervisor and the isolation stage: it reads the
// config from the sync socket and "execs" (closes it). A command "true"
// exits 0 at once, "false" exits 1; anything else runs until killed
// through Cgroups.Kill.
type Spawner struct {
	mu    sync.Mutex
	next  int
	exits chan isolation.Exit
	cg    *Cgroups
}

func (f *Spawner) Spawn(spec isolation.LaunchSpec, files []*os.File) (int, error) {
	f.mu.Lock()
	f.next++
	pid := f.next
	f.mu.Unlock()
	sync, err := syscall.Dup(int(files[3].Fd()))
	if err != nil {
		return 0, err
	}
	go func() {
		s := os.NewFile(uintptr(sync), "fake-stage")
		var hdr [4]byte
		if _, err := io.ReadFull(s, hdr[:]); err != nil {
			s.Close()
			f.exits <- isolation.Exit{Pid: pid, Status: 1 << 8}
			return
		}
		b := make([]byte, binary.BigEndian.Uint32(hdr[:]))
		io.ReadFull(s, b)
		cfg := new(isolation.Config)
		json.Unmarshal(b, cfg)
		s.Close() // "exec" succeeded
		switch {
		case len(cfg.Argv) > 0 && cfg.Argv[0] == "true":
			f.exits <- isolation.Exit{Pid: pid, Status: 0}
		case len(cfg.Argv) > 0 && cfg.Argv[0] == "false":
			f.exits <- isolation.Exit{Pid: pid, Status: 1 << 8}
		default:
			f.cg.track(pid, f.exits)
		}
	}()
	return pid, nil
}
func (f *Spawner) Exits() <-chan isolation.Exit { return f.exits }
func (f *Spawner) Ack(int) error                { return nil }
func (f *Spawner) SupervisorPid() int           { return os.Getpid() }

// Cgroups keeps cgroups in a set; Kill ends every long-running fake
// process (they are not tracked per cgroup).
type Cgroups struct {
	mu    sync.Mutex
	cgs   map[string]bool
	procs map[int]chan isolation.Exit
}

func (c *Cgroups) track(pid int, exits chan isolation.Exit) {
	c.mu.Lock()
	c.procs[pid] = exits
	c.mu.Unlock()
}

func (c *Cgroups) Create(name string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cgs[name] = true
	return nil
}
func (c *Cgroups) Attach(string, int) error    { return nil }
func (c *Cgroups) Procs(string) ([]int, error) { return nil, nil }
func (c *Cgroups) Kill(_ string, sig syscall.Signal) error {
	c.mu.Lock()
	procs := c.procs
	c.procs = map[int]chan isolation.Exit{}
	c.mu.Unlock()
	for pid, ch := range procs {
		ch <- isolation.Exit{Pid: pid, Status: int(sig)}
	}
	return nil
}
func (c *Cgroups) Freeze(string) error               { return nil }
func (c *Cgroups) Thaw(string) error                 { return nil }
func (c *Cgroups) Frozen(string) (bool, error)       { return false, nil }
func (c *Cgroups) Apply(string, units.Limits) error  { return nil }
func (c *Cgroups) Stats(string) (units.Stats, error) { return units.Stats{}, nil }
func (c *Cgroups) OOMKills(string) (uint64, error)   { return 0, nil }
func (c *Cgroups) Remove(name string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.cgs, name)
	return nil
}
func (c *Cgroups) Exists(name string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cgs[name]
}

// NewManager is a restored, running service.Manager over the fakes, with
// its state in a temporary directory. It is closed when the test ends.
func NewManager(t testing.TB, log *slog.Logger) *service.Manager {
	t.Helper()
	cfg := service.DefaultConfig()
	cfg.StateDir = t.TempDir()
	cfg.Place = t.TempDir()
	cg := &Cgroups{cgs: map[string]bool{}, procs: map[int]chan isolation.Exit{}}
	sp := &Spawner{next: fakePidBase, exits: make(chan isolation.Exit, 256), cg: cg}
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	m, err := service.New(cfg, sp, cg, log)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Restore(context.Background()); err != nil {
		t.Fatal(err)
	}
	m.Run()
	t.Cleanup(m.Close)
	return m
}

// Client is what the shared tests call: *client.Client over either
// transport implements it.
type Client interface {
	Create(ctx context.Context, name string) error
	Destroy(ctx context.Context, name string) error
	Start(ctx context.Context, name string) error
	Stop(ctx context.Context, name string, timeout time.Duration) error
	Kill(ctx context.Context, name string, sig int) error
	Pause(ctx context.Context, name string) error
	Resume(ctx context.Context, name string) error
	Wait(ctx context.Context, names []string, timeout time.Duration) (string, error)
	List(ctx context.Context) ([]string, error)
	Get(ctx context.Context, names, keys []string) ([]api.GetResult, error)
	GetProperty(ctx context.Context, name, key string) (string, error)
	SetProperty(ctx context.Context, name, key, value string) error
}

// PermEnv is one transport's side of the permission tests.
type PermEnv struct {
	// Owner calls as the test process itself.
	Owner Client
	// Become returns a client whose calls the server attributes to uid
	// (gid and only group = uid), as its transport would have established.
	Become func(uid uint32) Client
	// Allow sets what the (fake) polkit authority answers from now on.
	Allow func(bool)
	// Asked returns the polkit actions asked since the last call, in
	// order (nil if the transport's fake does not record them).
	Asked func() []string
}

// Other is the uid of the unprivileged caller of the permission table.
const Other = 4321

// PermStep is one row of the permission table.
type PermStep struct {
	What   string
	Other  bool // call as Other, else as the owner
	Polkit bool // what polkit answers for this step
	Code   api.Code
	Msg    string // the error message, when Code is not Success
	Call   func(ctx context.Context, c Client) error
	// Asks lists the polkit actions the step must ask (in order), when
	// the transport records them.
	Asks []string
}

// PermTable is the permission table: the same steps, the same answers
// over every transport. Steps run in order and build on each other.
var PermTable = []PermStep{
	{What: "owner creates roots", Code: api.Success,
		Call: func(ctx context.Context, c Client) error { return c.Create(ctx, "roots") }},
	{What: "owner sets roots' command", Code: api.Success,
		Call: func(ctx context.Context, c Client) error { return c.SetProperty(ctx, "roots", "command", "sleep 1000") }},
	{What: "other may read roots", Other: true, Code: api.Success,
		Call: func(ctx context.Context, c Client) error {
			v, err := c.GetProperty(ctx, "roots", "state")
			if err == nil && v != "stopped" {
				return api.Errorf(api.Unknown, "state %q", v)
			}
			return err
		}},
	{What: "other may list", Other: true, Code: api.Success,
		Call: func(ctx context.Context, c Client) error { _, err := c.List(ctx); return err }},
	{What: "other may not destroy roots", Other: true, Code: api.Permission, Msg: "Permission error",
		Asks: []string{api.ActionManageAny},
		Call: func(ctx context.Context, c Client) error { return c.Destroy(ctx, "roots") }},
	{What: "other may not start roots", Other: true, Code: api.Permission, Msg: "Permission error",
		Asks: []string{api.ActionManageAny},
		Call: func(ctx context.Context, c Client) error { return c.Start(ctx, "roots") }},
	{What: "other may not set roots' command", Other: true, Code: api.Permission, Msg: "Permission error",
		Asks: []string{api.ActionManageAny},
		Call: func(ctx context.Context, c Client) error { return c.SetProperty(ctx, "roots", "command", "true") }},
	{What: "other may not kill roots", Other: true, Code: api.Permission, Msg: "Permission error",
		Asks: []string{api.ActionManageAny},
		Call: func(ctx context.Context, c Client) error { return c.Kill(ctx, "roots", 9) }},
	{What: "other may not stop roots", Other: true, Code: api.Permission, Msg: "Permission error",
		Asks: []string{api.ActionManageAny},
		Call: func(ctx context.Context, c Client) error { return c.Stop(ctx, "roots", 0) }},
	{What: "other creates mine", Other: true, Code: api.Success,
		Call: func(ctx context.Context, c Client) error { return c.Create(ctx, "mine") }},
	{What: "other reads mine", Other: true, Code: api.Success,
		Call: func(ctx context.Context, c Client) error {
			_, err := c.GetProperty(ctx, "mine", "owner_user")
			return err
		}},
	{What: "other may not make mine run as root", Other: true, Code: api.Permission, Msg: "Only root can change this property",
		Asks: []string{api.ActionSetPrivileged},
		Call: func(ctx context.Context, c Client) error { return c.SetProperty(ctx, "mine", "user", "root") }},
	{What: "polkit lets other make mine run as root", Other: true, Polkit: true, Code: api.Success,
		Asks: []string{api.ActionSetPrivileged},
		Call: func(ctx context.Context, c Client) error { return c.SetProperty(ctx, "mine", "user", "root") }},
	{What: "polkit lets other destroy roots", Other: true, Polkit: true, Code: api.Success,
		Asks: []string{api.ActionManageAny},
		Call: func(ctx context.Context, c Client) error { return c.Destroy(ctx, "roots") }},
	{What: "other destroys mine", Other: true, Code: api.Success,
		Call: func(ctx context.Context, c Client) error { return c.Destroy(ctx, "mine") }},
	{What: "gone for everyone", Other: true, Code: api.ContainerDoesNotExist,
		Call: func(ctx context.Context, c Client) error { return c.Destroy(ctx, "mine") }},
}

// RunPermissions runs PermTable against e.
func RunPermissions(t *testing.T, e PermEnv) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	other := e.Become(Other)
	if e.Asked != nil {
		e.Asked()
	}
	for _, st := range PermTable {
		e.Allow(st.Polkit)
		c := e.Owner
		if st.Other {
			c = other
		}
		err := st.Call(ctx, c)
		if got := api.CodeOf(err); got != st.Code {
			t.Fatalf("%s: got %v, want %v", st.What, err, st.Code)
		}
		if st.Code != api.Success && st.Msg != "" && api.AsError(err).Message() != st.Msg {
			t.Errorf("%s: message %q, want %q", st.What, api.AsError(err).Message(), st.Msg)
		}
		if e.Asked != nil {
			asked := e.Asked()
			if st.Asks != nil && !equal(asked, st.Asks) {
				t.Errorf("%s: polkit asked %q, want %q", st.What, asked, st.Asks)
			}
		}
	}
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
