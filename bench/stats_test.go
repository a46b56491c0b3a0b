package bench

import (
	"errors"
	"testing"
	"time"
)

func TestSample(t *testing.T) {
	var s Sample
	for i := 10; i >= 1; i-- {
		s = append(s, time.Duration(i)*time.Millisecond)
	}
	if got := s.Median(); got != 6*time.Millisecond && got != 5*time.Millisecond {
		t.Errorf("median %v", got)
	}
	if got := s.P90(); got != 9*time.Millisecond {
		t.Errorf("p90 %v", got)
	}
	if s[0] != 10*time.Millisecond {
		t.Error("Quantile sorted the sample in place")
	}
	if Sample(nil).Median() != 0 || Ratio(1, 0) != "-" || Ratio(3, 2) != "1.50x" {
		t.Error("edge cases")
	}
	if Ms(1500*time.Microsecond) != "1.50" || Ms(250*time.Microsecond) != "0.250" {
		t.Error(Ms(1500*time.Microsecond), Ms(250*time.Microsecond))
	}
}

func TestInterleave(t *testing.T) {
	var order []string
	mk := func(n string) Case { return Case{n, func() error { order = append(order, n); return nil }} }
	got, err := Interleave(3, 1, []Case{mk("a"), mk("b")})
	if err != nil || len(got["a"]) != 3 || len(got["b"]) != 3 {
		t.Fatal(got, err)
	}
	if want := "ababbaab"; join(order) != want {
		t.Errorf("order %s, want %s", join(order), want)
	}
	_, err = Interleave(3, 0, []Case{{"x", func() error { return errors.New("boom") }}})
	if err == nil || err.Error() != "x: boom" {
		t.Error(err)
	}
}

func join(s []string) string {
	out := ""
	for _, x := range s {
		out += x
	}
	return out
}
