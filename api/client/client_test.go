package client

import (
	"context"
	"errors"
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/porto-dev/porto/api"
)

func TestToAPIError(t *testing.T) {
	if toAPIError(nil) != nil {
		t.Fatal("nil became an error")
	}
	for _, code := range api.Codes() {
		if code == api.Success {
			continue
		}
		e := toAPIError(dbus.Error{Name: code.DBusName(), Body: []any{"msg"}})
		if e.Code != code || e.Msg != "msg" {
			t.Errorf("%s: got %v", code, e)
		}
		// A *dbus.Error too.
		if e := toAPIError(&dbus.Error{Name: code.DBusName(), Body: []any{"msg"}}); e.Code != code {
			t.Errorf("*%s: got %v", code, e)
		}
	}
	cases := []struct {
		err  error
		code api.Code
		msg  string
	}{
		{dbus.Error{Name: "org.freedesktop.DBus.Error.ServiceUnknown", Body: []any{"The name is not activatable"}}, api.Unknown, "porto is not running (nobody owns org.porto.Manager on the system bus)"},
		{dbus.Error{Name: "org.freedesktop.DBus.Error.NameHasNoOwner"}, api.Unknown, "porto is not running (nobody owns org.porto.Manager on the system bus)"},
		{dbus.Error{Name: "org.freedesktop.DBus.Error.NoReply", Body: []any{"x"}}, api.Unknown, "porto did not reply (it timed out or exited)"},
		{dbus.Error{Name: "org.freedesktop.DBus.Error.AccessDenied", Body: []any{"Rejected send message"}}, api.Permission, "Rejected send message"},
		{dbus.Error{Name: "org.freedesktop.DBus.Error.InvalidArgs", Body: []any{"bad"}}, api.InvalidMethod, "bad"},
		{dbus.Error{Name: "org.freedesktop.DBus.Error.UnknownMethod", Body: []any{"no"}}, api.InvalidMethod, "no"},
		{dbus.Error{Name: "org.freedesktop.DBus.Error.LimitsExceeded"}, api.ResourceNotAvailable, "org.freedesktop.DBus.Error.LimitsExceeded"},
		{dbus.Error{Name: "org.porto.Error.FutureThing", Body: []any{"new"}}, api.Unknown, "FutureThing: new"},
		{dbus.Error{Name: "com.example.Weird", Body: []any{"w"}}, api.Unknown, "w"},
		{fmt.Errorf("x: %w", context.DeadlineExceeded), api.Unknown, "timed out waiting for porto"},
		{context.Canceled, api.Unknown, "call cancelled"},
		{dbus.ErrClosed, api.Unknown, "the connection to the system bus is closed"},
		{errors.New("other"), api.Unknown, "other"},
		{api.Errorf(api.Busy, "busy"), api.Busy, "busy"},
	}
	for _, tc := range cases {
		e := toAPIError(tc.err)
		if e.Code != tc.code || e.Message() != tc.msg {
			t.Errorf("%v: got %s %q, want %s %q", tc.err, e.Code, e.Message(), tc.code, tc.msg)
		}
	}
	if e := toAPIError(context.Canceled); !errors.Is(e, context.Canceled) {
		t.Error("the context error is not kept as the cause")
	}
}

func TestDurationMs(t *testing.T) {
	for _, tc := range []struct {
		d    time.Duration
		want int32
	}{
		{-1, -1}, {-time.Hour, -1}, {0, 0}, {1500 * time.Microsecond, 1}, {2 * time.Second, 2000},
		{1000 * time.Hour, math.MaxInt32},
	} {
		if got := durationMs(tc.d); got != tc.want {
			t.Errorf("durationMs(%v) = %d, want %d", tc.d, got, tc.want)
		}
	}
}

func TestWithInteractive(t *testing.T) {
	c := &Client{}
	WithInteractive(true)(c)
	if c.flags&dbus.FlagAllowInteractiveAuthorization == 0 {
		t.Fatal("flag not set")
	}
	WithInteractive(false)(c)
	if c.flags != 0 {
		t.Fatal("flag not cleared")
	}
}
