package isolation

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// ParseBinds parses Porto's bind property: "SRC DST [ro|rw]; ...".
//
// Entries are separated by ';' and fields by blanks; empty entries are
// skipped. A backslash makes the next character literal, so "\;", "\ " and
// "\\" put a semicolon, a blank or a backslash into a path. SRC and DST must
// be absolute paths without NUL bytes; the mode defaults to rw. DST is a
// path inside the container's root and is resolved there at start (it can
// never leave the root, whatever symlinks or ".." it holds). ParseBinds only
// checks syntax: whether SRC exists is checked when the container starts.
func ParseBinds(s string) ([]Bind, error) {
	entries, err := splitEscaped(s)
	if err != nil {
		return nil, err
	}
	var out []Bind
	for _, f := range entries {
		if len(f) == 0 {
			continue
		}
		if len(f) < 2 || len(f) > 3 {
			return nil, fmt.Errorf("bind %q: expected \"SRC DST [ro|rw]\"", strings.Join(f, " "))
		}
		b := Bind{Source: f[0], Target: f[1]}
		if len(f) == 3 {
			switch f[2] {
			case "ro":
				b.ReadOnly = true
			case "rw":
			default:
				return nil, fmt.Errorf("bind %q: mode %q is not ro or rw", strings.Join(f, " "), f[2])
			}
		}
		for _, p := range []string{b.Source, b.Target} {
			if !strings.HasPrefix(p, "/") {
				return nil, fmt.Errorf("bind %q: %q is not an absolute path", strings.Join(f, " "), p)
			}
			if strings.IndexByte(p, 0) >= 0 {
				return nil, fmt.Errorf("bind %q: path contains a NUL byte", strings.Join(f, " "))
			}
		}
		out = append(out, b)
	}
	return out, nil
}

// splitEscaped splits s into ';'-separated entries of blank-separated
// fields, honouring backslash escapes.
func splitEscaped(s string) ([][]string, error) {
	var (
		entries [][]string
		fields  []string
		cur     strings.Builder
		inField bool
	)
	endField := func() {
		if inField {
			fields = append(fields, cur.String())
			cur.Reset()
			inField = false
		}
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\\':
			if i+1 == len(s) {
				return nil, errors.New("bind: trailing backslash")
			}
			i++
			cur.WriteByte(s[i])
			inField = true
		case c == ';':
			endField()
			entries = append(entries, fields)
			fields = nil
		case isBlank(c):
			endField()
		default:
			cur.WriteByte(c)
			inField = true
		}
	}
	endField()
	entries = append(entries, fields)
	return entries, nil
}

func isBlank(c byte) bool {
	switch c {
	case ' ', '\t', '\n', '\r', '\v', '\f':
		return true
	}
	return false
}

// FormatBinds renders binds in the syntax ParseBinds reads.
func FormatBinds(binds []Bind) string {
	var sb strings.Builder
	for i, b := range binds {
		if i > 0 {
			sb.WriteString("; ")
		}
		sb.WriteString(escapeField(b.Source))
		sb.WriteByte(' ')
		sb.WriteString(escapeField(b.Target))
		if b.ReadOnly {
			sb.WriteString(" ro")
		} else {
			sb.WriteString(" rw")
		}
	}
	return sb.String()
}

func escapeField(s string) string {
	var sb strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '\\' || c == ';' || isBlank(c) {
			sb.WriteByte('\\')
		}
		sb.WriteByte(c)
	}
	return sb.String()
}

// capNames are the capability names Porto uses (without the CAP_ prefix),
// indexed by number.
var capNames = []string{
	"CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL",
	"SETGID", "SETUID", "SETPCAP", "LINUX_IMMUTABLE", "NET_BIND_SERVICE",
	"NET_BROADCAST", "NET_ADMIN", "NET_RAW", "IPC_LOCK", "IPC_OWNER",
	"SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT",
	"SYS_ADMIN", "SYS_BOOT", "SYS_NICE", "SYS_RESOURCE", "SYS_TIME",
	"SYS_TTY_CONFIG", "MKNOD", "LEASE", "AUDIT_WRITE", "AUDIT_CONTROL",
	"SETFCAP", "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG", "WAKE_ALARM",
	"BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF", "CHECKPOINT_RESTORE",
}

// CapabilityName is Porto's name of capability n ("NET_ADMIN"), or its
// number in decimal when the name is not known.
func CapabilityName(n int) string {
	if n >= 0 && n < len(capNames) {
		return capNames[n]
	}
	return strconv.Itoa(n)
}

// ParseCapabilities parses a capability list such as "CHOWN; NET_ADMIN".
// Entries are separated by ';' (',' and blanks are accepted too); names are
// case-insensitive and may carry a "CAP_" prefix. The result is sorted and
// without duplicates; an empty list gives an empty, non-nil slice.
func ParseCapabilities(s string) ([]int, error) {
	out := []int{}
	for _, f := range strings.FieldsFunc(s, func(r rune) bool {
		return r == ';' || r == ',' || (r < 0x80 && isBlank(byte(r)))
	}) {
		name := strings.ToUpper(f)
		name = strings.TrimPrefix(name, "CAP_")
		n := slices.Index(capNames, name)
		if n < 0 {
			return nil, fmt.Errorf("unknown capability %q", f)
		}
		out = append(out, n)
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// FormatCapabilities renders caps as ParseCapabilities reads them:
// "CHOWN; NET_ADMIN".
func FormatCapabilities(caps []int) string {
	names := make([]string, len(caps))
	for i, c := range caps {
		names[i] = CapabilityName(c)
	}
	return strings.Join(names, "; ")
}

// rlimitNames are Porto's ulimit names, indexed by RLIMIT_* number.
var rlimitNames = []string{
	"cpu", "fsize", "data", "stack", "core", "rss", "nproc", "nofile",
	"memlock", "as", "locks", "sigpending", "msgqueue", "nice", "rtprio", "rttime",
}

// RlimitName is Porto's name of resource limit r ("nofile").
func RlimitName(r int) string {
	if r >= 0 && r < len(rlimitNames) {
		return rlimitNames[r]
	}
	return strconv.Itoa(r)
}
