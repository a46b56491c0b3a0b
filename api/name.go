package api

import "strings"

// Limits on container names (Porto's).
const (
	MaxNameComponent = 128
	MaxNameLength    = 200
	MaxNameDepth     = 16
)

// ValidateName checks a container name: components of [A-Za-z0-9_-@:.],
// separated by '/', none empty, "." or "..", each at most MaxNameComponent
// bytes, the whole at most MaxNameLength bytes and MaxNameDepth deep. The
// root "/" is not a valid name to create.
func ValidateName(name string) error {
	if name == "" {
		return Errorf(InvalidValue, "container name is empty")
	}
	if len(name) > MaxNameLength {
		return Errorf(InvalidValue, "container name is longer than %d bytes", MaxNameLength)
	}
	if name[0] == '/' {
		return Errorf(InvalidValue, "container name %q must not start with '/'", name)
	}
	parts := strings.Split(name, "/")
	if len(parts) > MaxNameDepth {
		return Errorf(InvalidValue, "container name %q is deeper than %d levels", name, MaxNameDepth)
	}
	for _, p := range parts {
		switch {
		case p == "":
			return Errorf(InvalidValue, "container name %q has an empty component", name)
		case p == "." || p == "..":
			return Errorf(InvalidValue, "container name %q has a %q component", name, p)
		case len(p) > MaxNameComponent:
			return Errorf(InvalidValue, "container name component %.20q... is longer than %d bytes", p, MaxNameComponent)
		}
		for i := 0; i < len(p); i++ {
			if !nameByte(p[i]) {
				return Errorf(InvalidValue, "container name %q has an invalid character %q (allowed: A-Z a-z 0-9 _ - @ : .)", name, string(rune(p[i])))
			}
		}
	}
	return nil
}

func nameByte(c byte) bool {
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		c == '_' || c == '-' || c == '@' || c == ':' || c == '.'
}

// ParentName returns the parent of a valid name: "/" for a first-level one.
func ParentName(name string) string {
	i := strings.LastIndexByte(name, '/')
	if i < 0 {
		return RootName
	}
	return name[:i]
}
