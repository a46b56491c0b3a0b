package service

import (
	"context"
	"log/slog"
	"time"

	"github.com/porto-dev/porto/api"
)

// Manager owns the container tree. All methods are safe for concurrent use.
type Manager struct {
	cfg     Config
	spawner Spawner
	cg      Cgroups
	log     *slog.Logger
}

// New makes a Manager. Call Restore before serving.
func New(cfg Config, sp Spawner, cg Cgroups, log *slog.Logger) (*Manager, error) {
	return &Manager{cfg: cfg, spawner: sp, cg: cg, log: log}, nil
}

// Restore reloads persisted containers and reconciles them with reality.
func (m *Manager) Restore(ctx context.Context) error { return nil }

// Close stops background work (not the containers).
func (m *Manager) Close() {}

func (m *Manager) Create(ctx context.Context, c Caller, name string) error  { return errTODO }
func (m *Manager) Destroy(ctx context.Context, c Caller, name string) error { return errTODO }
func (m *Manager) Start(ctx context.Context, c Caller, name string) error   { return errTODO }

// Stop stops name and its subtree; timeout < 0 means the configured default.
func (m *Manager) Stop(ctx context.Context, c Caller, name string, timeout time.Duration) error {
	return errTODO
}
func (m *Manager) Kill(ctx context.Context, c Caller, name string, sig int) error { return errTODO }
func (m *Manager) Pause(ctx context.Context, c Caller, name string) error         { return errTODO }
func (m *Manager) Resume(ctx context.Context, c Caller, name string) error        { return errTODO }

// Wait returns the first of names that is dead or stopped, or "" when the
// timeout (< 0: none) passes first.
func (m *Manager) Wait(ctx context.Context, c Caller, names []string, timeout time.Duration) (string, error) {
	return "", errTODO
}
func (m *Manager) List(ctx context.Context, c Caller) ([]string, error) { return nil, errTODO }

// Get reads one property or datum (raw, not humanized).
func (m *Manager) Get(ctx context.Context, c Caller, name, key string) (string, error) {
	return "", errTODO
}

// GetMulti reads several keys of several containers, with an error per cell.
func (m *Manager) GetMulti(ctx context.Context, c Caller, names, keys []string) []api.GetResult {
	return nil
}
func (m *Manager) Set(ctx context.Context, c Caller, name, key, value string) error { return errTODO }

// Properties lists every property and datum with its description.
func (m *Manager) Properties() []api.PropertyInfo { return nil }

// Info is the typed summary of one container.
func (m *Manager) Info(name string) (Info, error) { return Info{}, errTODO }

// Subscribe delivers every state change until cancel is called. A slow
// subscriber loses events rather than blocking the daemon.
func (m *Manager) Subscribe() (events <-chan Event, cancel func()) {
	ch := make(chan Event)
	return ch, func() {}
}

var errTODO = api.Errorf(api.NotSupported, "not implemented yet")
