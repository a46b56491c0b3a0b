package apiserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"

	"github.com/porto-dev/porto/api"
)

// Classify is the one place where an error returned by a method becomes
// what a transport sends: an api.Code (never Success) and a message. A nil
// error gives Success and "".
//
// An *api.Error of a known class anywhere in the chain gives its Code and
// message. Anything else is an internal error: it is logged in full and
// classified Unknown. Unknown errors are logged at warning level.
func Classify(log *slog.Logger, method string, err error) (api.Code, string) {
	if err == nil {
		return api.Success, ""
	}
	var ae *api.Error
	if errors.As(err, &ae) && ae.Code != api.Success {
		if _, known := api.CodeByName(ae.Code.String()); known {
			if ae.Code == api.Unknown {
				log.Warn("call failed with Unknown", "method", method, "err", err)
			}
			return ae.Code, ae.Message()
		}
	}
	switch {
	case errors.Is(err, context.Canceled):
		log.Debug("call cancelled", "method", method, "err", err)
		return api.Unknown, "call cancelled: " + err.Error()
	case errors.Is(err, context.DeadlineExceeded):
		log.Warn("call timed out", "method", method, "err", err)
		return api.Unknown, "call timed out: " + err.Error()
	}
	log.Error("internal error", "method", method, "err", err, "type", fmt.Sprintf("%T", err))
	return api.Unknown, err.Error()
}

// Recovered turns the value of a recovered panic in a handler into the
// error to reply with, logging the panic and its stack. Use as:
//
//	defer func() { if r := recover(); r != nil { err = apiserver.Recovered(log, m, r) } }()
func Recovered(log *slog.Logger, method string, r any) error {
	log.Error("panic in API handler", "method", method, "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
	return api.Errorf(api.Unknown, "internal error in %s (logged by portod)", method)
}
