package api

// State of a container, as Porto names them.
type State string

const (
	StateStopped  State = "stopped"
	StateStarting State = "starting" // transient, inside a start call
	StateRunning  State = "running"
	StatePaused   State = "paused"
	StateDead     State = "dead"
	StateMeta     State = "meta"
	StateStopping State = "stopping" // transient, inside a stop call
)

// Terminal reports whether a waiter on this state is done: dead or stopped.
func (s State) Terminal() bool { return s == StateDead || s == StateStopped }
