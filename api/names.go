package api

// Bus names, object paths and interfaces of the D-Bus API.
const (
	BusName            = "org.porto.Manager"
	ManagerPath        = "/org/porto/Manager"
	ManagerInterface   = "org.porto.Manager"
	ContainerInterface = "org.porto.Container"
	// ContainerPathPrefix is the parent of every container object; the
	// container's name follows, escaped by EscapePath.
	ContainerPathPrefix = "/org/porto/container"
	ErrorPrefix         = "org.porto.Error."
)

// Methods of ManagerInterface. Signatures (D-Bus type codes):
//
//	Create(s name)
//	Destroy(s name)
//	Start(s name)
//	Stop(s name, i timeout_ms)          timeout_ms < 0: the configured default
//	Kill(s name, i signal)
//	Pause(s name)
//	Resume(s name)
//	Wait(as names, i timeout_ms) -> s   "" on timeout; timeout_ms < 0 waits forever
//	List() -> as
//	Get(as names, as keys) -> a(sssss)  (container, key, value, error name, error message)
//	GetProperty(s name, s key) -> s
//	SetProperty(s name, s key, s value)
//	ListProperties() -> a(ssbb)         (name, description, read-only, dynamic)
//	Version() -> s
//
// Signals of ManagerInterface:
//
//	StateChanged(s name, s state, o path)  state is StateDestroyed when the
//	                                       container (and its object) is gone
const (
	MethodCreate         = "Create"
	MethodDestroy        = "Destroy"
	MethodStart          = "Start"
	MethodStop           = "Stop"
	MethodKill           = "Kill"
	MethodPause          = "Pause"
	MethodResume         = "Resume"
	MethodWait           = "Wait"
	MethodList           = "List"
	MethodGet            = "Get"
	MethodGetProperty    = "GetProperty"
	MethodSetProperty    = "SetProperty"
	MethodListProperties = "ListProperties"
	MethodVersion        = "Version"

	SignalStateChanged = "StateChanged"

	// StateDestroyed is the state StateChanged announces for a container
	// that was destroyed. It is never a container's State property.
	StateDestroyed State = "destroyed"
)

// Typed read-only D-Bus properties of ContainerInterface objects.
const (
	PropName       = "Name"       // s
	PropState      = "State"      // s
	PropParent     = "Parent"     // s ("/" for first-level containers)
	PropRootPid    = "RootPid"    // i (0 when not running)
	PropExitStatus = "ExitStatus" // i (raw wait status, -1 when not dead)
	PropOwnerUser  = "OwnerUser"  // s
	PropCommand    = "Command"    // s
)

// RootName is the name of the implicit root of the container tree.
const RootName = "/"

// Version of the API and daemon.
const Version = "0.1.0"

// GetResult is one cell of a combined Get: the value of Key in Container, or
// the error that reading it produced.
type GetResult struct {
	Container string
	Key       string
	Value     string
	Err       *Error // nil on success
}

// PropertyInfo describes one property or datum.
type PropertyInfo struct {
	Name        string
	Description string
	ReadOnly    bool // a datum: it cannot be set
	Dynamic     bool // may be set while running
}
