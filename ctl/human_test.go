package ctl

import (
	"fmt"
	"math"
	"strconv"
	"testing"
)

func TestHumanValue(t *testing.T) {
	for _, tc := range []struct{ key, raw, want string }{
		{"exit_status", "0", "Container exited with 0"},
		{"exit_status", "256", "Container exited with 1"},
		{"exit_status", "65280", "Container exited with 255"},
		{"exit_status", "9", "Container killed by signal 9"},
		{"exit_status", "15", "Container killed by signal 15"},
		{"exit_status", "134", "Container killed by signal 6 (core dumped)"},
		{"exit_status", "4991", "4991"}, // stopped by signal 19: not final
		{"exit_status", "-1", "-1"},
		{"exit_status", "x", "x"},
		{"exit_status", "", ""},
		{"memory_usage", "225280", "220K"},
		{"memory_usage", "212992", "208K"},
		{"memory_usage", "1024", "1024"},
		{"memory_usage", "1025", "1.00098K"},
		{"memory_usage", "0", "0"},
		{"memory_limit", "1073741824", "1024M"},
		{"memory_limit", "1610612736", "1.5G"},
		{"memory_limit", "67108864", "64M"},
		{"memory_guarantee", "2147483648", "2G"},
		{"max_rss", "5000000000000", "4656.61G"},
		{"stdout_limit", "8388608", "8M"},
		{"io_limit", "sda: 100", "sda: 100"},
		{"cpu_usage", "1417320", "1.41732ms"},
		{"cpu_usage", "1050660", "1.05066ms"},
		{"cpu_usage", "999", "999ns"},
		{"cpu_usage", "1000", "1000ns"},
		{"cpu_usage", "1001", "1.001us"},
		{"cpu_usage", "2500000000", "2.5s"},
		{"cpu_usage", "12345678901234", "12345.7s"},
		{"cpu_usage", "1234567890123456", "1.23457e+06s"},
		{"time", "0", "00:00"},
		{"time", "61", "01:01"},
		{"time", "3600", "01:00:00"},
		{"time", "90061", "25:01:01"},
		{"start_errno", "2", "2"},
		{"root_pid", "9354", "9354"},
		{"oom_killed", "false", "false"},
		{"stdout", "a\n", "a\n"},
		{"command", "sleep 1000", "sleep 1000"},
		{"net_limit", "default: 2097152; em1: 0", "default: 2M; em1: 0"},
		{"net_bytes", "em1: 1536", "em1: 1.5K"},
		{"net_packets", "em1: 4096", "em1: 4096"},
		{"net_guarantee", "", ""},
		{"net_limit", "odd", "odd"},
	} {
		if got := HumanValue(tc.key, tc.raw); got != tc.want {
			t.Errorf("HumanValue(%q, %q) = %q, want %q", tc.key, tc.raw, got, tc.want)
		}
	}
}

func TestParseSignal(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int
		ok   bool
	}{
		{"9", 9, true}, {"KILL", 9, true}, {"SIGKILL", 9, true}, {"kill", 9, true}, {"-9", 9, true},
		{"-KILL", 9, true}, {"TERM", 15, true}, {"SIGHUP", 1, true}, {"usr2", 12, true},
		{"RTMIN", 34, true}, {"RTMIN+3", 37, true}, {"SIGRTMAX", 64, true}, {"RTMAX-1", 63, true},
		{"0", 0, false}, {"65", 0, false}, {"FOO", 0, false}, {"", 0, false}, {"RTMAX+1", 0, false},
	} {
		got, ok := parseSignal(tc.in)
		if ok != tc.ok || (ok && got != tc.want) {
			t.Errorf("parseSignal(%q) = %d, %v; want %d, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

func TestParseProperties(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string // properties joined by "|", or "error"
	}{
		{[]string{"command=sleep 1"}, "command=sleep 1"},
		{[]string{"command=a=b"}, "command=a=b"},
		{[]string{"ulimit", "=", "nproc: 1 2"}, "ulimit=nproc: 1 2"},
		{[]string{"cwd", "=/tmp"}, "cwd=/tmp"},
		{[]string{"cwd=", "/tmp"}, "cwd=/tmp"},
		{[]string{"env=", "A=1; B=2"}, "env=A=1; B=2"},
		{[]string{"env=", "isolate=false"}, "env=|isolate=false"},
		{[]string{"env="}, "env="},
		{[]string{"env", "="}, "env="},
		{[]string{"env", "=", "="}, "env=="},
		{[]string{"a=1", "b", "=", "2", "c=", "3", "d", "=4"}, "a=1|b=2|c=3|d=4"},
		{[]string{"command"}, "error"},
		{[]string{"=x"}, "error"},
		{[]string{"="}, "error"},
		{[]string{"a=1", "b"}, "error"},
		{nil, ""},
	} {
		props, err := parseProperties(tc.args)
		got := "error"
		if err == nil {
			var s []string
			for _, p := range props {
				s = append(s, p.String())
			}
			got = join(s)
		}
		if got != tc.want {
			t.Errorf("parseProperties(%q) = %q, want %q", tc.args, got, tc.want)
		}
	}
}

func join(s []string) string {
	out := ""
	for i, x := range s {
		if i > 0 {
			out += "|"
		}
		out += x
	}
	return out
}

// humanSeconds is fmt's "%02d:%02d[:%02d]" without fmt.
func TestHumanSecondsFormat(t *testing.T) {
	for _, s := range []uint64{0, 5, 59, 60, 61, 599, 3599, 3600, 3661, 36000, 359999, 360000, 1 << 40, math.MaxUint64} {
		h, m, sec := s/3600, s/60%60, s%60
		want := fmt.Sprintf("%02d:%02d", m, sec)
		if h > 0 {
			want = fmt.Sprintf("%02d:%02d:%02d", h, m, sec)
		}
		if got := humanSeconds(strconv.FormatUint(s, 10)); got != want {
			t.Errorf("humanSeconds(%d) = %q, want %q", s, got, want)
		}
	}
}
