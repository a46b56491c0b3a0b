package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/porto-dev/porto/bench"
)

// suiteSandbox boots the real-systemd sandbox of tests/sandbox (its own
// name and work dir), runs the unshare floor, `systemd-run --scope true`
// and /bin/true interleaved inside it, and tears it down.
func suiteSandbox() error {
	say("\n## systemd-run --scope in the systemd sandbox\n\n")
	root, err := bench.RepoRoot()
	if err != nil {
		return err
	}
	script := filepath.Join(root, "tests", "sandbox", "sandbox.sh")
	if _, err := os.Stat(script); err != nil {
		say("Skipped: no tests/sandbox/sandbox.sh.\n")
		return nil
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	if strings.HasPrefix(self, "/tmp/") || strings.HasPrefix(self, "/run/") || strings.HasPrefix(self, "/var/tmp/") {
		say("Skipped: this binary (%s) is on a path the sandbox replaces with a tmpfs; build it into bin/ (make bench does).\n", self)
		return nil
	}
	sbx := func(args ...string) *exec.Cmd {
		cmd := exec.Command(script, args...)
		cmd.Env = append(os.Environ(), "SBX_NAME=sbx-bench", "SBX_WORKDIR=/var/tmp/sbx-bench")
		return cmd
	}
	progress("sandbox: up")
	t0 := time.Now()
	if out, err := sbx("up").CombinedOutput(); err != nil {
		sbx("down").Run()
		return fmt.Errorf("sandbox up: %v: %s", err, tail(out))
	}
	boot := time.Since(t0)
	defer func() {
		progress("sandbox: down")
		if out, err := sbx("down").CombinedOutput(); err != nil {
			say("\n**sandbox down: %v: %s**\n", err, tail(out))
		}
	}()
	progress("sandbox: %d x 3", *flagN)
	var stdout, stderr bytes.Buffer
	cmd := sbx("exec", self, "-sandbox-inner", fmt.Sprint("-n=", *flagN), fmt.Sprint("-warm=", *flagWarm))
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("in the sandbox: %v: %s", err, tail(stderr.Bytes()))
	}
	var res map[string]bench.Sample
	if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
		return fmt.Errorf("in the sandbox: %v: %q", err, tail(stdout.Bytes()))
	}
	say("systemd booted as pid 1 of new namespaces by tests/sandbox/sandbox.sh (in %s); %d interleaved iterations of each, inside it, after %d warm-ups.\n\n", boot.Round(time.Millisecond), *flagN, *flagWarm)
	tableHead("the sandbox's unshare floor")
	base := res["floor"].Median()
	row("floor: `unshare --pid --fork --mount-proc true`", res["floor"], base)
	row("`systemd-run --scope --quiet true`", res["scope"], base)
	row("fork+exec `/bin/true`", res["true"], base)
	return nil
}

func tail(b []byte) string {
	s := strings.TrimSpace(string(b))
	if len(s) > 2000 {
		s = "..." + s[len(s)-2000:]
	}
	return s
}
