package dbusapi

import (
	"log/slog"

	"github.com/godbus/dbus/v5"

	"github.com/porto-dev/porto/apiserver"
)

// toDBusError is the one place where an error becomes a D-Bus error: the
// class and message apiserver.Classify gives, spelled org.porto.Error.<Code>
// with the message as the only body element. A nil error gives nil.
func toDBusError(log *slog.Logger, method string, err error) *dbus.Error {
	if err == nil {
		return nil
	}
	code, msg := apiserver.Classify(log, method, err)
	return dbus.NewError(code.DBusName(), []any{msg})
}

// recoverCall turns a panic in a handler into an Unknown error reply. Use
// as: defer recoverCall(log, "Create", &derr).
func recoverCall(log *slog.Logger, method string, derr **dbus.Error) {
	r := recover()
	if r == nil {
		return
	}
	*derr = toDBusError(log, method, apiserver.Recovered(log, method, r))
}
