package apiserver

import (
	"context"
	"log/slog"
	"math"
	"time"

	"github.com/porto-dev/porto/api"
	"github.com/porto-dev/porto/service"
)

// Default input and reply limits.
const (
	DefaultMaxStringLen = 64 << 10 // bytes in any one string argument
	DefaultMaxListLen   = 10000    // elements in any one array argument
	// DefaultMaxGetCells caps len(names)*len(keys) of one Get.
	DefaultMaxGetCells = 1 << 18
	// DefaultMaxReplyBytes caps the values one reply carries: half the
	// system bus's default max_message_size (32 MiB). A bigger message
	// would make dbus-daemon disconnect portod.
	DefaultMaxReplyBytes = 16 << 20
)

// Limits cap what one call may ask for. Zero fields mean the Default*
// value.
type Limits struct {
	MaxStringLen  int
	MaxListLen    int
	MaxGetCells   int
	MaxReplyBytes int // Get and GetProperty replies; beyond: ResourceNotAvailable
}

// WithDefaults fills zero fields with the Default* values.
func (l Limits) WithDefaults() Limits {
	if l.MaxStringLen <= 0 {
		l.MaxStringLen = DefaultMaxStringLen
	}
	if l.MaxListLen <= 0 {
		l.MaxListLen = DefaultMaxListLen
	}
	if l.MaxGetCells <= 0 {
		l.MaxGetCells = DefaultMaxGetCells
	}
	if l.MaxReplyBytes <= 0 {
		l.MaxReplyBytes = DefaultMaxReplyBytes
	}
	return l
}

// Backend is what a transport needs of service.Manager. Tests substitute
// fakes (a panicking one, for instance).
type Backend interface {
	Create(ctx context.Context, c service.Caller, name string) error
	Destroy(ctx context.Context, c service.Caller, name string) error
	Start(ctx context.Context, c service.Caller, name string) error
	Stop(ctx context.Context, c service.Caller, name string, timeout time.Duration) error
	Kill(ctx context.Context, c service.Caller, name string, sig int) error
	Pause(ctx context.Context, c service.Caller, name string) error
	Resume(ctx context.Context, c service.Caller, name string) error
	Wait(ctx context.Context, c service.Caller, names []string, timeout time.Duration) (string, error)
	List(ctx context.Context, c service.Caller) ([]string, error)
	Get(ctx context.Context, c service.Caller, name, key string) (string, error)
	GetMulti(ctx context.Context, c service.Caller, names, keys []string) []api.GetResult
	Set(ctx context.Context, c service.Caller, name, key, value string) error
	Properties() []api.PropertyInfo
	Info(name string) (service.Info, error)
	Subscribe() (events <-chan service.Event, cancel func())
}

var _ Backend = (*service.Manager)(nil)

// API is the manager interface, transport-neutral: each method checks its
// input against the limits and calls the backend. A transport decodes a
// call, establishes the caller, calls the method, and spells the result.
type API struct {
	b   Backend
	lim Limits
	log *slog.Logger
}

// New makes the API over b. A nil log means slog.Default().
func New(b Backend, lim Limits, log *slog.Logger) *API {
	if log == nil {
		log = slog.Default()
	}
	return &API{b: b, lim: lim.WithDefaults(), log: log}
}

// Backend returns what the API calls.
func (a *API) Backend() Backend { return a.b }

// Limits returns the limits in force.
func (a *API) Limits() Limits { return a.lim }

// Log returns the API's logger.
func (a *API) Log() *slog.Logger { return a.log }

func (a *API) Create(ctx context.Context, c service.Caller, name string) error {
	if err := a.CheckStrings(name); err != nil {
		return err
	}
	return a.b.Create(ctx, c, name)
}

func (a *API) Destroy(ctx context.Context, c service.Caller, name string) error {
	if err := a.CheckStrings(name); err != nil {
		return err
	}
	return a.b.Destroy(ctx, c, name)
}

func (a *API) Start(ctx context.Context, c service.Caller, name string) error {
	if err := a.CheckStrings(name); err != nil {
		return err
	}
	return a.b.Start(ctx, c, name)
}

// Stop: timeoutMs < 0 means the configured default.
func (a *API) Stop(ctx context.Context, c service.Caller, name string, timeoutMs int64) error {
	if err := a.CheckStrings(name); err != nil {
		return err
	}
	return a.b.Stop(ctx, c, name, MsDuration(timeoutMs))
}

func (a *API) Kill(ctx context.Context, c service.Caller, name string, signal int64) error {
	if err := a.CheckStrings(name); err != nil {
		return err
	}
	if signal < math.MinInt32 || signal > math.MaxInt32 {
		return api.Errorf(api.InvalidValue, "invalid signal %d", signal)
	}
	return a.b.Kill(ctx, c, name, int(signal))
}

func (a *API) Pause(ctx context.Context, c service.Caller, name string) error {
	if err := a.CheckStrings(name); err != nil {
		return err
	}
	return a.b.Pause(ctx, c, name)
}

func (a *API) Resume(ctx context.Context, c service.Caller, name string) error {
	if err := a.CheckStrings(name); err != nil {
		return err
	}
	return a.b.Resume(ctx, c, name)
}

// Wait: "" on timeout; timeoutMs < 0 waits forever.
func (a *API) Wait(ctx context.Context, c service.Caller, names []string, timeoutMs int64) (string, error) {
	if err := a.CheckList("names", names); err != nil {
		return "", err
	}
	return a.b.Wait(ctx, c, names, MsDuration(timeoutMs))
}

// List never returns a nil slice without an error.
func (a *API) List(ctx context.Context, c service.Caller) ([]string, error) {
	names, err := a.b.List(ctx, c)
	if err != nil {
		return nil, err
	}
	if names == nil {
		names = []string{}
	}
	return names, nil
}

// Cell is one value of Get: Code is Success, or the class of the error
// reading it (with Message).
type Cell struct {
	Container, Key, Value string
	Code                  api.Code
	Message               string
}

// cellOverhead is what a cell costs on any wire beyond its strings
// (framing, the error name's prefix), for the reply cap.
const cellOverhead = 64

// Get reads keys of names, cell by cell, so that the reply's size is known
// before more is read: it fails with ResourceNotAvailable once the values
// add up to more than MaxReplyBytes.
func (a *API) Get(ctx context.Context, c service.Caller, names, keys []string) ([]Cell, error) {
	if err := a.CheckGet(names, keys); err != nil {
		return nil, err
	}
	cells := make([]Cell, 0, len(names)*len(keys))
	size := 0
	for _, n := range names {
		for _, k := range keys {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			for _, r := range a.b.GetMulti(ctx, c, []string{n}, []string{k}) {
				cell := Cell{Container: r.Container, Key: r.Key, Value: r.Value}
				if r.Err != nil {
					cell.Code, cell.Message = Classify(a.log, api.MethodGet, r.Err)
				}
				size += cellOverhead + len(cell.Container) + len(cell.Key) + len(cell.Value) + len(cell.Code.String()) + len(cell.Message)
				if size > a.lim.MaxReplyBytes {
					return nil, api.Errorf(api.ResourceNotAvailable,
						"the values requested add up to more than %d bytes, the most one reply may carry; ask for fewer at a time", a.lim.MaxReplyBytes)
				}
				cells = append(cells, cell)
			}
		}
	}
	return cells, nil
}

// GetProperty reads one property or datum (raw), refusing values over
// MaxReplyBytes.
func (a *API) GetProperty(ctx context.Context, c service.Caller, name, key string) (string, error) {
	if err := a.CheckStrings(name, key); err != nil {
		return "", err
	}
	value, err := a.b.Get(ctx, c, name, key)
	if err != nil {
		return "", err
	}
	if len(value) > a.lim.MaxReplyBytes {
		return "", api.Errorf(api.ResourceNotAvailable,
			"%s of %s is %d bytes, more than the %d one reply may carry", key, name, len(value), a.lim.MaxReplyBytes)
	}
	return value, nil
}

func (a *API) SetProperty(ctx context.Context, c service.Caller, name, key, value string) error {
	if err := a.CheckStrings(name, key, value); err != nil {
		return err
	}
	return a.b.Set(ctx, c, name, key, value)
}

// ListProperties needs no caller.
func (a *API) ListProperties() []api.PropertyInfo {
	ps := a.b.Properties()
	if ps == nil {
		ps = []api.PropertyInfo{}
	}
	return ps
}

// Version is api.Version.
func (a *API) Version() string { return api.Version }

// MsDuration converts a wire timeout in milliseconds: < 0 means
// "default/none" (-1).
func MsDuration(ms int64) time.Duration {
	if ms < 0 {
		return -1
	}
	if ms > math.MaxInt64/int64(time.Millisecond) {
		ms = math.MaxInt64 / int64(time.Millisecond)
	}
	return time.Duration(ms) * time.Millisecond
}

// CheckStrings refuses oversized string arguments.
func (a *API) CheckStrings(args ...string) error {
	for _, s := range args {
		if len(s) > a.lim.MaxStringLen {
			return api.Errorf(api.InvalidValue, "argument is too long: %d bytes (at most %d)", len(s), a.lim.MaxStringLen)
		}
	}
	return nil
}

// CheckList refuses oversized array arguments.
func (a *API) CheckList(what string, l []string) error {
	if len(l) > a.lim.MaxListLen {
		return api.Errorf(api.InvalidValue, "too many %s: %d (at most %d)", what, len(l), a.lim.MaxListLen)
	}
	return a.CheckStrings(l...)
}

// CheckGet refuses a Get asking for too much.
func (a *API) CheckGet(names, keys []string) error {
	if err := a.CheckList("containers", names); err != nil {
		return err
	}
	if err := a.CheckList("keys", keys); err != nil {
		return err
	}
	if len(names)*len(keys) > a.lim.MaxGetCells {
		return api.Errorf(api.InvalidValue, "too many values requested: %d containers x %d keys (at most %d values)",
			len(names), len(keys), a.lim.MaxGetCells)
	}
	return nil
}
