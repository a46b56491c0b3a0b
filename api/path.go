package api

import (
	"fmt"
	"strings"
)

// EscapePath escapes s for use as one D-Bus object path element, the way
// systemd does: every byte outside [A-Za-z0-9] becomes _xx (lower-case hex).
// The empty string becomes "_".
func EscapePath(s string) string {
	if s == "" {
		return "_"
	}
	var b strings.Builder
	b.Grow(len(s) * 2)
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "_%02x", c)
		}
	}
	return b.String()
}

// UnescapePath reverses EscapePath.
func UnescapePath(s string) (string, error) {
	if s == "_" {
		return "", nil
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '_' {
			b.WriteByte(s[i])
			continue
		}
		if i+2 >= len(s) {
			return "", fmt.Errorf("bad escape in %q", s)
		}
		var c byte
		if _, err := fmt.Sscanf(s[i+1:i+3], "%02x", &c); err != nil {
			return "", fmt.Errorf("bad escape in %q", s)
		}
		b.WriteByte(c)
		i += 2
	}
	return b.String(), nil
}

// ContainerPath is the D-Bus object path of container name.
func ContainerPath(name string) string {
	return ContainerPathPrefix + "/" + EscapePath(name)
}
