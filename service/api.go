package service

import (
	"context"

	"github.com/porto-dev/porto/api"
)

// Caller is who makes a call, as the transport established it (bus or
// socket credentials), never as the client claims.
type Caller struct {
	UID    uint32
	GID    uint32
	Groups []uint32
	Pid    int32
	// Authorize asks whether the caller may perform a polkit action
	// (api.Action*). nil means no authority is reachable: only uid 0 may.
	Authorize func(ctx context.Context, action string) (bool, error)
}

// Root is the daemon itself and tests' superuser.
var Root = Caller{UID: 0, GID: 0}

// Event announces a container's new state. StateDestroyed-like removal is
// announced with State "" and Destroyed set.
type Event struct {
	Name      string
	State     api.State
	Destroyed bool
}

// Info is the typed summary of a container that D-Bus object properties show.
type Info struct {
	Name       string
	State      api.State
	Parent     string
	RootPid    int32
	ExitStatus int32 // -1 unless dead
	OwnerUser  string
	Command    string
}
