package ctl

import (
	"fmt"
	"strconv"
	"strings"
)

// sizeKeys are printed with K/M/G suffixes by get and top.
var sizeKeys = map[string]bool{
	"memory_limit":           true,
	"memory_guarantee":       true,
	"memory_usage":           true,
	"memory_limit_total":     true,
	"memory_guarantee_total": true,
	"anon_usage":             true,
	"anon_max_usage":         true,
	"anon_limit":             true,
	"cache_usage":            true,
	"max_rss":                true,
	"io_limit":               true,
	"stdout_limit":           true,
	"hugetlb_limit":          true,
	"hugetlb_usage":          true,
}

// netSizeKeys are per-device maps of sizes ("em1: 1048576; default: 0"):
// each value gets the suffixes of sizeKeys.
var netSizeKeys = map[string]bool{
	"net_limit":     true,
	"net_guarantee": true,
	"net_bytes":     true,
}

// HumanValue formats the raw value of key the way "portoctl get" prints it,
// as old Porto's HumanValue did:
//   - exit_status (a wait(2) status): "Container exited with N" or
//     "Container killed by signal N" (plus " (core dumped)");
//   - sizes (memory_limit, memory_usage, max_rss, io_limit, stdout_limit,
//     ...): 1024-based with a K, M or G suffix and 6 significant digits
//     ("220K", "1.5G"); a value of at most 1024 stays as it is;
//   - cpu_usage, cpu_usage_system (ns): "1.41732ms", with ns/us/ms/s;
//   - time, aging_time (seconds): [HH:]MM:SS;
//   - per-device sizes (net_limit, net_guarantee, net_bytes): each value
//     as a size ("em1: 1M; default: 0").
//
// Anything else, and any value that does not parse, is returned unchanged.
func HumanValue(key, value string) string {
	if value == "" {
		return value
	}
	switch {
	case key == "exit_status":
		return humanExitStatus(value)
	case sizeKeys[key]:
		return humanUnits(value, 1024, []string{"", "K", "M", "G"})
	case key == "cpu_usage" || key == "cpu_usage_system":
		return humanUnits(value, 1000, []string{"ns", "us", "ms", "s"})
	case key == "time" || key == "aging_time":
		return humanSeconds(value)
	case netSizeKeys[key]:
		parts := strings.Split(value, "; ")
		for i, p := range parts {
			if k, v, ok := strings.Cut(p, ": "); ok {
				parts[i] = k + ": " + humanUnits(v, 1024, []string{"", "K", "M", "G"})
			}
		}
		return strings.Join(parts, "; ")
	}
	return value
}

func humanExitStatus(value string) string {
	st, err := strconv.Atoi(value)
	if err != nil || st < 0 {
		return value
	}
	sig := st & 0x7f
	switch {
	case sig == 0: // WIFEXITED
		return fmt.Sprintf("Container exited with %d", (st>>8)&0xff)
	case sig != 0x7f: // WIFSIGNALED
		s := fmt.Sprintf("Container killed by signal %d", sig)
		if st&0x80 != 0 {
			s += " (core dumped)"
		}
		return s
	}
	return value // stopped/continued: not a final status
}

// humanUnits divides by base while the value exceeds it (strictly, as Porto
// did) and prints it like C++'s default ostream << double (%g, 6 digits).
func humanUnits(value string, base float64, suffixes []string) string {
	n, err := strconv.ParseFloat(value, 64)
	if err != nil {
		return value
	}
	i := 0
	for i+1 < len(suffixes) && n > base {
		n /= base
		i++
	}
	return strconv.FormatFloat(n, 'g', 6, 64) + suffixes[i]
}

func humanSeconds(value string) string {
	s, err := strconv.ParseUint(value, 10, 64)
	if err != nil {
		return value
	}
	h, m := s/3600, s/60%60
	s %= 60
	// "%02d:%02d:%02d" (hours) or "%02d:%02d", without fmt: list formats
	// one per running container.
	b := make([]byte, 0, 24)
	if h > 0 {
		b = append(twoDigits(b, h), ':')
	}
	b = append(twoDigits(b, m), ':')
	return string(twoDigits(b, s))
}

// twoDigits appends n as "%02d" does.
func twoDigits(b []byte, n uint64) []byte {
	if n < 10 {
		b = append(b, '0')
	}
	return strconv.AppendUint(b, n, 10)
}

// listingValue is a value as "get NAME" (every key) prints it: humanized,
// and with stdout/stderr longer than 4 KiB cut to their first and last
// 2 KiB, as Porto's listing does.
func listingValue(key, value string) string {
	if (key == "stdout" || key == "stderr") && len(value) > 4096 {
		return value[:2048] + fmt.Sprintf("\n... skip %d bytes ...\n", len(value)-4096) + value[len(value)-2048:]
	}
	return HumanValue(key, value)
}
