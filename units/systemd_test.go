package units

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	sdbus "github.com/coreos/go-systemd/v22/dbus"
	"github.com/godbus/dbus/v5"

	"github.com/porto-dev/porto/api"
)

// fakeSystemd plays systemd for the driver on a fake v1 tree: a scope's
// start creates its cgroups (unmarked, as systemd's) in the hierarchies
// systemd delegates on v1 and puts the pids there.
type fakeSystemd struct {
	mount string

	mu          sync.Mutex
	connected   bool
	active      map[string]bool
	started     []string
	props       map[string][]sdbus.Property
	setProps    map[string][]sdbus.Property
	resets      int
	stops       int
	failNext    string // "exists": UnitExists once; a job result otherwise
	noResult    bool
	dials       int
	delegatedTo []string
}

func (f *fakeSystemd) StartTransientUnitContext(_ context.Context, name, mode string, props []sdbus.Property, ch chan<- string) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failNext == "exists" {
		f.failNext = ""
		return 0, dbus.Error{Name: "org.freedesktop.systemd1.UnitExists", Body: []any{"Unit " + name + " already exists."}}
	}
	f.started = append(f.started, name)
	f.props[name] = props
	if f.noResult {
		return 1, nil
	}
	if f.failNext != "" {
		ch <- f.failNext
		f.failNext = ""
		return 1, nil
	}
	var slice string
	var pids []uint32
	for _, p := range props {
		switch p.Name {
		case "Slice":
			slice = p.Value.Value().(string)
		case "PIDs":
			pids = p.Value.Value().([]uint32)
		}
	}
	for _, c := range f.delegatedTo {
		d := filepath.Join(f.mount, c, slice, name)
		os.MkdirAll(d, 0o755)
		for _, file := range []string{"cgroup.procs", "memory.usage_in_bytes", "memory.limit_in_bytes", "pids.max"} {
			os.WriteFile(filepath.Join(d, file), nil, 0o644)
		}
		if len(pids) > 0 {
			os.WriteFile(filepath.Join(d, "cgroup.procs"), []byte("sd:"+strconv.Itoa(int(pids[0]))), 0o644)
		}
	}
	f.active[name] = true
	ch <- "done"
	return 1, nil
}

func (f *fakeSystemd) StopUnitContext(_ context.Context, name, mode string, ch chan<- string) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.stops++
	for _, c := range f.delegatedTo {
		matches, _ := filepath.Glob(filepath.Join(f.mount, c, "*.slice", name))
		for _, d := range matches {
			os.RemoveAll(d)
		}
	}
	delete(f.active, name)
	ch <- "done"
	return 1, nil
}

func (f *fakeSystemd) ResetFailedUnitContext(context.Context, string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.resets++
	return nil
}

func (f *fakeSystemd) SetUnitPropertiesContext(_ context.Context, name string, _ bool, props ...sdbus.Property) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.setProps[name] = props
	return nil
}

func (f *fakeSystemd) GetUnitPropertyContext(_ context.Context, unit, prop string) (*sdbus.Property, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	st := "inactive"
	if f.active[unit] {
		st = "active"
	}
	return &sdbus.Property{Name: prop, Value: dbus.MakeVariant(st)}, nil
}

func (f *fakeSystemd) Connected() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.connected
}

func (f *fakeSystemd) Close() {}

func propOf(props []sdbus.Property, name string) any {
	for _, p := range props {
		if p.Name == name {
			return p.Value.Value()
		}
	}
	return nil
}

// newFakeSystemd builds a fake v1 tree (freezer, memory, cpu, cpuacct,
// pids) and a Systemd driver over a fakeSystemd.
func newFakeSystemd(t *testing.T) (*Systemd, *fakeSystemd, string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("porto marks its cgroups with trusted xattrs: needs root even on a fake tree")
	}
	mount := t.TempDir()
	files := map[string][]string{
		"freezer": {"cgroup.procs", "freezer.state", "freezer.self_freezing"},
		"memory":  {"cgroup.procs", "memory.usage_in_bytes", "memory.limit_in_bytes", "memory.max_usage_in_bytes", "memory.stat", "memory.oom_control"},
		"cpu":     {"cgroup.procs", "cpu.cfs_quota_us", "cpu.cfs_period_us", "cpu.shares"},
		"cpuacct": {"cgroup.procs", "cpuacct.usage"},
		"pids":    {"cgroup.procs", "pids.max", "pids.current"},
	}
	for c, fs := range files {
		for _, f := range fs {
			write(t, filepath.Join(mount, c, f), "0\n")
		}
	}
	fakeMkdirHook = func(dir string) {
		rel, _ := filepath.Rel(mount, dir)
		c, _, _ := strings.Cut(rel, "/")
		for _, f := range files[c] {
			os.WriteFile(filepath.Join(dir, f), []byte("0\n"), 0o644)
		}
	}
	fakeRmdirHook = func(dir string) error {
		ents, _ := os.ReadDir(dir)
		for _, e := range ents {
			if !e.IsDir() {
				os.Remove(filepath.Join(dir, e.Name()))
			}
		}
		return nil
	}
	t.Cleanup(func() { fakeMkdirHook, fakeRmdirHook = nil, nil })
	f := &fakeSystemd{mount: mount, connected: true, active: map[string]bool{}, props: map[string][]sdbus.Property{},
		setProps: map[string][]sdbus.Property{}, delegatedTo: []string{"memory", "cpu", "pids"}}
	s, err := NewSystemd(SystemdOptions{
		Options: Options{MountRoot: mount, Log: quiet, BlockRoot: t.TempDir()},
		Dial: func(context.Context) (SystemdConn, error) {
			f.mu.Lock()
			f.dials++
			f.connected = true
			f.mu.Unlock()
			return f, nil
		},
		JobTimeout: 100 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	return s, f, mount
}

func TestSystemdFakeFlow(t *testing.T) {
	s, f, mount := newFakeSystemd(t)
	scope := "porto-a.scope"
	for _, n := range []string{"a", "a/b"} {
		if err := s.Create(n); err != nil {
			t.Fatalf("Create(%s): %v", n, err)
		}
	}
	// Before the scope: porto's own hierarchies only, marked.
	for _, c := range []string{"freezer", "cpuacct"} {
		d := filepath.Join(mount, c, "porto.slice", scope)
		if !isDir(d+"/b") || ownedBySystemd(d) {
			t.Errorf("%s: porto's own scope level missing or unmarked", c)
		}
	}
	if isDir(filepath.Join(mount, "memory", "porto.slice")) {
		t.Error("porto created a cgroup in a hierarchy systemd delegates")
	}
	if err := s.Apply("a", Limits{MemoryLimit: 64 << 20, PidsLimit: 50}); err != nil {
		t.Fatal(err)
	}
	if err := s.Apply("a/b", Limits{PidsLimit: 5}); err != nil {
		t.Fatal(err)
	}
	if err := s.Apply("a", Limits{Devices: []string{"c 1:3 rwm"}}); api.CodeOf(err) != api.NotSupported {
		t.Errorf("devices on a scope: %v", err)
	}

	if err := s.Attach("a", 7); err != nil {
		t.Fatal(err)
	}
	props := f.props[scope]
	if !slices.Equal(propOf(props, "PIDs").([]uint32), []uint32{7}) || propOf(props, "Delegate") != true ||
		propOf(props, "Slice") != "porto.slice" || propOf(props, "MemoryLimit") != uint64(64<<20) || propOf(props, "TasksMax") != uint64(50) {
		t.Errorf("StartTransientUnit props: %+v", props)
	}
	// systemd moved the pid into its hierarchies, porto into its own.
	if got := read(t, filepath.Join(mount, "memory/porto.slice", scope, "cgroup.procs")); got != "sd:7" {
		t.Errorf("porto wrote systemd's cgroup.procs: %q", got)
	}
	for _, c := range []string{"freezer", "cpuacct"} {
		if got := read(t, filepath.Join(mount, c, "porto.slice", scope, "cgroup.procs")); got != "7" {
			t.Errorf("%s cgroup.procs = %q", c, got)
		}
	}
	// The nested container made before the scope got its delegated
	// cgroups and its pending limit.
	if got := read(t, filepath.Join(mount, "pids/porto.slice", scope, "b/pids.max")); got != "5" {
		t.Errorf("a/b pids.max = %q", got)
	}
	// Dynamic limits go through SetUnitProperties, never into the files.
	write(t, filepath.Join(mount, "memory/porto.slice", scope, "memory.usage_in_bytes"), "1000\n")
	if err := s.Apply("a", Limits{MemoryLimit: 128 << 20, CPULimit: 1.5}); err != nil {
		t.Fatal(err)
	}
	sp := f.setProps[scope]
	if propOf(sp, "MemoryLimit") != uint64(128<<20) || propOf(sp, "CPUQuotaPerSecUSec") != uint64(1500000) || propOf(sp, "TasksMax") != ^uint64(0) {
		t.Errorf("SetUnitProperties: %+v", sp)
	}
	if err := s.Apply("a", Limits{MemoryLimit: 100}); api.CodeOf(err) != api.InvalidValue {
		t.Errorf("limit below usage: %v", err)
	}

	// Lost connection: the next call redials.
	f.mu.Lock()
	f.connected = false
	f.mu.Unlock()
	if err := s.Apply("a", Limits{}); err != nil {
		t.Fatal(err)
	}
	if f.dials != 2 {
		t.Errorf("dials = %d, want 2", f.dials)
	}

	write(t, filepath.Join(mount, "freezer/porto.slice", scope, "cgroup.procs"), "")
	if err := s.Remove("a"); err != nil {
		t.Fatal(err)
	}
	if f.stops != 1 || s.Exists("a") {
		t.Errorf("stops %d, exists %v", f.stops, s.Exists("a"))
	}
	for _, c := range []string{"freezer", "memory", "cpu", "cpuacct", "pids"} {
		if d := filepath.Join(mount, c, "porto.slice", scope); exists(d) {
			t.Errorf("left %s", d)
		}
	}
	if err := s.Remove("/"); err != nil {
		t.Fatal(err)
	}
	if exists(filepath.Join(mount, "freezer", "porto.slice")) {
		t.Error("porto's slice dir left")
	}
}

func TestSystemdFakeJobs(t *testing.T) {
	s, f, _ := newFakeSystemd(t)
	s.Create("a")
	// UnitExists: reset-failed and one retry.
	f.failNext = "exists"
	if err := s.Attach("a", 7); err != nil {
		t.Fatalf("Attach after UnitExists: %v", err)
	}
	if f.resets != 1 || len(f.started) != 1 {
		t.Errorf("resets %d, starts %v", f.resets, f.started)
	}
	// A failed job and a job that never reports are clean errors.
	s.Create("b")
	f.failNext = "failed"
	if err := s.Attach("b", 8); api.CodeOf(err) != api.ResourceNotAvailable || !strings.Contains(err.Error(), "failed") {
		t.Errorf("failed job: %v", err)
	}
	f.noResult = true
	t0 := time.Now()
	if err := s.Attach("b", 8); api.CodeOf(err) != api.ResourceNotAvailable || time.Since(t0) > 2*time.Second {
		t.Errorf("job timeout: %v after %v", err, time.Since(t0))
	}
}
