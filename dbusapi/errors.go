package dbusapi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"

	"github.com/godbus/dbus/v5"

	"github.com/porto-dev/porto/api"
)

// toDBusError is the one place where an error becomes a D-Bus error.
//
// An *api.Error anywhere in the chain becomes org.porto.Error.<Code> with
// its message as the only body element. Anything else is an internal error:
// it is logged in full and returned as org.porto.Error.Unknown. A nil error
// gives nil.
func toDBusError(log *slog.Logger, method string, err error) *dbus.Error {
	if err == nil {
		return nil
	}
	var ae *api.Error
	if errors.As(err, &ae) && ae.Code != api.Success {
		if _, known := api.CodeByName(ae.Code.String()); known {
			if ae.Code == api.Unknown {
				log.Warn("call failed with Unknown", "method", method, "err", err)
			}
			return dbus.NewError(ae.Code.DBusName(), []any{ae.Message()})
		}
	}
	switch {
	case errors.Is(err, context.Canceled):
		log.Debug("call cancelled", "method", method, "err", err)
		return dbus.NewError(api.Unknown.DBusName(), []any{"call cancelled: " + err.Error()})
	case errors.Is(err, context.DeadlineExceeded):
		log.Warn("call timed out", "method", method, "err", err)
		return dbus.NewError(api.Unknown.DBusName(), []any{"call timed out: " + err.Error()})
	}
	log.Error("internal error", "method", method, "err", err, "type", fmt.Sprintf("%T", err))
	return dbus.NewError(api.Unknown.DBusName(), []any{err.Error()})
}

// recoverCall turns a panic in a handler into an Unknown error reply. Use
// as: defer recoverCall(log, "Create", &derr).
func recoverCall(log *slog.Logger, method string, derr **dbus.Error) {
	r := recover()
	if r == nil {
		return
	}
	log.Error("panic in D-Bus handler", "method", method, "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
	*derr = toDBusError(log, method, api.Errorf(api.Unknown, "internal error in %s (logged by portod)", method))
}
