package api

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestErrorTableBijection(t *testing.T) {
	names := map[string]Code{}
	for _, c := range Codes() {
		n := c.String()
		if prev, dup := names[n]; dup {
			t.Fatalf("%v and %v share the name %s", prev, c, n)
		}
		names[n] = c
		back, ok := CodeByDBusName(c.DBusName())
		if !ok || back != c {
			t.Fatalf("%v does not survive the D-Bus name round trip", c)
		}
		if c != Success && c.ExitStatus() == 0 {
			t.Fatalf("%v exits 0", c)
		}
	}
	if _, ok := CodeByDBusName("org.freedesktop.DBus.Error.Failed"); ok {
		t.Fatal("foreign error name accepted")
	}
}

func TestErrorClasses(t *testing.T) {
	err := fmt.Errorf("start %q: %w", "x", Errorf(InvalidState, "is running"))
	if CodeOf(err) != InvalidState || !errors.Is(err, ErrInvalidState) || errors.Is(err, ErrPermission) {
		t.Fatal("classification through wrapping")
	}
	if CodeOf(errors.New("plain")) != Unknown || CodeOf(nil) != Success {
		t.Fatal("unclassified errors")
	}
	if e := AsError(err); e.Code != InvalidState || e.Message() != "is running" {
		t.Fatalf("AsError %+v", e)
	}
}

func TestEscapePath(t *testing.T) {
	for in, want := range map[string]string{"a": "a", "a/b": "a_2fb", "x-y.z": "x_2dy_2ez", "": "_", "A9": "A9"} {
		if got := EscapePath(in); got != want {
			t.Errorf("%q: %q, want %q", in, got, want)
		}
		if back, err := UnescapePath(want); err != nil || back != in {
			t.Errorf("unescape %q: %q %v", want, back, err)
		}
	}
}

func TestValidateName(t *testing.T) {
	ok := []string{"a", "a/b", "a-b_c@d:e.f", strings.Repeat("x", 128), strings.Repeat("ab/", 15) + "c"}
	bad := []string{"", "/", "/x", "x/", "a//b", "..", "a/./b", "z$", "é", "a b", strings.Repeat("x", 129), strings.Repeat("x", 201), strings.Repeat("a/", 16) + "a"}
	for _, n := range ok {
		if err := ValidateName(n); err != nil {
			t.Errorf("%q: %v", n, err)
		}
	}
	for _, n := range bad {
		if err := ValidateName(n); CodeOf(err) != InvalidValue {
			t.Errorf("%q accepted (%v)", n, err)
		}
	}
}

func FuzzValidateName(f *testing.F) {
	for _, s := range []string{"a", "a/b", "../x", "a//b", "/", "z$", strings.Repeat("x", 129)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if ValidateName(s) != nil {
			return
		}
		if len(s) > MaxNameLength || strings.HasPrefix(s, "/") || strings.Contains(s, "//") || strings.Contains(s, "..") && hasDotDot(s) {
			t.Fatalf("accepted %q", s)
		}
		if back, err := UnescapePath(EscapePath(s)); err != nil || back != s {
			t.Fatalf("path escape round trip of %q", s)
		}
	})
}

func hasDotDot(s string) bool {
	for _, p := range strings.Split(s, "/") {
		if p == ".." || p == "." {
			return true
		}
	}
	return false
}
