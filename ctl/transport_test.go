package ctl

import (
	"strings"
	"testing"
)

// The global --transport option comes before the command, is checked,
// and reaches Dial through CLI.Transport.
func TestTransportOption(t *testing.T) {
	for _, tc := range []struct {
		args   []string
		want   string
		status int
	}{
		{[]string{"version"}, "", 0},
		{[]string{"--transport=varlink", "version"}, "varlink", 0},
		{[]string{"--transport", "dbus", "version"}, "dbus", 0},
		{[]string{"--transport=auto", "--transport=dbus", "version"}, "dbus", 0},
		{[]string{"--transport=carrier-pigeon", "version"}, "", ExitUsage},
		{[]string{"--transport"}, "", ExitUsage},
		{[]string{"--transport=varlink"}, "", ExitUsage}, // no command: never dials
	} {
		var got string
		r := runCLI(newFake(), tc.args, func(c *CLI) {
			dial := c.Dial
			c.Dial = func() (Client, func(), error) {
				got = c.Transport
				return dial()
			}
		})
		if r.status != tc.status || got != tc.want {
			t.Errorf("%q: status %d, transport %q; want %d, %q (stderr %q)", tc.args, r.status, got, tc.status, tc.want, r.stderr)
		}
		if tc.status == ExitUsage && !strings.Contains(r.stderr, "portoctl") && !strings.Contains(r.stderr, "Usage") {
			t.Errorf("%q: stderr %q", tc.args, r.stderr)
		}
	}
	// --help never dials, whatever the transport.
	if r := runCLI(nil, []string{"--transport=varlink", "--help"}); r.status != 0 {
		t.Errorf("--transport=varlink --help: %d", r.status)
	}
}
