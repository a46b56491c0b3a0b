package ctl

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/porto-dev/porto/api"
)

// fake is an in-memory portod good enough to replay the seed: a container
// tree with states, properties, owners and a few canned behaviours of the
// commands the seed runs. It logs every call.
type fake struct {
	log    []string
	cts    map[string]*fakeCt
	caller string // user name of the caller; "root" is privileged

	// host binaries that exist; binaries copied into /tmp/porto by the
	// seed's "bringup" script.
	hostBins  map[string]bool
	chrootBin map[string]bool

	nextPid int
	// errs forces an error for "Method" or "Method name" or "Method name key".
	errs       map[string]error
	waitResult string
	version    string
	props      []api.PropertyInfo
}

type fakeCt struct {
	name  string
	state api.State
	owner string
	props map[string]string
	data  map[string]string
}

func newFake() *fake {
	return &fake{
		cts:    map[string]*fakeCt{},
		caller: "stfomichev",
		hostBins: set("sleep", "uname", "ps", "ip", "ls", "id", "true", "false", "bash",
			"pwd", "touch", "cat", "hostname"),
		chrootBin: map[string]bool{},
		nextPid:   1000,
		errs:      map[string]error{},
		version:   "0.1.0",
		props:     fakeProps,
	}
}

func set(xs ...string) map[string]bool {
	m := map[string]bool{}
	for _, x := range xs {
		m[x] = true
	}
	return m
}

var fakeProps = []api.PropertyInfo{
	{Name: "command", Description: "command executed upon container start"},
	{Name: "user", Description: "start command with given user"},
	{Name: "group", Description: "start command with given group"},
	{Name: "env", Description: "container environment variables: <name>=<value>; ..."},
	{Name: "cwd", Description: "container working directory"},
	{Name: "root", Description: "container root directory"},
	{Name: "root_readonly", Description: "mount root directory in read-only mode"},
	{Name: "isolate", Description: "isolate container from parent"},
	{Name: "memory_limit", Description: "memory hard limit [bytes]", Dynamic: true},
	{Name: "bind", Description: "share host directories with container: <host_path> <container_path> [ro|rw]; ..."},
	{Name: "hostname", Description: "container hostname"},
	{Name: "ulimit", Description: "container resource limits: <type>: <soft> <hard>; ..."},
	{Name: "stdout_path", Description: "container stdout path"},
	{Name: "state", Description: "container state", ReadOnly: true},
	{Name: "parent", Description: "parent container name", ReadOnly: true},
	{Name: "exit_status", Description: "container exit status", ReadOnly: true},
	{Name: "oom_killed", Description: "indicates whether container has been killed by OOM", ReadOnly: true},
	{Name: "start_errno", Description: "container start error", ReadOnly: true},
	{Name: "root_pid", Description: "root process id", ReadOnly: true},
	{Name: "stdout", Description: "return task stdout", ReadOnly: true},
	{Name: "stderr", Description: "return task stderr", ReadOnly: true},
	{Name: "cpu_usage", Description: "return consumed CPU time in nanoseconds", ReadOnly: true},
	{Name: "memory_usage", Description: "return consumed memory in bytes", ReadOnly: true},
	{Name: "major_faults", Description: "return number of major page faults", ReadOnly: true},
	{Name: "minor_faults", Description: "return number of minor page faults", ReadOnly: true},
	{Name: "net_packets", Description: "number of tx packets", ReadOnly: true},
	{Name: "time", Description: "running time in seconds", ReadOnly: true},
}

// readable lists the states in which a datum may be read (others: any).
var readable = map[string][]api.State{
	"exit_status":  {api.StateDead},
	"oom_killed":   {api.StateDead},
	"start_errno":  {api.StateStopped},
	"root_pid":     {api.StateRunning, api.StatePaused, api.StateMeta},
	"stdout":       {api.StateRunning, api.StatePaused, api.StateDead},
	"stderr":       {api.StateRunning, api.StatePaused, api.StateDead},
	"cpu_usage":    {api.StateRunning, api.StatePaused, api.StateDead, api.StateMeta},
	"memory_usage": {api.StateRunning, api.StatePaused, api.StateDead, api.StateMeta},
	"major_faults": {api.StateRunning, api.StatePaused, api.StateDead, api.StateMeta},
	"minor_faults": {api.StateRunning, api.StatePaused, api.StateDead, api.StateMeta},
	"net_packets":  {api.StateRunning, api.StatePaused, api.StateDead, api.StateMeta},
	"time":         {api.StateRunning, api.StatePaused, api.StateDead, api.StateMeta},
}

func (f *fake) call(format string, args ...any) error {
	s := fmt.Sprintf(format, args...)
	f.log = append(f.log, s)
	// Forced errors match the call's first one, two or three words.
	w := strings.Fields(s)
	for i := len(w); i >= 1; i-- {
		if err, ok := f.errs[strings.Join(w[:i], " ")]; ok {
			return err
		}
	}
	return nil
}

func (f *fake) get(name string) (*fakeCt, error) {
	ct, ok := f.cts[name]
	if !ok {
		return nil, api.Errorf(api.ContainerDoesNotExist, "container does not exist")
	}
	return ct, nil
}

func (f *fake) mayModify(ct *fakeCt) error {
	if f.caller != "root" && ct.owner != f.caller {
		return api.Errorf(api.Permission, "Permission error")
	}
	return nil
}

func (f *fake) Create(_ context.Context, name string) error {
	if err := f.call("Create %s", name); err != nil {
		return err
	}
	if err := api.ValidateName(name); err != nil {
		return err
	}
	if _, ok := f.cts[name]; ok {
		return api.Errorf(api.ContainerAlreadyExists, "container %s already exists", name)
	}
	if p := api.ParentName(name); p != api.RootName {
		if _, ok := f.cts[p]; !ok {
			return api.Errorf(api.ContainerDoesNotExist, "parent container %s does not exist", p)
		}
	}
	f.cts[name] = &fakeCt{name: name, state: api.StateStopped, owner: f.caller,
		props: map[string]string{}, data: map[string]string{}}
	return nil
}

func (f *fake) children(name string) []*fakeCt {
	var out []*fakeCt
	for n, ct := range f.cts {
		if strings.HasPrefix(n, name+"/") {
			out = append(out, ct)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name > out[j].name })
	return out
}

func (f *fake) Destroy(_ context.Context, name string) error {
	if err := f.call("Destroy %s", name); err != nil {
		return err
	}
	ct, err := f.get(name)
	if err != nil {
		return err
	}
	if err := f.mayModify(ct); err != nil {
		return err
	}
	for _, c := range f.children(name) {
		delete(f.cts, c.name)
	}
	delete(f.cts, name)
	return nil
}

func (f *fake) prop(ct *fakeCt, key string) string {
	if v, ok := ct.props[key]; ok {
		return v
	}
	switch key {
	case "user", "group":
		return ct.owner
	case "isolate":
		return "true"
	case "root":
		return "/"
	case "root_readonly":
		return "false"
	case "memory_limit":
		return "0"
	}
	return ""
}

func (f *fake) Start(_ context.Context, name string) error {
	if err := f.call("Start %s", name); err != nil {
		return err
	}
	ct, err := f.get(name)
	if err != nil {
		return err
	}
	if err := f.mayModify(ct); err != nil {
		return err
	}
	if ct.state != api.StateStopped {
		return api.Errorf(api.InvalidState, "invalid state %s", ct.state)
	}
	// Stopped ancestors start first, as meta when their command is empty.
	if p := api.ParentName(name); p != api.RootName && f.cts[p].state == api.StateStopped {
		if err := f.Start(context.Background(), p); err != nil {
			return err
		}
	}
	cmd := f.prop(ct, "command")
	if cmd == "" {
		ct.state = api.StateMeta
		return nil
	}
	bin := strings.Fields(cmd)[0]
	found := f.hostBins[bin]
	if f.prop(ct, "root") != "/" {
		found = f.chrootBin[bin]
	}
	if !found {
		ct.data = map[string]string{"start_errno": "2"}
		return api.Errorf(api.Unknown, "No such file or directory: execvpe(%s)", bin)
	}
	ct.data = map[string]string{"root_pid": strconv.Itoa(f.nextPid), "oom_killed": "false",
		"stdout": "", "stderr": "", "cpu_usage": "0", "memory_usage": "0", "major_faults": "0",
		"minor_faults": "0", "net_packets": "em1: 0", "time": "0"}
	f.nextPid++
	if bin == "sleep" {
		ct.state = api.StateRunning
		return nil
	}
	ct.state = api.StateDead
	ct.data["exit_status"] = "0"
	if bin == "false" || (bin == "touch" && f.prop(ct, "root_readonly") == "true") {
		ct.data["exit_status"] = "256"
	}
	return nil
}

func (f *fake) Stop(_ context.Context, name string, timeout time.Duration) error {
	if err := f.call("Stop %s %v", name, timeout); err != nil {
		return err
	}
	ct, err := f.get(name)
	if err != nil {
		return err
	}
	if err := f.mayModify(ct); err != nil {
		return err
	}
	for _, c := range append(f.children(name), ct) {
		c.state = api.StateStopped
		c.data = map[string]string{}
	}
	return nil
}

// die makes ct dead with a raw wait status.
func (f *fake) die(ct *fakeCt, status int) {
	ct.state = api.StateDead
	ct.data["exit_status"] = strconv.Itoa(status)
}

// killPid is the seed's "kill -9 PID" from the host.
func (f *fake) killPid(pid string, sig int) bool {
	for _, ct := range f.cts {
		if ct.state == api.StateRunning && ct.data["root_pid"] == pid {
			f.die(ct, sig)
			return true
		}
	}
	return false
}

func (f *fake) Kill(_ context.Context, name string, sig int) error {
	if err := f.call("Kill %s %d", name, sig); err != nil {
		return err
	}
	ct, err := f.get(name)
	if err != nil {
		return err
	}
	if err := f.mayModify(ct); err != nil {
		return err
	}
	if ct.state != api.StateRunning {
		return api.Errorf(api.InvalidState, "invalid state %s", ct.state)
	}
	return nil // the processes may handle the signal; the fake keeps it running
}

func (f *fake) Pause(_ context.Context, name string) error {
	if err := f.call("Pause %s", name); err != nil {
		return err
	}
	ct, err := f.get(name)
	if err != nil {
		return err
	}
	if ct.state != api.StateRunning {
		return api.Errorf(api.InvalidState, "invalid state %s", ct.state)
	}
	ct.state = api.StatePaused
	return nil
}

func (f *fake) Resume(_ context.Context, name string) error {
	if err := f.call("Resume %s", name); err != nil {
		return err
	}
	ct, err := f.get(name)
	if err != nil {
		return err
	}
	if ct.state != api.StatePaused {
		return api.Errorf(api.InvalidState, "invalid state %s", ct.state)
	}
	ct.state = api.StateRunning
	return nil
}

func (f *fake) Wait(_ context.Context, names []string, timeout time.Duration) (string, error) {
	if err := f.call("Wait %s %v", strings.Join(names, ","), timeout); err != nil {
		return "", err
	}
	for _, n := range names {
		if _, err := f.get(n); err != nil {
			return "", err
		}
	}
	return f.waitResult, nil
}

func (f *fake) List(context.Context) ([]string, error) {
	if err := f.call("List"); err != nil {
		return nil, err
	}
	out := []string{api.RootName}
	for n := range f.cts {
		out = append(out, n)
	}
	sort.Strings(out[1:])
	return out, nil
}

func (f *fake) getProperty(name, key string) (string, error) {
	ct, err := f.get(name)
	if err != nil {
		return "", err
	}
	var info *api.PropertyInfo
	for i := range f.props {
		if f.props[i].Name == key {
			info = &f.props[i]
		}
	}
	if info == nil {
		return "", api.Errorf(api.InvalidProperty, "invalid property %s", key)
	}
	switch key {
	case "state":
		return string(ct.state), nil
	case "parent":
		return api.ParentName(name), nil
	}
	if st, ok := readable[key]; ok {
		ok := false
		for _, s := range st {
			ok = ok || s == ct.state
		}
		if !ok {
			return "", api.Errorf(api.InvalidState, "invalid container state %s", ct.state)
		}
	}
	if info.ReadOnly {
		return ct.data[key], nil
	}
	return f.prop(ct, key), nil
}

func (f *fake) Get(_ context.Context, names, keys []string) ([]api.GetResult, error) {
	if err := f.call("Get %s %s", strings.Join(names, ","), strings.Join(keys, ",")); err != nil {
		return nil, err
	}
	var out []api.GetResult
	for _, n := range names {
		for _, k := range keys {
			v, err := f.getProperty(n, k)
			r := api.GetResult{Container: n, Key: k, Value: v}
			if err != nil {
				r.Err = api.AsError(err)
			}
			out = append(out, r)
		}
	}
	return out, nil
}

func (f *fake) GetProperty(_ context.Context, name, key string) (string, error) {
	if err := f.call("GetProperty %s %s", name, key); err != nil {
		return "", err
	}
	return f.getProperty(name, key)
}

func (f *fake) SetProperty(_ context.Context, name, key, value string) error {
	if err := f.call("SetProperty %s %s %q", name, key, value); err != nil {
		return err
	}
	ct, err := f.get(name)
	if err != nil {
		return err
	}
	if err := f.mayModify(ct); err != nil {
		return err
	}
	for _, p := range f.props {
		if p.Name != key {
			continue
		}
		if p.ReadOnly {
			return api.Errorf(api.InvalidValue, "%s is read-only", key)
		}
		if (key == "user" || key == "group") && f.caller != "root" {
			return api.Errorf(api.Permission, "Only root can change this property")
		}
		if ct.state != api.StateStopped && !p.Dynamic {
			return api.Errorf(api.InvalidState, "%s could be set only in stopped state", key)
		}
		ct.props[key] = value
		return nil
	}
	return api.Errorf(api.InvalidProperty, "invalid property %s", key)
}

func (f *fake) ListProperties(context.Context) ([]api.PropertyInfo, error) {
	if err := f.call("ListProperties"); err != nil {
		return nil, err
	}
	return f.props, nil
}

func (f *fake) Version(context.Context) (string, error) {
	if err := f.call("Version"); err != nil {
		return "", err
	}
	return f.version, nil
}
