package main

import (
	"runtime/debug"
	"testing"

	"github.com/porto-dev/porto/isolation"
)

func TestTuneMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("changes the test binary's GC")
	}
	t.Setenv("GOGC", "")
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	cases := []struct {
		args []string
		want int
	}{
		{[]string{"portod"}, masterGCPercent},
		{[]string{"portod", "--config", "x"}, masterGCPercent},
		{[]string{"portod", workerArg, "--config", "x"}, workerGCPercent},
		{[]string{"portod", "--no-supervisor"}, workerGCPercent},
		{[]string{"portod", isolation.StageArg}, 100},
	}
	for _, tc := range cases {
		debug.SetGCPercent(100)
		tuneMemory(tc.args)
		if got := debug.SetGCPercent(100); got != tc.want {
			t.Errorf("%q: GOGC %d, want %d", tc.args, got, tc.want)
		}
	}
	t.Setenv("GOGC", "300")
	tuneMemory([]string{"portod"})
	if got := debug.SetGCPercent(100); got != 100 {
		t.Errorf("with GOGC set: GOGC %d, want it left alone", got)
	}
}
