package supervise

import (
	"errors"
	"fmt"
	"os"
	"os/signal"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/porto-dev/porto/isolation"
)

// Local is the Spawner for running without a master (tests, portod
// --no-supervisor): the current process becomes a subreaper, launches the
// stage itself and learns the exits of its children itself. Exits do not
// survive a crash of this process.
//
// Local owns every child of the process: it reports (and, after Ack, reaps)
// any child that exits, so the process must not wait for children by other
// means (os/exec's Wait would race with it).
type Local struct {
	self   string
	launch LaunchFunc
	t      *tracker
	exits  chan isolation.Exit
	queue  *exitQueue
	chld   chan os.Signal
	done   chan struct{}
	once   sync.Once
}

// NewLocal makes the current process a subreaper and starts watching its
// children. self is the binary whose "__isolate" stage Spawn launches.
func NewLocal(self string) (*Local, error) {
	return newLocal(self, isolation.Launch)
}

func newLocal(self string, launch LaunchFunc) (*Local, error) {
	if self == "" {
		return nil, errors.New("supervise: NewLocal needs the path of the daemon binary")
	}
	if err := setSubreaper(); err != nil {
		return nil, fmt.Errorf("supervise: PR_SET_CHILD_SUBREAPER: %w", err)
	}
	l := &Local{
		self:   self,
		launch: launch,
		t:      newTracker(),
		exits:  make(chan isolation.Exit, 64),
		queue:  newExitQueue(),
		chld:   make(chan os.Signal, 1),
		done:   make(chan struct{}),
	}
	signal.Notify(l.chld, unix.SIGCHLD)
	go l.watch()
	go l.forward()
	return l, nil
}

// Spawn launches the stage directly; see Client.Spawn.
func (l *Local) Spawn(spec isolation.LaunchSpec, files []*os.File) (int, error) {
	select {
	case <-l.done:
		return 0, fmt.Errorf("%w: local spawner closed", ErrLost)
	default:
	}
	seq := l.t.beginSpawn()
	pid, err := l.launch(l.self, spec, files)
	if err != nil {
		pid = 0
	}
	for _, e := range l.t.endSpawnOf(seq, pid, forksCommand(spec)) {
		l.queue.push(e)
	}
	if err != nil {
		return 0, err
	}
	return pid, nil
}

// Exits delivers the exit of every child of this process; see
// Client.Exits. It is closed by Close.
func (l *Local) Exits() <-chan isolation.Exit { return l.exits }

// Ack reaps pid if its exit was delivered; anything else is a no-op.
func (l *Local) Ack(pid int) error { return l.t.ack(pid) }

// SupervisorPid is this process: container processes are its children.
func (l *Local) SupervisorPid() int { return os.Getpid() }

// Close stops watching and closes Exits. Zombies not acknowledged stay
// until the process exits. The process remains a subreaper.
func (l *Local) Close() error {
	l.once.Do(func() {
		signal.Stop(l.chld)
		close(l.done)
	})
	return nil
}

// watch learns the exits: a full scan at start, then a check on SIGCHLD
// and a tick every scanInterval (see tracker).
func (l *Local) watch() {
	tick := time.NewTicker(scanInterval)
	defer tick.Stop()
	defer l.t.close()
	sweep := l.t.scan
	for {
		released, _, _ := sweep(0)
		for _, e := range released {
			l.queue.push(e)
		}
		select {
		case <-l.chld:
			sweep = l.t.check
		case <-tick.C:
			sweep = l.t.tick
		case <-l.done:
			return
		}
	}
}

func (l *Local) forward() {
	defer close(l.exits)
	for {
		e, ok := l.queue.pop(l.done)
		if !ok {
			return
		}
		select {
		case l.exits <- e:
		case <-l.done:
			return
		}
	}
}
