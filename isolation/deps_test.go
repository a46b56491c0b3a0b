package isolation

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDeps pins the package to the standard library and golang.org/x/sys:
// it is linked into the daemon's stage and must never pull in service,
// dbusapi, units or godbus.
func TestDeps(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", ".").Output()
	if err != nil {
		t.Skipf("go list: %v", err)
	}
	for _, p := range strings.Fields(string(out)) {
		if p == "github.com/porto-dev/porto/isolation" || strings.HasPrefix(p, "golang.org/x/sys/") {
			continue
		}
		t.Errorf("isolation depends on %s", p)
	}
}
