package packaging

import (
	"bufio"
	"encoding/xml"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/porto-dev/porto/api"
	"github.com/porto-dev/porto/service"
)

type policyconfig struct {
	Vendor  string `xml:"vendor"`
	Actions []struct {
		ID          string `xml:"id,attr"`
		Description string `xml:"description"`
		Message     string `xml:"message"`
		Defaults    struct {
			Any      string `xml:"allow_any"`
			Inactive string `xml:"allow_inactive"`
			Active   string `xml:"allow_active"`
		} `xml:"defaults"`
	} `xml:"action"`
}

type rule struct {
	Own             string `xml:"own,attr"`
	SendDestination string `xml:"send_destination,attr"`
	SendInterface   string `xml:"send_interface,attr"`
	SendMember      string `xml:"send_member,attr"`
}

type busconfig struct {
	Policies []struct {
		User    string `xml:"user,attr"`
		Context string `xml:"context,attr"`
		Allow   []rule `xml:"allow"`
		Deny    []rule `xml:"deny"`
	} `xml:"policy"`
}

func readXML(t *testing.T, file string, v any) {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if err := xml.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
}

// readKeyFile parses an ini-style file (systemd unit, D-Bus activation
// file) into section -> key -> values.
func readKeyFile(t *testing.T, file string) map[string]map[string][]string {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string]map[string][]string{}
	section := ""
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || line[0] == '#' || line[0] == ';':
		case line[0] == '[' && line[len(line)-1] == ']':
			section = line[1 : len(line)-1]
			out[section] = map[string][]string{}
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" {
				t.Fatalf("%s:%d: bad line %q", file, n, line)
			}
			out[section][k] = append(out[section][k], v)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestPolkitPolicy(t *testing.T) {
	var p policyconfig
	readXML(t, "org.porto.policy", &p)
	var ids []string
	for _, a := range p.Actions {
		ids = append(ids, a.ID)
		if !strings.HasPrefix(a.ID, "org.porto.") {
			t.Errorf("action %q does not start with org.porto.", a.ID)
		}
		if a.Description == "" || a.Message == "" {
			t.Errorf("action %q: description and message are required", a.ID)
		}
		for name, v := range map[string]string{
			"allow_any": a.Defaults.Any, "allow_inactive": a.Defaults.Inactive, "allow_active": a.Defaults.Active,
		} {
			if v != "auth_admin" {
				t.Errorf("action %q: %s = %q, want auth_admin", a.ID, name, v)
			}
		}
	}
	slices.Sort(ids)
	want := []string{api.ActionManageAny, api.ActionSetPrivileged}
	slices.Sort(want)
	if !slices.Equal(ids, want) {
		t.Errorf("polkit actions = %v, api/actions.go declares %v", ids, want)
	}
}

func TestDBusPolicy(t *testing.T) {
	var c busconfig
	readXML(t, "org.porto.Manager.conf", &c)
	var owners []string
	allowed := map[string]bool{} // interface or interface.member
	denied := map[string]bool{}
	for _, p := range c.Policies {
		for _, r := range p.Allow {
			if r.Own != "" {
				if r.Own != api.BusName {
					t.Errorf("policy lets someone own %q, want only %q", r.Own, api.BusName)
				}
				if p.User != "root" {
					t.Errorf("policy lets user=%q context=%q own %q; only root may", p.User, p.Context, r.Own)
				}
				owners = append(owners, p.User)
				continue
			}
			if r.SendDestination != api.BusName {
				t.Errorf("allow rule with send_destination %q, want %q", r.SendDestination, api.BusName)
			}
			if r.SendInterface == "" {
				t.Errorf("allow rule without send_interface opens every interface of %q", r.SendDestination)
			}
			key := r.SendInterface
			if r.SendMember != "" {
				key += "." + r.SendMember
			}
			allowed[key] = true
		}
		for _, r := range p.Deny {
			key := r.SendInterface
			if r.SendMember != "" {
				key += "." + r.SendMember
			}
			denied[key] = true
		}
	}
	if len(owners) == 0 {
		t.Errorf("nobody may own %s", api.BusName)
	}
	for _, want := range []string{
		api.ManagerInterface,
		api.ContainerInterface,
		"org.freedesktop.DBus.Introspectable",
		"org.freedesktop.DBus.Peer",
		"org.freedesktop.DBus.Properties.Get",
		"org.freedesktop.DBus.Properties.GetAll",
	} {
		if !allowed[want] {
			t.Errorf("policy does not allow calls to %s", want)
		}
	}
	if allowed["org.freedesktop.DBus.Properties"] || allowed["org.freedesktop.DBus.Properties.Set"] {
		t.Errorf("policy exposes org.freedesktop.DBus.Properties.Set")
	}
	if !denied["org.freedesktop.DBus.Properties.Set"] {
		t.Errorf("policy should deny org.freedesktop.DBus.Properties.Set explicitly")
	}
}

func TestActivationFile(t *testing.T) {
	f := readKeyFile(t, "org.porto.Manager.service")
	s := f["D-BUS Service"]
	if s == nil {
		t.Fatal("no [D-BUS Service] section")
	}
	if got := s["Name"]; !slices.Equal(got, []string{api.BusName}) {
		t.Errorf("Name = %v, want %s", got, api.BusName)
	}
	if got := s["SystemdService"]; !slices.Equal(got, []string{"porto.service"}) {
		t.Errorf("SystemdService = %v, want porto.service", got)
	}
	if got := s["User"]; !slices.Equal(got, []string{"root"}) {
		t.Errorf("User = %v, want root", got)
	}
}

func TestSystemdUnit(t *testing.T) {
	f := readKeyFile(t, "porto.service")
	s := f["Service"]
	if s == nil {
		t.Fatal("no [Service] section")
	}
	want := map[string]string{
		"Type":         "notify",
		"BusName":      api.BusName,
		"KillMode":     "process",
		"NotifyAccess": "all",
	}
	for k, v := range want {
		if got := s[k]; !slices.Equal(got, []string{v}) {
			t.Errorf("%s = %v, want %s", k, got, v)
		}
	}
	exec := s["ExecStart"]
	if len(exec) != 1 || !strings.HasPrefix(exec[0], "/usr/sbin/portod") {
		t.Errorf("ExecStart = %v, want /usr/sbin/portod ...", exec)
	}
	if f["Install"] == nil {
		t.Errorf("no [Install] section")
	}
}

// The documented example porto.conf is exactly the built-in defaults, and
// every key the parser knows is documented in it.
func TestExampleConfig(t *testing.T) {
	got, err := service.LoadConfig("../porto.conf", false)
	if err != nil {
		t.Fatalf("porto.conf: %v", err)
	}
	if want := service.DefaultConfig(); !reflect.DeepEqual(got, want) {
		t.Errorf("porto.conf differs from the defaults:\n got %+v\nwant %+v", got, want)
	}
	b, err := os.ReadFile("../porto.conf")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' {
			continue
		}
		k, _, _ := strings.Cut(line, "=")
		k = strings.TrimSpace(k)
		// Each key is documented: a comment right above it.
		i := strings.Index(string(b), "\n"+line)
		if i < 0 {
			t.Errorf("key %s: not found as its own line", k)
			continue
		}
		prev := string(b[:i])
		if j := strings.LastIndex(prev, "\n"); j < 0 || !strings.HasPrefix(prev[j+1:], "#") {
			t.Errorf("key %s has no comment above it", k)
		}
		// A bad value of this key is rejected, naming the key.
		_, err := service.ParseConfig(strings.NewReader(k+" = \x01bad value\x01\n"), "test.conf")
		if err == nil || !strings.Contains(err.Error(), k) {
			t.Errorf("bad value for %s: err = %v, want an error naming the key", k, err)
		}
	}
	if _, err := service.ParseConfig(strings.NewReader("no_such_key = 1\n"), "test.conf"); err == nil || !strings.Contains(err.Error(), "no_such_key") {
		t.Errorf("unknown key: err = %v, want an error naming it", err)
	}
}

// porto.socket listens where portod's default configuration expects the
// Varlink socket, under the name varlinkapi looks for.
func TestSocketUnit(t *testing.T) {
	f := readKeyFile(t, "porto.socket")
	s := f["Socket"]
	if s == nil {
		t.Fatal("no [Socket] section")
	}
	want := map[string]string{
		"ListenStream":       service.DefaultConfig().VarlinkSocket,
		"FileDescriptorName": "varlink",
		"Service":            "porto.service",
		"SocketMode":         "0666",
	}
	for k, v := range want {
		if got := s[k]; !slices.Equal(got, []string{v}) {
			t.Errorf("%s = %v, want %s", k, got, v)
		}
	}
	if also := readKeyFile(t, "porto.service")["Install"]["Also"]; !slices.Contains(also, "porto.socket") {
		t.Errorf("porto.service [Install] Also = %v, want porto.socket", also)
	}
}
