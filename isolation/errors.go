package isolation

import (
	"errors"
	"unicode"
	"unicode/utf8"

	"golang.org/x/sys/unix"
)

// Strerror renders errno the way glibc's strerror does, capitalised:
// ENOENT is "No such file or directory".
func Strerror(errno unix.Errno) string {
	s := errno.Error()
	r, n := utf8.DecodeRuneInString(s)
	if r == utf8.RuneError {
		return s
	}
	return string(unicode.ToUpper(r)) + s[n:]
}

// NewStartError builds the StartError for a failed operation op. The errno
// is taken from err when it wraps a unix.Errno; otherwise Errno is EINVAL
// and Msg is err's text.
func NewStartError(op string, err error) *StartError {
	var se *StartError
	if errors.As(err, &se) {
		return se
	}
	var errno unix.Errno
	if errors.As(err, &errno) {
		return &StartError{Errno: int(errno), Op: op, Msg: Strerror(errno)}
	}
	return &StartError{Errno: int(unix.EINVAL), Op: op, Msg: err.Error()}
}

// stageError is a StartError with a custom message and errno.
func stageError(errno unix.Errno, op, msg string) *StartError {
	return &StartError{Errno: int(errno), Op: op, Msg: msg}
}
