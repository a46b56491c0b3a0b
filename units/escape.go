package units

import (
	"fmt"
	"strings"
)

// reservedV1 are the cgroup control files whose names contain no '.'; a
// container name component equal to one of them would collide.
var reservedV1 = map[string]bool{
	"tasks":             true,
	"notify_on_release": true,
	"release_agent":     true,
}

// EscapeComponent maps one component of a container name to a cgroup
// directory name that cannot collide with a control file. Every control
// file of both cgroup versions either contains '.' or is one of tasks,
// notify_on_release and release_agent, so '.' is written as "%2e", '%'
// as "%25", and the first letter of a reserved word is percent-encoded
// ("tasks" -> "%74asks"). Valid porto names never contain '%', so the
// mapping is the identity for nearly every name, and it is reversible.
func EscapeComponent(c string) string {
	if !strings.ContainsAny(c, ".%") && !reservedV1[c] {
		return c
	}
	var b strings.Builder
	for i := 0; i < len(c); i++ {
		ch := c[i]
		if ch == '.' || ch == '%' || (i == 0 && reservedV1[c]) {
			fmt.Fprintf(&b, "%%%02x", ch)
			continue
		}
		b.WriteByte(ch)
	}
	return b.String()
}

// UnescapeComponent reverses EscapeComponent.
func UnescapeComponent(s string) (string, error) {
	if !strings.Contains(s, "%") {
		return s, nil
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			b.WriteByte(s[i])
			continue
		}
		if i+2 >= len(s) {
			return "", fmt.Errorf("bad escape in cgroup name %q", s)
		}
		hi, ok1 := unhex(s[i+1])
		lo, ok2 := unhex(s[i+2])
		if !ok1 || !ok2 {
			return "", fmt.Errorf("bad escape in cgroup name %q", s)
		}
		b.WriteByte(hi<<4 | lo)
		i += 2
	}
	return b.String(), nil
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// EscapeName escapes every component of a container name ("a/b.c" ->
// "a/b%2ec"). The root names "" and "/" map to "".
func EscapeName(name string) string {
	name = strings.Trim(name, "/")
	if name == "" {
		return ""
	}
	parts := strings.Split(name, "/")
	for i, p := range parts {
		parts[i] = EscapeComponent(p)
	}
	return strings.Join(parts, "/")
}

// UnescapeName reverses EscapeName.
func UnescapeName(s string) (string, error) {
	if s == "" {
		return "", nil
	}
	parts := strings.Split(s, "/")
	for i, p := range parts {
		u, err := UnescapeComponent(p)
		if err != nil {
			return "", err
		}
		parts[i] = u
	}
	return strings.Join(parts, "/"), nil
}
