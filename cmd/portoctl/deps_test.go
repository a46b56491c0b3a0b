package main

import (
	"os/exec"
	"strings"
	"testing"
)

// badDeps are packages portoctl must never link: it talks to portod only
// through the D-Bus API (api, api/client).
var badDeps = []string{
	"github.com/porto-dev/porto/service",
	"github.com/porto-dev/porto/units",
	"github.com/porto-dev/porto/isolation",
	"github.com/porto-dev/porto/dbusapi",
}

// TestDeps pins portoctl's import graph, in the manner of tailscale's
// tstest/deptest: "go list -deps" and a deny list.
func TestDeps(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go tool not found")
	}
	out, err := exec.Command(goBin, "list", "-deps", "github.com/porto-dev/porto/cmd/portoctl").Output()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			t.Fatalf("go list -deps: %v\n%s", err, ee.Stderr)
		}
		t.Fatalf("go list -deps: %v", err)
	}
	deps := strings.Fields(string(out))
	if len(deps) == 0 {
		t.Fatal("go list -deps printed nothing")
	}
	for _, d := range deps {
		for _, bad := range badDeps {
			if d == bad || strings.HasPrefix(d, bad+"/") {
				t.Errorf("portoctl links %s; it may use only api, api/client and pflag of this module's packages", d)
			}
		}
		// Within this module, only api, api/client, ctl and this command.
		if strings.HasPrefix(d, "github.com/porto-dev/porto/") || d == "github.com/porto-dev/porto" {
			switch d {
			case "github.com/porto-dev/porto/api",
				"github.com/porto-dev/porto/api/client",
				"github.com/porto-dev/porto/ctl",
				"github.com/porto-dev/porto/cmd/portoctl":
			default:
				t.Errorf("portoctl links %s; allowed from this module: api, api/client, ctl", d)
			}
		}
	}
}
