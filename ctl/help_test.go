package ctl

import (
	"strings"
	"testing"
)

// TestHelp pins "portoctl --help" and every command's --help. Help never
// dials portod (runCLI's nil client would panic), goes to stdout and
// exits 0.
func TestHelp(t *testing.T) {
	top := runCLI(nil, []string{"--help"})
	if top.status != 0 || top.stderr != "" {
		t.Fatalf("--help: status %d, stderr %q", top.status, top.stderr)
	}
	golden(t, "help/portoctl.golden", top.stdout)
	for _, alt := range [][]string{{"-h"}, {"help"}} {
		if r := runCLI(nil, alt); r.stdout != top.stdout || r.status != 0 {
			t.Errorf("%v differs from --help", alt)
		}
	}
	for _, cmd := range commands {
		if !strings.Contains(top.stdout, "\n  "+cmd.name+" ") {
			t.Errorf("--help does not list %s", cmd.name)
		}
		r := runCLI(nil, []string{cmd.name, "--help"})
		if r.status != 0 || r.stderr != "" || !strings.HasPrefix(r.stdout, "Usage: portoctl "+cmd.name+" ") {
			t.Errorf("%s --help: status %d, stdout %q, stderr %q", cmd.name, r.status, r.stdout, r.stderr)
		}
		golden(t, "help/"+cmd.name+".golden", r.stdout)
		for _, alt := range [][]string{{cmd.name, "-h"}, {"help", cmd.name}} {
			if a := runCLI(nil, alt); a.stdout != r.stdout || a.status != 0 {
				t.Errorf("%v differs from %s --help:\n%s", alt, cmd.name, diff(r.stdout, a.stdout))
			}
		}
	}
	for alias, name := range aliases {
		if a, r := runCLI(nil, []string{alias, "--help"}), runCLI(nil, []string{name, "--help"}); a.stdout != r.stdout {
			t.Errorf("%s --help differs from %s --help", alias, name)
		}
	}
	if r := runCLI(nil, []string{"help", "nosuch"}); r.status != ExitUsage || r.stdout != "" {
		t.Errorf("help nosuch: status %d stdout %q", r.status, r.stdout)
	}
}
