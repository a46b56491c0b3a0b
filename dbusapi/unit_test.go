package dbusapi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/godbus/dbus/v5"
	"github.com/godbus/dbus/v5/introspect"

	"github.com/porto-dev/porto/api"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func TestToDBusError(t *testing.T) {
	if toDBusError(quiet, "m", nil) != nil {
		t.Fatal("nil error became a D-Bus error")
	}
	cases := []struct {
		err  error
		name string
		msg  string
	}{
		{api.Errorf(api.InvalidValue, "bad value"), "org.porto.Error.InvalidValue", "bad value"},
		{fmt.Errorf("start %q: %w", "a", api.Errorf(api.InvalidState, "is running")), "org.porto.Error.InvalidState", "is running"},
		{api.Wrap(api.Permission, errors.New("EPERM"), ""), "org.porto.Error.Permission", "EPERM"},
		{errors.New("boom"), "org.porto.Error.Unknown", "boom"},
		{&api.Error{Code: api.Success, Msg: "odd"}, "org.porto.Error.Unknown", "Success: odd"},
		{fmt.Errorf("x: %w", context.Canceled), "org.porto.Error.Unknown", "call cancelled: x: context canceled"},
	}
	for _, tc := range cases {
		de := toDBusError(quiet, "m", tc.err)
		if de.Name != tc.name || len(de.Body) != 1 || de.Body[0] != tc.msg {
			t.Errorf("%v: got %s %q, want %s %q", tc.err, de.Name, de.Body, tc.name, tc.msg)
		}
	}
}

func TestRecoverCall(t *testing.T) {
	f := func() (derr *dbus.Error) {
		defer recoverCall(quiet, "M", &derr)
		panic("x")
	}
	if de := f(); de == nil || de.Name != api.Unknown.DBusName() {
		t.Fatalf("recovered panic gave %v", de)
	}
}

// The exported Go methods are exactly the introspected ones, with the same
// signatures.
func TestMethodsMatchIntrospection(t *testing.T) {
	got := map[string]string{}
	for _, m := range introspect.Methods(&manager{}) {
		got[m.Name] = sigOf(m.Args)
	}
	want := map[string]string{}
	for _, m := range managerIface.Methods {
		want[m.Name] = sigOf(m.Args)
	}
	if len(got) != len(want) {
		t.Errorf("exported %d methods, introspection has %d", len(got), len(want))
	}
	for name, sig := range want {
		if got[name] != sig {
			t.Errorf("%s: Go signature %q, introspection %q", name, got[name], sig)
		}
	}
	for name := range got {
		if _, ok := want[name]; !ok {
			t.Errorf("%s is exported but not introspected", name)
		}
	}
	// And every method constant of api/names.go is there.
	for _, name := range []string{api.MethodCreate, api.MethodDestroy, api.MethodStart, api.MethodStop,
		api.MethodKill, api.MethodPause, api.MethodResume, api.MethodWait, api.MethodList, api.MethodGet,
		api.MethodGetProperty, api.MethodSetProperty, api.MethodListProperties, api.MethodVersion} {
		if _, ok := want[name]; !ok {
			t.Errorf("api method %s missing from introspection", name)
		}
	}
}

func sigOf(args []introspect.Arg) string {
	var in, out string
	for _, a := range args {
		if a.Direction == "out" {
			out += a.Type
		} else {
			in += a.Type
		}
	}
	return in + "->" + out
}

// The signatures in api/names.go's comment are the introspected ones.
func TestNamesGoSignatures(t *testing.T) {
	src, err := os.ReadFile("../api/names.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range managerIface.Methods {
		var parts []string
		ret := ""
		for _, a := range m.Args {
			if a.Direction == "in" {
				parts = append(parts, a.Type+" "+a.Name)
			} else {
				ret = a.Type
			}
		}
		line := m.Name + "(" + strings.Join(parts, ", ") + ")"
		if ret != "" {
			line += " -> " + ret
		}
		if !strings.Contains(string(src), "//\t"+line) {
			t.Errorf("api/names.go does not document %q", line)
		}
	}
}

// docs/dbus-api.md documents every method, argument, property, signal,
// error and polkit action.
func TestDocsCoverInterface(t *testing.T) {
	b, err := os.ReadFile("../docs/dbus-api.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	words := map[string]bool{}
	for _, w := range regexp.MustCompile(`[A-Za-z0-9_.:/-]+`).FindAllString(doc, -1) {
		words[w] = true
	}
	need := func(what, s string) {
		if !words[s] {
			t.Errorf("docs/dbus-api.md does not mention %s %q", what, s)
		}
	}
	need("bus name", api.BusName)
	need("path", api.ManagerPath)
	need("interface", api.ManagerInterface)
	need("interface", api.ContainerInterface)
	need("path prefix", api.ContainerPathPrefix)
	for _, m := range managerIface.Methods {
		need("method", m.Name)
		for _, a := range m.Args {
			need(m.Name+" argument", a.Name)
		}
	}
	for _, s := range managerIface.Signals {
		need("signal", s.Name)
		for _, a := range s.Args {
			need(s.Name+" argument", a.Name)
		}
	}
	need("state", string(api.StateDestroyed))
	for _, p := range containerIface.Properties {
		need("property", p.Name)
	}
	codes := api.Codes()
	slices.Sort(codes)
	for _, c := range codes {
		if c == api.Success {
			continue
		}
		need("error", c.DBusName())
		if !regexp.MustCompile(`(?m)^\|\s*` + "`" + regexp.QuoteMeta(c.DBusName()) + "`" + `\s*\|\s*` + fmt.Sprint(int(c)) + `\s*\|`).MatchString(doc) {
			t.Errorf("docs/dbus-api.md has no table row for %s with number %d", c.DBusName(), int(c))
		}
	}
	actions, err := os.ReadFile("../api/actions.go")
	if err != nil {
		t.Fatal(err)
	}
	ids := regexp.MustCompile(`"(org\.porto\.[a-z-]+)"`).FindAllStringSubmatch(string(actions), -1)
	if len(ids) == 0 {
		t.Fatal("no polkit action ids found in api/actions.go")
	}
	for _, id := range ids {
		need("polkit action", id[1])
	}
}
