package service

import (
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"

	"github.com/porto-dev/porto/api"
	"github.com/porto-dev/porto/isolation"
)

// splitList splits "a; b; c" on unescaped ';' and unescapes "\;". Empty
// items (after trimming spaces) are dropped.
func splitList(s string) []string {
	var out []string
	var cur strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '\\' && i+1 < len(s) && s[i+1] == ';' {
			cur.WriteByte(';')
			i++
			continue
		}
		if c == ';' {
			if t := strings.TrimSpace(cur.String()); t != "" {
				out = append(out, t)
			}
			cur.Reset()
			continue
		}
		cur.WriteByte(c)
	}
	if t := strings.TrimSpace(cur.String()); t != "" {
		out = append(out, t)
	}
	return out
}

// ParseEnv parses "A=1; B=2" ("\;" escapes a ';' inside a value). A name must
// be non-empty and free of '=' and NUL.
func ParseEnv(s string) ([]string, error) {
	items := splitList(s)
	for _, it := range items {
		k, _, ok := strings.Cut(it, "=")
		if !ok {
			return nil, api.Errorf(api.InvalidValue, "env: %q is not NAME=VALUE", it)
		}
		if k == "" || strings.ContainsAny(k, " \t\x00") {
			return nil, api.Errorf(api.InvalidValue, "env: invalid variable name %q", k)
		}
		if strings.IndexByte(it, 0) >= 0 {
			return nil, api.Errorf(api.InvalidValue, "env: NUL byte in %q", k)
		}
	}
	return items, nil
}

var rlimitNames = map[string]int{
	"as": 9, "core": 4, "cpu": 0, "data": 2, "fsize": 1, "locks": 10, "memlock": 8,
	"msgqueue": 12, "nice": 13, "nofile": 7, "nproc": 6, "rss": 5, "rtprio": 14,
	"rttime": 15, "sigpending": 11, "stack": 3,
}

const rlimInfinity = math.MaxUint64

func parseRlimValue(s string) (uint64, error) {
	switch s {
	case "unlim", "unlimited", "inf", "infinity":
		return rlimInfinity, nil
	}
	return strconv.ParseUint(s, 10, 64)
}

// ParseUlimit parses "nproc: 20480 30720; nofile: 4096 8192" (one value sets
// soft and hard; "unlimited" is accepted).
func ParseUlimit(s string) ([]isolation.Rlimit, error) {
	var out []isolation.Rlimit
	seen := map[int]int{}
	for _, it := range splitList(s) {
		name, vals, ok := strings.Cut(it, ":")
		if !ok {
			return nil, api.Errorf(api.InvalidValue, "ulimit: %q is not 'name: soft [hard]'", it)
		}
		name = strings.TrimSpace(name)
		res, ok := rlimitNames[name]
		if !ok {
			return nil, api.Errorf(api.InvalidValue, "ulimit: unknown resource %q (known: %s)", name, strings.Join(rlimitList(), ", "))
		}
		f := strings.Fields(vals)
		if len(f) < 1 || len(f) > 2 {
			return nil, api.Errorf(api.InvalidValue, "ulimit: %s needs 'soft [hard]'", name)
		}
		soft, err := parseRlimValue(f[0])
		if err != nil {
			return nil, api.Errorf(api.InvalidValue, "ulimit: %s: bad value %q", name, f[0])
		}
		hard := soft
		if len(f) == 2 {
			if hard, err = parseRlimValue(f[1]); err != nil {
				return nil, api.Errorf(api.InvalidValue, "ulimit: %s: bad value %q", name, f[1])
			}
		}
		if soft > hard {
			return nil, api.Errorf(api.InvalidValue, "ulimit: %s: soft limit %s exceeds hard limit %s", name, f[0], f[len(f)-1])
		}
		r := isolation.Rlimit{Resource: res, Soft: soft, Hard: hard}
		if i, dup := seen[res]; dup {
			out[i] = r
			continue
		}
		seen[res] = len(out)
		out = append(out, r)
	}
	return out, nil
}

func rlimitList() []string {
	var l []string
	for k := range rlimitNames {
		l = append(l, k)
	}
	sort.Strings(l)
	return l
}

// ParseBool accepts true/false (and 1/0, yes/no).
func ParseBool(s string) (bool, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "true", "1", "yes", "on":
		return true, nil
	case "false", "0", "no", "off":
		return false, nil
	}
	return false, fmt.Errorf("%q is not a boolean (true or false)", s)
}

// ParseSize parses a byte count with an optional binary suffix: 64M, 1G,
// 512k, 100 (bytes). Suffixes are powers of 1024.
func ParseSize(s string) (uint64, error) {
	t := strings.TrimSpace(s)
	if t == "" {
		return 0, fmt.Errorf("empty size")
	}
	mult := uint64(1)
	last := t[len(t)-1]
	if last == 'b' || last == 'B' {
		t = t[:len(t)-1]
		if t == "" {
			return 0, fmt.Errorf("%q is not a size", s)
		}
		last = t[len(t)-1]
	}
	switch last {
	case 'k', 'K':
		mult = 1 << 10
	case 'm', 'M':
		mult = 1 << 20
	case 'g', 'G':
		mult = 1 << 30
	case 't', 'T':
		mult = 1 << 40
	case 'p', 'P':
		mult = 1 << 50
	}
	if mult != 1 {
		t = strings.TrimSpace(t[:len(t)-1])
	}
	if t == "" {
		return 0, fmt.Errorf("%q is not a size", s)
	}
	if strings.Contains(t, ".") {
		f, err := strconv.ParseFloat(t, 64)
		if err != nil || f < 0 || math.IsInf(f, 0) || math.IsNaN(f) || f*float64(mult) >= math.MaxUint64 {
			return 0, fmt.Errorf("%q is not a size", s)
		}
		return uint64(f * float64(mult)), nil
	}
	n, err := strconv.ParseUint(t, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%q is not a size", s)
	}
	if n > math.MaxUint64/mult {
		return 0, fmt.Errorf("%q is too large", s)
	}
	return n * mult, nil
}

// SplitCommand splits a command line the way a shell splits words, without
// expansions: single quotes, double quotes (with \" \\ \$ \` escapes) and
// backslash escapes.
func SplitCommand(s string) ([]string, error) {
	var args []string
	var cur strings.Builder
	inWord := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n':
			if inWord {
				args = append(args, cur.String())
				cur.Reset()
				inWord = false
			}
		case c == '\'':
			inWord = true
			j := strings.IndexByte(s[i+1:], '\'')
			if j < 0 {
				return nil, fmt.Errorf("unterminated single quote")
			}
			cur.WriteString(s[i+1 : i+1+j])
			i += j + 1
		case c == '"':
			inWord = true
			i++
			for ; i < len(s) && s[i] != '"'; i++ {
				if s[i] == '\\' && i+1 < len(s) && strings.IndexByte("\"\\$`\n", s[i+1]) >= 0 {
					i++
				}
				cur.WriteByte(s[i])
			}
			if i >= len(s) {
				return nil, fmt.Errorf("unterminated double quote")
			}
		case c == '\\':
			inWord = true
			if i+1 < len(s) {
				i++
				cur.WriteByte(s[i])
			}
		default:
			inWord = true
			cur.WriteByte(c)
		}
	}
	if inWord {
		args = append(args, cur.String())
	}
	return args, nil
}
