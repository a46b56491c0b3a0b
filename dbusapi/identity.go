package dbusapi

import (
	"context"
	"errors"
	"fmt"

	"github.com/godbus/dbus/v5"

	"github.com/porto-dev/porto/apiserver"
)

// identity is who a bus peer is, as the bus daemon established it when the
// peer connected.
type identity = apiserver.Identity

const (
	busName      = "org.freedesktop.DBus"
	busPath      = dbus.ObjectPath("/org/freedesktop/DBus")
	busInterface = "org.freedesktop.DBus"
)

// busIdentify asks the bus daemon for sender's credentials:
// GetConnectionCredentials (UnixUserID, ProcessID, UnixGroupIDs), falling
// back to GetConnectionUnixUser on a bus that lacks it.
func busIdentify(ctx context.Context, conn *dbus.Conn, sender string) (identity, error) {
	var id identity
	bus := conn.Object(busName, busPath)
	var creds map[string]dbus.Variant
	err := bus.CallWithContext(ctx, busInterface+".GetConnectionCredentials", 0, sender).Store(&creds)
	if err == nil {
		uid, ok := creds["UnixUserID"].Value().(uint32)
		if !ok {
			return id, fmt.Errorf("bus gave no UnixUserID for %s", sender)
		}
		id.UID = uid
		if pid, ok := creds["ProcessID"].Value().(uint32); ok {
			id.Pid = int32(pid)
		}
		if gs, ok := creds["UnixGroupIDs"].Value().([]uint32); ok {
			id.Groups = gs
		}
	} else {
		var de dbus.Error
		if !errors.As(err, &de) || de.Name != "org.freedesktop.DBus.Error.UnknownMethod" {
			return id, fmt.Errorf("GetConnectionCredentials(%s): %w", sender, err)
		}
		var uid uint32
		if err := bus.CallWithContext(ctx, busInterface+".GetConnectionUnixUser", 0, sender).Store(&uid); err != nil {
			return id, fmt.Errorf("GetConnectionUnixUser(%s): %w", sender, err)
		}
		id.UID = uid
		var pid uint32
		if bus.CallWithContext(ctx, busInterface+".GetConnectionUnixProcessID", 0, sender).Store(&pid) == nil {
			id.Pid = int32(pid)
		}
	}
	id.GID = apiserver.ResolveGID(id.UID, id.Pid, id.Groups, apiserver.ProcIDs, apiserver.PasswdGID)
	return id, nil
}
