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
	say("\n## In the systemd sandbox: systemd-run --scope, and porto with the systemd driver\n\n")
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
	down := func() {
		progress("sandbox: down")
		if out, err := sbx("down").CombinedOutput(); err != nil {
			say("\n**sandbox down: %v: %s**\n", err, tail(out))
		}
	}
	liveMu.Lock()
	sandboxDown = down
	liveMu.Unlock()
	defer func() {
		liveMu.Lock()
		defer liveMu.Unlock()
		sandboxDown = nil
		down()
	}()
	// porto itself, installed in the sandbox's (overlay) root and started
	// by systemd: cgroup_driver auto picks the systemd driver there.
	bin := *flagBin
	if bin == "" {
		bin = filepath.Join(root, "bin")
	}
	withPorto, driver := true, "?"
	install := fmt.Sprintf(`set -e
B=%q; R=%q
install -m0755 $B/portod /usr/sbin/portod
install -m0755 $B/portoctl /usr/bin/portoctl
install -d /usr/lib/porto /usr/share/dbus-1/system.d /usr/share/dbus-1/system-services /usr/share/polkit-1/actions
install -m0755 $B/porto-init /usr/lib/porto/porto-init
install -m0644 $R/packaging/org.porto.Manager.conf /usr/share/dbus-1/system.d/
install -m0644 $R/packaging/org.porto.Manager.service /usr/share/dbus-1/system-services/
install -m0644 $R/packaging/org.porto.policy /usr/share/polkit-1/actions/
install -m0644 $R/packaging/porto.service /lib/systemd/system/
if [ -e $R/packaging/porto.socket ]; then install -m0644 $R/packaging/porto.socket /lib/systemd/system/; fi
rm -f /etc/porto.conf; install -m0644 $R/porto.conf /etc/porto.conf
# No traffic control: the host's net_cls need not be mounted for a bench.
sed -i 's/^network = true$/network = false/' /etc/porto.conf
systemctl daemon-reload
systemctl reload dbus || busctl call org.freedesktop.DBus / org.freedesktop.DBus ReloadConfig
systemctl start porto
for i in $(seq 100); do portoctl version >/dev/null 2>&1 && break; sleep 0.1; done
portoctl version >/dev/null
# which driver: the systemd one names its scopes porto-*.scope
portoctl run sbx-probe command=true >/dev/null && portoctl wait sbx-probe >/dev/null
portoctl run sbx-probe2 command='sleep 5' >/dev/null
if systemctl list-units --no-legend --type=scope 2>/dev/null | grep -q 'porto'; then echo driver=systemd; else echo driver=cgroupfs; fi
portoctl destroy sbx-probe >/dev/null; portoctl destroy sbx-probe2 >/dev/null
`, bin, root)
	if out, err := sbx("exec", "/bin/sh", "-c", install).CombinedOutput(); err != nil {
		say("porto could not be started in the sandbox (%v): %s\n\n", err, tail(out))
		withPorto = false
	} else {
		driver = strings.TrimSpace(string(out))
		driver = driver[strings.LastIndex(driver, "driver=")+len("driver="):]
		progress("sandbox: porto up, %s driver", driver)
	}
	progress("sandbox: %d x 3", *flagN)
	var stdout, stderr bytes.Buffer
	cmd := sbx("exec", self, "-sandbox-inner", fmt.Sprint("-n=", *flagN), fmt.Sprint("-warm=", *flagWarm), fmt.Sprint("-sandbox-porto=", withPorto))
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("in the sandbox: %v: %s", err, tail(stderr.Bytes()))
	}
	var res map[string]bench.Sample
	if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
		return fmt.Errorf("in the sandbox: %v: %q", err, tail(stdout.Bytes()))
	}
	if withPorto {
		say("porto installed in the sandbox's root (an overlay) and started as porto.service with the stock porto.conf (network = false): cgroup_driver auto chose the **%s** driver; state in /run/porto (a tmpfs there). ", driver)
	}
	say("systemd booted as pid 1 of new namespaces by tests/sandbox/sandbox.sh (in %s); %d interleaved iterations of each, inside it, after %d warm-ups.\n\n", boot.Round(time.Millisecond), *flagN, *flagWarm)
	tableHead("the sandbox's unshare floor")
	base := res["floor"].Median()
	row("floor: `unshare --pid --fork --mount-proc true`", res["floor"], base)
	row("`systemd-run --scope --quiet true`", res["scope"], base)
	row("fork+exec `/bin/true`", res["true"], base)
	if withPorto {
		row("porto ("+driver+" driver), Go client over Varlink: create, set command, start, wait, destroy", res["porto-varlink"], base)
		row("porto ("+driver+" driver), Go client over D-Bus: same", res["porto-dbus"], base)
		row("porto ("+driver+" driver), portoctl: `run x command=true; wait x; destroy x`", res["porto-ctl"], base)
	}
	return nil
}

func tail(b []byte) string {
	s := strings.TrimSpace(string(b))
	if len(s) > 2000 {
		s = "..." + s[len(s)-2000:]
	}
	return s
}
