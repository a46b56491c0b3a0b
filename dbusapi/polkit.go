package dbusapi

import (
	"context"
	"errors"
	"fmt"

	"github.com/godbus/dbus/v5"

	"github.com/porto-dev/porto/apiserver"
)

// Authorizer decides whether the bus peer sender may perform a polkit
// action. interactive is true when the call carried the
// ALLOW_INTERACTIVE_AUTHORIZATION flag, so the authority may ask the user
// (through an agent such as pkttyagent). An Authorizer that has no
// authority to ask returns false and no error.
type Authorizer interface {
	Authorize(ctx context.Context, sender, action string, interactive bool) (bool, error)
}

// polkit names.
const (
	polkitBusName   = "org.freedesktop.PolicyKit1"
	polkitPath      = dbus.ObjectPath("/org/freedesktop/PolicyKit1/Authority")
	polkitInterface = "org.freedesktop.PolicyKit1.Authority"

	polkitAllowUserInteraction = uint32(1)
)

// polkitSubject is polkit's (sa{sv}) Subject.
type polkitSubject struct {
	Kind    string
	Details map[string]dbus.Variant
}

// polkitResult is polkit's (bba{ss}) AuthorizationResult.
type polkitResult struct {
	IsAuthorized bool
	IsChallenge  bool
	Details      map[string]string
}

// Polkit is the Authorizer that asks org.freedesktop.PolicyKit1 over conn,
// with a ("system-bus-name", {"name": sender}) subject.
type Polkit struct {
	conn *dbus.Conn
}

// NewPolkit returns an Authorizer asking the polkit authority on conn's bus.
func NewPolkit(conn *dbus.Conn) *Polkit { return &Polkit{conn: conn} }

// Authorize calls CheckAuthorization for a bus peer. Without polkitd on
// the bus (ServiceUnknown, NameHasNoOwner) it returns false and no error.
func (p *Polkit) Authorize(ctx context.Context, sender, action string, interactive bool) (bool, error) {
	subject := polkitSubject{
		Kind:    "system-bus-name",
		Details: map[string]dbus.Variant{"name": dbus.MakeVariant(sender)},
	}
	return p.check(ctx, subject, action, interactive, sender)
}

// AuthorizeProcess calls CheckAuthorization for a local process that is
// not a bus peer (a caller on the Varlink socket), with polkit's
// ("unix-process", {pid, start-time, uid}) subject: the start time (from
// /proc/PID/stat) tells the process from a later one with the same pid.
// Where the bus passes file descriptors, the process's pidfd goes along
// too ("pidfd", which polkit 121 and later prefer; older ones ignore it).
// Without polkitd it returns false and no error, as Authorize does.
func (p *Polkit) AuthorizeProcess(ctx context.Context, proc apiserver.Process, action string, interactive bool) (bool, error) {
	details := map[string]dbus.Variant{
		"pid":        dbus.MakeVariant(uint32(proc.Pid)),
		"start-time": dbus.MakeVariant(proc.StartTime),
		"uid":        dbus.MakeVariant(int32(proc.UID)),
	}
	if proc.Pidfd >= 0 && p.conn.SupportsUnixFDs() {
		details["pidfd"] = dbus.MakeVariant(dbus.UnixFD(proc.Pidfd))
	}
	return p.check(ctx, polkitSubject{Kind: "unix-process", Details: details}, action, interactive, fmt.Sprintf("pid %d", proc.Pid))
}

func (p *Polkit) check(ctx context.Context, subject polkitSubject, action string, interactive bool, who string) (bool, error) {
	var flags uint32
	if interactive {
		flags |= polkitAllowUserInteraction
	}
	var res polkitResult
	err := p.conn.Object(polkitBusName, polkitPath).CallWithContext(ctx,
		polkitInterface+".CheckAuthorization", 0,
		subject, action, map[string]string{}, flags, "").Store(&res)
	if err != nil {
		if noService(err) {
			return false, nil
		}
		return false, fmt.Errorf("polkit CheckAuthorization(%s, %s): %w", action, who, err)
	}
	return res.IsAuthorized, nil
}

// noService reports a D-Bus error meaning that nobody owns the called name.
func noService(err error) bool {
	var de dbus.Error
	if !errors.As(err, &de) {
		return false
	}
	switch de.Name {
	case "org.freedesktop.DBus.Error.ServiceUnknown",
		"org.freedesktop.DBus.Error.NameHasNoOwner",
		"org.freedesktop.DBus.Error.Spawn.ServiceNotFound":
		return true
	}
	return false
}
