package dbusapi

import (
	"context"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/porto-dev/porto/api"
	"github.com/porto-dev/porto/service"
)

// fakeBackend is an in-memory stand-in for service.Manager, with a hook to
// inject errors and panics.
type fakeBackend struct {
	mu      sync.Mutex
	cts     map[string]*fakeCT
	subs    map[chan service.Event]bool
	callers []service.Caller
	calls   int
	// hook, when set, runs first in every caller-bearing method; a non-nil
	// error is returned as is.
	hook func(ctx context.Context, method string, c service.Caller, args []string) error
}

type fakeCT struct {
	state   api.State
	owner   uint32
	command string
	exit    int32
	pid     int32
}

func newFake() *fakeBackend {
	return &fakeBackend{cts: map[string]*fakeCT{}, subs: map[chan service.Event]bool{}}
}

func (f *fakeBackend) enter(ctx context.Context, method string, c service.Caller, args ...string) error {
	f.mu.Lock()
	f.calls++
	f.callers = append(f.callers, c)
	hook := f.hook
	f.mu.Unlock()
	if hook != nil {
		return hook(ctx, method, c, args)
	}
	return nil
}

func (f *fakeBackend) lastCaller() service.Caller {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.callers[len(f.callers)-1]
}

func (f *fakeBackend) callCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

// emit must be called with f.mu held.
func (f *fakeBackend) emit(ev service.Event) {
	for ch := range f.subs {
		select {
		case ch <- ev:
		default:
		}
	}
}

func (f *fakeBackend) get(name string) (*fakeCT, error) {
	ct := f.cts[name]
	if ct == nil {
		return nil, api.Errorf(api.ContainerDoesNotExist, "container %s does not exist", name)
	}
	return ct, nil
}

func (f *fakeBackend) Create(ctx context.Context, c service.Caller, name string) error {
	if err := f.enter(ctx, "Create", c, name); err != nil {
		return err
	}
	if err := api.ValidateName(name); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.cts[name] != nil {
		return api.Errorf(api.ContainerAlreadyExists, "container %s already exists", name)
	}
	if p := api.ParentName(name); p != api.RootName && f.cts[p] == nil {
		return api.Errorf(api.ContainerDoesNotExist, "parent container %s does not exist", p)
	}
	f.cts[name] = &fakeCT{state: api.StateStopped, owner: c.UID, exit: -1}
	f.emit(service.Event{Name: name, State: api.StateStopped})
	return nil
}

func (f *fakeBackend) Destroy(ctx context.Context, c service.Caller, name string) error {
	if err := f.enter(ctx, "Destroy", c, name); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, err := f.get(name); err != nil {
		return err
	}
	delete(f.cts, name)
	f.emit(service.Event{Name: name, Destroyed: true})
	return nil
}

func (f *fakeBackend) move(ctx context.Context, method string, c service.Caller, name string, from []api.State, to api.State) error {
	if err := f.enter(ctx, method, c, name); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	ct, err := f.get(name)
	if err != nil {
		return err
	}
	if !slices.Contains(from, ct.state) {
		return api.Errorf(api.InvalidState, "container %s is %s", name, ct.state)
	}
	ct.state = to
	switch to {
	case api.StateRunning:
		ct.pid, ct.exit = 4242, -1
	case api.StateStopped:
		ct.pid, ct.exit = 0, -1
	}
	f.emit(service.Event{Name: name, State: to})
	return nil
}

func (f *fakeBackend) Start(ctx context.Context, c service.Caller, name string) error {
	return f.move(ctx, "Start", c, name, []api.State{api.StateStopped}, api.StateRunning)
}

func (f *fakeBackend) Stop(ctx context.Context, c service.Caller, name string, timeout time.Duration) error {
	return f.move(ctx, "Stop", c, name, []api.State{api.StateRunning, api.StateDead, api.StatePaused, api.StateStopped}, api.StateStopped)
}

func (f *fakeBackend) Kill(ctx context.Context, c service.Caller, name string, sig int) error {
	if err := f.move(ctx, "Kill", c, name, []api.State{api.StateRunning}, api.StateDead); err != nil {
		return err
	}
	f.mu.Lock()
	f.cts[name].exit, f.cts[name].pid = int32(sig), 0
	f.mu.Unlock()
	return nil
}

func (f *fakeBackend) Pause(ctx context.Context, c service.Caller, name string) error {
	return f.move(ctx, "Pause", c, name, []api.State{api.StateRunning}, api.StatePaused)
}

func (f *fakeBackend) Resume(ctx context.Context, c service.Caller, name string) error {
	return f.move(ctx, "Resume", c, name, []api.State{api.StatePaused}, api.StateRunning)
}

func (f *fakeBackend) Wait(ctx context.Context, c service.Caller, names []string, timeout time.Duration) (string, error) {
	if err := f.enter(ctx, "Wait", c, names...); err != nil {
		return "", err
	}
	if len(names) == 0 {
		return "", api.Errorf(api.InvalidValue, "no containers to wait for")
	}
	var deadline <-chan time.Time
	if timeout >= 0 {
		deadline = time.After(timeout)
	}
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		f.mu.Lock()
		for _, n := range names {
			ct, err := f.get(n)
			if err != nil {
				f.mu.Unlock()
				return "", err
			}
			if ct.state.Terminal() {
				f.mu.Unlock()
				return n, nil
			}
		}
		f.mu.Unlock()
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-deadline:
			return "", nil
		case <-tick.C:
		}
	}
}

func (f *fakeBackend) List(ctx context.Context, c service.Caller) ([]string, error) {
	if err := f.enter(ctx, "List", c); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	var names []string
	for n := range f.cts {
		names = append(names, n)
	}
	slices.Sort(names)
	return names, nil
}

func (f *fakeBackend) getLocked(name, key string) (string, error) {
	ct, err := f.get(name)
	if err != nil {
		return "", err
	}
	switch key {
	case "command":
		return ct.command, nil
	case "state":
		return string(ct.state), nil
	case "exit_status":
		if ct.state != api.StateDead {
			return "", api.Errorf(api.InvalidState, "exit_status is not available in state %s", ct.state)
		}
		return strconv.Itoa(int(ct.exit)), nil
	}
	return "", api.Errorf(api.InvalidProperty, "unknown property %s", key)
}

func (f *fakeBackend) Get(ctx context.Context, c service.Caller, name, key string) (string, error) {
	if err := f.enter(ctx, "Get", c, name, key); err != nil {
		return "", err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.getLocked(name, key)
}

func (f *fakeBackend) GetMulti(ctx context.Context, c service.Caller, names, keys []string) []api.GetResult {
	if err := f.enter(ctx, "GetMulti", c); err != nil {
		return []api.GetResult{{Err: api.AsError(err)}}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []api.GetResult
	for _, n := range names {
		for _, k := range keys {
			v, err := f.getLocked(n, k)
			out = append(out, api.GetResult{Container: n, Key: k, Value: v, Err: api.AsError(err)})
		}
	}
	return out
}

func (f *fakeBackend) Set(ctx context.Context, c service.Caller, name, key, value string) error {
	if err := f.enter(ctx, "Set", c, name, key, value); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	ct, err := f.get(name)
	if err != nil {
		return err
	}
	switch key {
	case "command":
		ct.command = value
		return nil
	case "state", "exit_status":
		return api.Errorf(api.InvalidValue, "%s is read-only", key)
	}
	return api.Errorf(api.InvalidProperty, "unknown property %s", key)
}

func (f *fakeBackend) Properties() []api.PropertyInfo {
	return []api.PropertyInfo{
		{Name: "command", Description: "command to run"},
		{Name: "state", Description: "container state", ReadOnly: true},
		{Name: "exit_status", Description: "wait(2) status", ReadOnly: true},
	}
}

func (f *fakeBackend) Info(name string) (service.Info, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ct, err := f.get(name)
	if err != nil {
		return service.Info{}, err
	}
	return service.Info{Name: name, State: ct.state, Parent: api.ParentName(name), RootPid: ct.pid,
		ExitStatus: ct.exit, OwnerUser: strconv.Itoa(int(ct.owner)), Command: ct.command}, nil
}

func (f *fakeBackend) Subscribe() (<-chan service.Event, func()) {
	ch := make(chan service.Event, 64)
	f.mu.Lock()
	f.subs[ch] = true
	f.mu.Unlock()
	return ch, func() {
		f.mu.Lock()
		delete(f.subs, ch)
		f.mu.Unlock()
	}
}
