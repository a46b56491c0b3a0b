package api

import (
	"errors"
	"fmt"
)

// Code is a class of error. The numbers are Porto's EError numbers.
type Code int

const (
	Success                Code = 0
	Unknown                Code = 1
	InvalidMethod          Code = 2
	ContainerAlreadyExists Code = 3
	ContainerDoesNotExist  Code = 4
	InvalidProperty        Code = 5
	InvalidData            Code = 6
	InvalidValue           Code = 7
	InvalidState           Code = 8
	NotSupported           Code = 9
	ResourceNotAvailable   Code = 10
	Permission             Code = 11
	NoSpace                Code = 14
	Busy                   Code = 15
	NoValue                Code = 20
	InvalidCommand         Code = 22
	LostError              Code = 23
	InvalidPath            Code = 25
)

// codeInfo is the single table of every Code: its name (the EError name,
// also the suffix of the D-Bus error name) and portoctl's exit status.
var codeInfo = map[Code]struct {
	name string
	exit int
}{
	Success:                {"Success", 0},
	Unknown:                {"Unknown", 1},
	InvalidMethod:          {"InvalidMethod", 2},
	ContainerAlreadyExists: {"ContainerAlreadyExists", 3},
	ContainerDoesNotExist:  {"ContainerDoesNotExist", 4},
	InvalidProperty:        {"InvalidProperty", 5},
	InvalidData:            {"InvalidData", 6},
	InvalidValue:           {"InvalidValue", 7},
	InvalidState:           {"InvalidState", 8},
	NotSupported:           {"NotSupported", 9},
	ResourceNotAvailable:   {"ResourceNotAvailable", 10},
	Permission:             {"Permission", 11},
	NoSpace:                {"NoSpace", 14},
	Busy:                   {"Busy", 15},
	NoValue:                {"NoValue", 20},
	InvalidCommand:         {"InvalidCommand", 22},
	LostError:              {"LostError", 23},
	InvalidPath:            {"InvalidPath", 25},
}

var codeByName = func() map[string]Code {
	m := make(map[string]Code, len(codeInfo))
	for c, i := range codeInfo {
		m[i.name] = c
	}
	return m
}()

// Codes returns every known Code.
func Codes() []Code {
	out := make([]Code, 0, len(codeInfo))
	for c := range codeInfo {
		out = append(out, c)
	}
	return out
}

// String returns the EError name, e.g. "InvalidValue".
func (c Code) String() string {
	if i, ok := codeInfo[c]; ok {
		return i.name
	}
	return fmt.Sprintf("Code(%d)", int(c))
}

// DBusName is the D-Bus error name of c, e.g. "org.porto.Error.InvalidValue".
func (c Code) DBusName() string { return ErrorPrefix + c.String() }

// ExitStatus is portoctl's exit status for an error of class c.
func (c Code) ExitStatus() int {
	if i, ok := codeInfo[c]; ok {
		return i.exit
	}
	return 1
}

// CodeByName maps an EError name back to its Code (Unknown if not known).
func CodeByName(name string) (Code, bool) {
	c, ok := codeByName[name]
	if !ok {
		return Unknown, false
	}
	return c, true
}

// CodeByDBusName maps "org.porto.Error.X" back to its Code.
func CodeByDBusName(name string) (Code, bool) {
	if len(name) <= len(ErrorPrefix) || name[:len(ErrorPrefix)] != ErrorPrefix {
		return Unknown, false
	}
	return CodeByName(name[len(ErrorPrefix):])
}

// Error is an error of a known class with a human message.
type Error struct {
	Code Code
	Msg  string
	Err  error // optional cause
}

func (e *Error) Error() string {
	if e.Msg == "" && e.Err != nil {
		return e.Code.String() + ": " + e.Err.Error()
	}
	return e.Code.String() + ": " + e.Msg
}

// Message is the human part of the error: Msg, or the cause's text.
func (e *Error) Message() string {
	if e.Msg == "" && e.Err != nil {
		return e.Err.Error()
	}
	return e.Msg
}

func (e *Error) Unwrap() error { return e.Err }

// Is matches any *Error of the same Code, so errors.Is(err, api.ErrInvalidValue) works.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code == e.Code && (t.Msg == "" || t.Msg == e.Msg)
}

// Errorf makes an *Error of class code with a formatted message.
func Errorf(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Msg: fmt.Sprintf(format, args...)}
}

// Wrap classifies err as code, keeping err as the cause and msg as the message.
func Wrap(code Code, err error, msg string) *Error {
	if msg == "" && err != nil {
		msg = err.Error()
	}
	return &Error{Code: code, Msg: msg, Err: err}
}

// Sentinels, one per class, for errors.Is.
var (
	ErrUnknown                = &Error{Code: Unknown}
	ErrInvalidMethod          = &Error{Code: InvalidMethod}
	ErrContainerAlreadyExists = &Error{Code: ContainerAlreadyExists}
	ErrContainerDoesNotExist  = &Error{Code: ContainerDoesNotExist}
	ErrInvalidProperty        = &Error{Code: InvalidProperty}
	ErrInvalidData            = &Error{Code: InvalidData}
	ErrInvalidValue           = &Error{Code: InvalidValue}
	ErrInvalidState           = &Error{Code: InvalidState}
	ErrNotSupported           = &Error{Code: NotSupported}
	ErrResourceNotAvailable   = &Error{Code: ResourceNotAvailable}
	ErrPermission             = &Error{Code: Permission}
	ErrBusy                   = &Error{Code: Busy}
)

// CodeOf returns the class of the first *Error in err's chain, Success for
// nil, and Unknown for an unclassified error.
func CodeOf(err error) Code {
	if err == nil {
		return Success
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return Unknown
}

// AsError returns err as an *Error: the first in its chain, with the whole
// chain's text as message, or Unknown wrapping err.
func AsError(err error) *Error {
	if err == nil {
		return nil
	}
	var e *Error
	if errors.As(err, &e) {
		if e == err {
			return e
		}
		return &Error{Code: e.Code, Msg: e.Message(), Err: err}
	}
	return &Error{Code: Unknown, Msg: err.Error(), Err: err}
}
