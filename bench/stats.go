package bench

import (
	"fmt"
	"slices"
	"time"
)

// Sample is a set of measured durations.
type Sample []time.Duration

// sorted is a sorted copy of s.
func (s Sample) sorted() Sample {
	c := slices.Clone(s)
	slices.Sort(c)
	return c
}

// Quantile is the q-quantile (0..1, nearest rank) of s; 0 when empty.
func (s Sample) Quantile(q float64) time.Duration {
	if len(s) == 0 {
		return 0
	}
	c := s.sorted()
	i := int(q*float64(len(c)-1) + 0.5)
	return c[i]
}

// Median is the 0.5-quantile of s.
func (s Sample) Median() time.Duration { return s.Quantile(0.5) }

// P90 is the 0.9-quantile of s.
func (s Sample) P90() time.Duration { return s.Quantile(0.9) }

// Sum is the total of s.
func (s Sample) Sum() time.Duration {
	var t time.Duration
	for _, d := range s {
		t += d
	}
	return t
}

// Ms formats d in milliseconds with enough digits for sub-millisecond
// figures.
func Ms(d time.Duration) string {
	ms := float64(d.Nanoseconds()) / 1e6
	switch {
	case ms < 1:
		return fmt.Sprintf("%.3f", ms)
	case ms < 100:
		return fmt.Sprintf("%.2f", ms)
	default:
		return fmt.Sprintf("%.0f", ms)
	}
}

// Ratio is a/b formatted as "1.23x" ("-" when b is 0).
func Ratio(a, b time.Duration) string {
	if b == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2fx", float64(a)/float64(b))
}

// Case is one contender of an interleaved measurement: Run does one
// iteration; the time of the whole call is recorded.
type Case struct {
	Name string
	Run  func() error
}

// Interleave runs warm unrecorded then n recorded iterations of every case,
// A B C A B C ..., rotating which case goes first in each round so that no
// case always follows the same one. It stops at the first error.
func Interleave(n, warm int, cases []Case) (map[string]Sample, error) {
	out := make(map[string]Sample, len(cases))
	for i := -warm; i < n; i++ {
		for j := range cases {
			c := cases[(j+max(i, 0))%len(cases)]
			t0 := time.Now()
			err := c.Run()
			d := time.Since(t0)
			if err != nil {
				return out, fmt.Errorf("%s: %w", c.Name, err)
			}
			if i >= 0 {
				out[c.Name] = append(out[c.Name], d)
			}
		}
	}
	return out, nil
}
