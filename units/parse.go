package units

import (
	"bufio"
	"bytes"
	"fmt"
	"strconv"
	"strings"
)

// parseUint parses a single-value cgroup file ("123\n"); "max" is
// returned as ^uint64(0).
func parseUint(b []byte) (uint64, error) {
	s := strings.TrimSpace(string(b))
	if s == "max" {
		return ^uint64(0), nil
	}
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		// v1 reports "unlimited" as a huge signed value; -1 is accepted on
		// write and never read back, but be lenient.
		if i, ierr := strconv.ParseInt(s, 10, 64); ierr == nil && i < 0 {
			return ^uint64(0), nil
		}
		return 0, fmt.Errorf("parse %q: %w", s, err)
	}
	return v, nil
}

// parseKeyed parses a flat keyed file ("key value" lines, as memory.stat,
// cpu.stat, memory.events, memory.oom_control). Lines that do not have
// exactly two fields or whose value is not an unsigned number are skipped.
func parseKeyed(b []byte) map[string]uint64 {
	m := make(map[string]uint64)
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 2 {
			continue
		}
		v, err := strconv.ParseUint(f[1], 10, 64)
		if err != nil {
			continue
		}
		m[f[0]] = v
	}
	return m
}

// parseKeyedString parses a flat keyed file keeping string values (as
// cgroup.events: "populated 1\nfrozen 0\n").
func parseKeyedString(b []byte) map[string]string {
	m := make(map[string]string)
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) == 2 {
			m[f[0]] = f[1]
		}
	}
	return m
}

// parseBlkioBytes sums a v1 blkio *io_service_bytes* file:
//
//	254:0 Read 4096
//	254:0 Write 0
//	...
//	Total 4096
func parseBlkioBytes(b []byte) (read, write uint64) {
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 3 {
			continue
		}
		v, err := strconv.ParseUint(f[2], 10, 64)
		if err != nil {
			continue
		}
		switch f[1] {
		case "Read":
			read += v
		case "Write":
			write += v
		}
	}
	return read, write
}

// parseIOStat sums a v2 io.stat file:
//
//	254:0 rbytes=1 wbytes=2 rios=3 wios=4 dbytes=0 dios=0
func parseIOStat(b []byte) (read, write uint64) {
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		for _, kv := range f[min(1, len(f)):] {
			k, v, ok := strings.Cut(kv, "=")
			if !ok {
				continue
			}
			n, err := strconv.ParseUint(v, 10, 64)
			if err != nil {
				continue
			}
			switch k {
			case "rbytes":
				read += n
			case "wbytes":
				write += n
			}
		}
	}
	return read, write
}

// parsePids parses cgroup.procs: one pid per line.
func parsePids(b []byte, into []int) ([]int, error) {
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		pid, err := strconv.Atoi(line)
		if err != nil {
			return into, fmt.Errorf("parse pid %q: %w", line, err)
		}
		into = append(into, pid)
	}
	return into, nil
}

// deviceRule validates one device-cgroup rule: "TYPE MAJOR:MINOR ACCESS"
// with TYPE a|b|c, MAJOR and MINOR a number or '*', ACCESS a non-empty
// subset of "rwm". "a" alone (all devices) is accepted too.
func deviceRule(r string) (string, error) {
	f := strings.Fields(r)
	if len(f) == 1 && f[0] == "a" {
		return "a", nil
	}
	if len(f) != 3 {
		return "", fmt.Errorf("device rule %q: want \"TYPE MAJOR:MINOR ACCESS\"", r)
	}
	switch f[0] {
	case "a", "b", "c":
	default:
		return "", fmt.Errorf("device rule %q: type must be a, b or c", r)
	}
	maj, mnr, ok := strings.Cut(f[1], ":")
	if !ok || !devNum(maj) || !devNum(mnr) {
		return "", fmt.Errorf("device rule %q: want MAJOR:MINOR (numbers or *)", r)
	}
	seen := map[rune]bool{}
	for _, c := range f[2] {
		if !strings.ContainsRune("rwm", c) || seen[c] {
			return "", fmt.Errorf("device rule %q: access must be a subset of rwm", r)
		}
		seen[c] = true
	}
	if len(seen) == 0 {
		return "", fmt.Errorf("device rule %q: empty access", r)
	}
	return strings.Join(f, " "), nil
}

func devNum(s string) bool {
	if s == "*" {
		return true
	}
	_, err := strconv.ParseUint(s, 10, 32)
	return err == nil
}
