package service

import (
	"sort"
	"strings"
	"sync"

	"github.com/porto-dev/porto/api"
)

// record is the persisted part of a container: one JSON file per container
// under state_dir, rewritten atomically on every change.
type record struct {
	Name       string            `json:"name"`
	OwnerUID   uint32            `json:"owner_uid"`
	OwnerGID   uint32            `json:"owner_gid"`
	Props      map[string]string `json:"props,omitempty"` // explicitly set properties, canonical
	State      api.State         `json:"state"`
	RootPid    int               `json:"root_pid,omitempty"`
	RootStart  uint64            `json:"root_start,omitempty"` // start time of RootPid (ticks), against pid reuse
	ExitStatus int               `json:"exit_status"`
	ExitLost   bool              `json:"exit_lost,omitempty"` // died while no porto process could learn how
	OOMKilled  bool              `json:"oom_killed,omitempty"`
	StartErrno int               `json:"start_errno"`
	Respawns   int               `json:"respawn_count,omitempty"`
	PausedFrom api.State         `json:"paused_from,omitempty"`
	CreateTime int64             `json:"create_time"`          // unix ms
	StartTime  int64             `json:"start_time,omitempty"` // unix ms
	DeathTime  int64             `json:"death_time,omitempty"` // unix ms
	// Files porto created for this run (removed on stop), and the identity
	// of the std files so reads never follow a swapped path.
	WorkDir  string   `json:"work_dir,omitempty"`
	Stdout   stdFile  `json:"stdout,omitempty"`
	Stderr   stdFile  `json:"stderr,omitempty"`
	OwnFiles []string `json:"own_files,omitempty"`
	// NetClass is the container's traffic class (tc minor; its own
	// processes are NetClass+1), kept from first start to destroy.
	NetClass uint16 `json:"net_class,omitempty"`
}

type stdFile struct {
	Path string `json:"path,omitempty"`
	Dev  uint64 `json:"dev,omitempty"`
	Ino  uint64 `json:"ino,omitempty"`
}

// Container is one node of the tree.
//
// Locking: op serializes operations. An operation on c read-locks every
// ancestor top-down, then write-locks c (and, for subtree operations, every
// descendant in pre-order with children sorted by name). All operations
// acquire in this one total order, so they cannot deadlock. mu guards the
// fields and is only ever held briefly, so readers (get, list, wait) never
// queue behind a slow start or stop.
type Container struct {
	name   string
	parent *Container // nil for the root

	op sync.RWMutex
	// persist orders the writes of the record and its removal: a save
	// that raced with a destroy must not put the file back.
	persist sync.Mutex

	mu        sync.Mutex
	rec       record
	children  map[string]*Container // guarded by Manager.treeMu
	destroyed bool
	// exited is closed by the exit dispatcher when RootPid's exit arrives;
	// exitRaw holds it until an operation consumes it.
	exited   chan struct{}
	exitRaw  *int
	exitPid  int
	foreign  bool // RootPid is not a child of our supervisor (re-attached)
	timerGen int  // invalidates respawn/aging timers
}

func (c *Container) isRoot() bool { return c.parent == nil }

func (c *Container) state() api.State {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.rec.State
}

func (c *Container) prop(key string) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	v, ok := c.rec.Props[key]
	return v, ok
}

// ancestors returns the ancestors of c from the top down, root excluded.
func (c *Container) ancestors() []*Container {
	var out []*Container
	for p := c.parent; p != nil && !p.isRoot(); p = p.parent {
		out = append(out, p)
	}
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out
}

// depth of a name: "a" is 1, "a/b" is 2.
func depth(name string) int { return strings.Count(name, "/") + 1 }

// sortedChildren returns c's children by name; the caller holds treeMu.
func (c *Container) sortedChildren() []*Container {
	out := make([]*Container, 0, len(c.children))
	for _, ch := range c.children {
		out = append(out, ch)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}
