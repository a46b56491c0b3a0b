package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDeps pins porto-init to the standard library and golang.org/x/sys:
// no portod code may end up in a container's pid 1.
func TestDeps(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", ".").Output()
	if err != nil {
		t.Skipf("go list: %v", err)
	}
	for _, p := range strings.Fields(string(out)) {
		if p == "github.com/porto-dev/porto/cmd/porto-init" || strings.HasPrefix(p, "golang.org/x/sys/") {
			continue
		}
		t.Errorf("porto-init depends on %s", p)
	}
}
