package varlinkapi

import (
	"errors"
	"os"
	"slices"
	"testing"

	"github.com/varlink/go/varlink"
	"github.com/varlink/go/varlink/idl"

	"github.com/porto-dev/porto/api"
)

// Issue 10, acceptance 1: a client built on github.com/varlink/go (a test
// dependency only) calls GetInfo and GetInterfaceDescription, then
// creates, starts, reads, waits for and destroys a container.
func TestVarlinkGoClient(t *testing.T) {
	e := start(t, nil, Options{})
	ctx := e.ctx
	conn, err := varlink.NewConnection(ctx, "unix:"+e.path)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()

	var vendor, product, version, url string
	var ifaces []string
	if err := conn.GetInfo(ctx, &vendor, &product, &version, &url, &ifaces); err != nil {
		t.Fatal(err)
	}
	if product != "portod" || version != api.Version || !slices.Contains(ifaces, Interface) || !slices.Contains(ifaces, ServiceInterface) {
		t.Fatalf("GetInfo: %q %q %q %q %q", vendor, product, version, url, ifaces)
	}
	for _, name := range ifaces {
		desc, err := conn.GetInterfaceDescription(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		parsed, err := idl.New(desc)
		if err != nil {
			t.Fatalf("%s does not parse: %v", name, err)
		}
		if parsed.Name != name {
			t.Fatalf("description of %s is %s", name, parsed.Name)
		}
		if name == Interface {
			if len(parsed.Methods) != len(methods)+1 || len(parsed.Errors) != len(api.Codes())-1 {
				t.Errorf("%d methods, %d errors", len(parsed.Methods), len(parsed.Errors))
			}
		}
	}
	if _, err := conn.GetInterfaceDescription(ctx, "com.example.Nope"); err == nil {
		t.Fatal("description of an unknown interface")
	} else if _, ok := err.(*varlink.InterfaceNotFound); !ok {
		t.Fatalf("unknown interface: %T %v", err, err)
	}

	// Watch on a second connection, with "more".
	wconn, err := varlink.NewConnection(ctx, "unix:"+e.path)
	if err != nil {
		t.Fatal(err)
	}
	defer wconn.Close()
	recv, err := wconn.Send(ctx, Interface+".Watch", nil, varlink.More)
	if err != nil {
		t.Fatal(err)
	}
	var ev struct{ Name, State, Path string }
	if flags, err := recv(ctx, &ev); err != nil || flags&varlink.Continues == 0 || ev.Name != "" {
		t.Fatalf("first Watch reply: %+v %d %v", ev, flags, err)
	}

	call := func(method string, in, out any) error {
		if out == nil {
			out = &struct{}{} // the library decodes the reply's parameters into it
		}
		return conn.Call(ctx, Interface+"."+method, in, out)
	}
	type name struct {
		Name string `json:"name"`
	}
	if err := call("Create", name{"vg"}, nil); err != nil {
		t.Fatal(err)
	}
	err = call("Create", name{"vg"}, nil)
	var ve *varlink.Error
	if !errors.As(err, &ve) || ve.Name != Interface+".ContainerAlreadyExists" {
		t.Fatalf("second Create: %v", err)
	}
	if err := call("SetProperty", map[string]string{"name": "vg", "key": "command", "value": "true"}, nil); err != nil {
		t.Fatal(err)
	}
	var state struct{ Value string }
	if err := call("GetProperty", map[string]string{"name": "vg", "key": "state"}, &state); err != nil || state.Value != "stopped" {
		t.Fatalf("state: %+v %v", state, err)
	}
	if os.Geteuid() != 0 {
		// Starting needs root (the service takes the owner's
		// file-system credentials); the rest was shown.
		if err := call("Destroy", name{"vg"}, nil); err != nil {
			t.Fatal(err)
		}
		t.Skip("start, wait and the watched states need root")
	}
	if err := call("Start", name{"vg"}, nil); err != nil {
		t.Fatal(err)
	}
	var waited struct{ Name string }
	if err := call("Wait", map[string]any{"names": []string{"vg"}, "timeout_ms": 10000}, &waited); err != nil || waited.Name != "vg" {
		t.Fatalf("Wait: %+v %v", waited, err)
	}
	var got struct{ Value string }
	if err := call("GetProperty", map[string]string{"name": "vg", "key": "state"}, &got); err != nil || got.Value != "dead" {
		t.Fatalf("state: %+v %v", got, err)
	}
	if err := call("GetProperty", map[string]string{"name": "vg", "key": "exit_status"}, &got); err != nil || got.Value != "0" {
		t.Fatalf("exit_status: %+v %v", got, err)
	}
	var cells struct {
		Values []struct{ Container, Key, Value, Error, Message string }
	}
	if err := call("Get", map[string][]string{"names": {"vg"}, "keys": {"state", "bogus"}}, &cells); err != nil ||
		len(cells.Values) != 2 || cells.Values[0].Value != "dead" || cells.Values[1].Error != Interface+".InvalidProperty" {
		t.Fatalf("Get: %+v %v", cells, err)
	}
	if err := call("Destroy", name{"vg"}, nil); err != nil {
		t.Fatal(err)
	}
	var states []string
	for len(states) == 0 || states[len(states)-1] != string(api.StateDestroyed) {
		flags, err := recv(ctx, &ev)
		if err != nil || flags&varlink.Continues == 0 || ev.Name != "vg" {
			t.Fatalf("Watch: %+v %d %v after %q", ev, flags, err, states)
		}
		states = append(states, ev.State)
	}
	if states[0] != "stopped" || !slices.Contains(states, "running") || !slices.Contains(states, "dead") {
		t.Errorf("watched %q", states)
	}
}
