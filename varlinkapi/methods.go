package varlinkapi

import (
	"context"
	_ "embed"
	"encoding/json"
	"strings"

	"github.com/porto-dev/porto/api"
	"github.com/porto-dev/porto/apiserver"
	"github.com/porto-dev/porto/service"
)

// Interface names.
const (
	Interface        = "io.porto.Manager"
	ServiceInterface = "org.varlink.service"
	// ErrorPrefix precedes an EError name in an error reply.
	ErrorPrefix = Interface + "."
)

// Description is the interface description of io.porto.Manager.
//
//go:embed io.porto.Manager.varlink
var Description string

//go:embed org.varlink.service.varlink
var serviceDescription string

// ErrorName is the Varlink error name of code: io.porto.Manager.<Name>.
func ErrorName(code api.Code) string { return ErrorPrefix + code.String() }

// CodeByErrorName maps io.porto.Manager.<Name> back to its Code.
func CodeByErrorName(name string) (api.Code, bool) {
	if !strings.HasPrefix(name, ErrorPrefix) {
		return api.Unknown, false
	}
	return api.CodeByName(name[len(ErrorPrefix):])
}

// Errors of org.varlink.service.
const (
	errInterfaceNotFound    = ServiceInterface + ".InterfaceNotFound"
	errMethodNotFound       = ServiceInterface + ".MethodNotFound"
	errMethodNotImplemented = ServiceInterface + ".MethodNotImplemented"
	errInvalidParameter     = ServiceInterface + ".InvalidParameter"
	errExpectedMore         = ServiceInterface + ".ExpectedMore"
)

// callError is a reply error other than an api.Error: org.varlink.service's.
type callError struct {
	name   string
	params any
}

func (e *callError) Error() string { return e.name }

func invalidParameter(name string) error {
	return &callError{errInvalidParameter, map[string]string{"parameter": name}}
}

// handler runs one method of io.porto.Manager: it decodes p, calls the API
// for caller c (built lazily: ListProperties and Version need none) and
// returns the reply's parameters.
type handler func(ctx context.Context, a *apiserver.API, cc *connCaller, p json.RawMessage) (any, error)

// connCaller makes the call's service.Caller once its "interactive" is
// known.
type connCaller struct {
	conn *conn
}

func (cc *connCaller) caller(interactive *bool) service.Caller {
	return cc.conn.caller(interactive != nil && *interactive)
}

// decode decodes p into v, as InvalidParameter on failure.
func decode(p json.RawMessage, v any) error {
	if bad, err := decodeParams(p, v); err != nil {
		return invalidParameter(bad)
	}
	return nil
}

// required reports a missing parameter.
func required(name string, present bool) error {
	if !present {
		return invalidParameter(name)
	}
	return nil
}

type nameArgs struct {
	Name        *string `json:"name"`
	Interactive *bool   `json:"interactive"`
}

func nameMethod(f func(a *apiserver.API, ctx context.Context, c service.Caller, name string) error) handler {
	return func(ctx context.Context, a *apiserver.API, cc *connCaller, p json.RawMessage) (any, error) {
		var in nameArgs
		if err := decode(p, &in); err != nil {
			return nil, err
		}
		if err := required("name", in.Name != nil); err != nil {
			return nil, err
		}
		return empty{}, f(a, ctx, cc.caller(in.Interactive), *in.Name)
	}
}

type empty struct{}

type getCell struct {
	Container string `json:"container"`
	Key       string `json:"key"`
	Value     string `json:"value"`
	Error     string `json:"error"`
	Message   string `json:"message"`
}

type propInfo struct {
	Name        string `json:"name"`
	Description string `json:"description"`
	ReadOnly    bool   `json:"read_only"`
	Dynamic     bool   `json:"dynamic"`
}

// methods of io.porto.Manager, but Watch (the connection streams it).
var methods = map[string]handler{
	api.MethodCreate:  nameMethod((*apiserver.API).Create),
	api.MethodDestroy: nameMethod((*apiserver.API).Destroy),
	api.MethodStart:   nameMethod((*apiserver.API).Start),
	api.MethodPause:   nameMethod((*apiserver.API).Pause),
	api.MethodResume:  nameMethod((*apiserver.API).Resume),
	api.MethodStop: func(ctx context.Context, a *apiserver.API, cc *connCaller, p json.RawMessage) (any, error) {
		var in struct {
			Name        *string `json:"name"`
			TimeoutMs   *int64  `json:"timeout_ms"`
			Interactive *bool   `json:"interactive"`
		}
		if err := decode(p, &in); err != nil {
			return nil, err
		}
		if err := required("name", in.Name != nil); err != nil {
			return nil, err
		}
		if err := required("timeout_ms", in.TimeoutMs != nil); err != nil {
			return nil, err
		}
		return empty{}, a.Stop(ctx, cc.caller(in.Interactive), *in.Name, *in.TimeoutMs)
	},
	api.MethodKill: func(ctx context.Context, a *apiserver.API, cc *connCaller, p json.RawMessage) (any, error) {
		var in struct {
			Name        *string `json:"name"`
			Signal      *int64  `json:"signal"`
			Interactive *bool   `json:"interactive"`
		}
		if err := decode(p, &in); err != nil {
			return nil, err
		}
		if err := required("name", in.Name != nil); err != nil {
			return nil, err
		}
		if err := required("signal", in.Signal != nil); err != nil {
			return nil, err
		}
		return empty{}, a.Kill(ctx, cc.caller(in.Interactive), *in.Name, *in.Signal)
	},
	api.MethodWait: func(ctx context.Context, a *apiserver.API, cc *connCaller, p json.RawMessage) (any, error) {
		var in struct {
			Names       *[]string `json:"names"`
			TimeoutMs   *int64    `json:"timeout_ms"`
			Interactive *bool     `json:"interactive"`
		}
		if err := decode(p, &in); err != nil {
			return nil, err
		}
		if err := required("names", in.Names != nil); err != nil {
			return nil, err
		}
		if err := required("timeout_ms", in.TimeoutMs != nil); err != nil {
			return nil, err
		}
		name, err := a.Wait(ctx, cc.caller(in.Interactive), *in.Names, *in.TimeoutMs)
		return struct {
			Name string `json:"name"`
		}{name}, err
	},
	api.MethodList: func(ctx context.Context, a *apiserver.API, cc *connCaller, p json.RawMessage) (any, error) {
		var in struct {
			Interactive *bool `json:"interactive"`
		}
		if err := decode(p, &in); err != nil {
			return nil, err
		}
		names, err := a.List(ctx, cc.caller(in.Interactive))
		return struct {
			Names []string `json:"names"`
		}{names}, err
	},
	api.MethodGet: func(ctx context.Context, a *apiserver.API, cc *connCaller, p json.RawMessage) (any, error) {
		var in struct {
			Names       *[]string `json:"names"`
			Keys        *[]string `json:"keys"`
			Interactive *bool     `json:"interactive"`
		}
		if err := decode(p, &in); err != nil {
			return nil, err
		}
		if err := required("names", in.Names != nil); err != nil {
			return nil, err
		}
		if err := required("keys", in.Keys != nil); err != nil {
			return nil, err
		}
		res, err := a.Get(ctx, cc.caller(in.Interactive), *in.Names, *in.Keys)
		if err != nil {
			return nil, err
		}
		cells := make([]getCell, len(res))
		for i, r := range res {
			cells[i] = getCell{Container: r.Container, Key: r.Key, Value: r.Value}
			if r.Code != api.Success {
				cells[i].Error, cells[i].Message = ErrorName(r.Code), r.Message
			}
		}
		return struct {
			Values []getCell `json:"values"`
		}{cells}, nil
	},
	api.MethodGetProperty: func(ctx context.Context, a *apiserver.API, cc *connCaller, p json.RawMessage) (any, error) {
		var in struct {
			Name        *string `json:"name"`
			Key         *string `json:"key"`
			Interactive *bool   `json:"interactive"`
		}
		if err := decode(p, &in); err != nil {
			return nil, err
		}
		if err := required("name", in.Name != nil); err != nil {
			return nil, err
		}
		if err := required("key", in.Key != nil); err != nil {
			return nil, err
		}
		v, err := a.GetProperty(ctx, cc.caller(in.Interactive), *in.Name, *in.Key)
		return struct {
			Value string `json:"value"`
		}{v}, err
	},
	api.MethodSetProperty: func(ctx context.Context, a *apiserver.API, cc *connCaller, p json.RawMessage) (any, error) {
		var in struct {
			Name        *string `json:"name"`
			Key         *string `json:"key"`
			Value       *string `json:"value"`
			Interactive *bool   `json:"interactive"`
		}
		if err := decode(p, &in); err != nil {
			return nil, err
		}
		for _, r := range []struct {
			n string
			v *string
		}{{"name", in.Name}, {"key", in.Key}, {"value", in.Value}} {
			if err := required(r.n, r.v != nil); err != nil {
				return nil, err
			}
		}
		return empty{}, a.SetProperty(ctx, cc.caller(in.Interactive), *in.Name, *in.Key, *in.Value)
	},
	api.MethodListProperties: func(ctx context.Context, a *apiserver.API, cc *connCaller, p json.RawMessage) (any, error) {
		if err := decode(p, &struct{}{}); err != nil {
			return nil, err
		}
		ps := a.ListProperties()
		out := make([]propInfo, len(ps))
		for i, p := range ps {
			out[i] = propInfo{p.Name, p.Description, p.ReadOnly, p.Dynamic}
		}
		return struct {
			Properties []propInfo `json:"properties"`
		}{out}, nil
	},
	api.MethodVersion: func(ctx context.Context, a *apiserver.API, cc *connCaller, p json.RawMessage) (any, error) {
		if err := decode(p, &struct{}{}); err != nil {
			return nil, err
		}
		return struct {
			Version string `json:"version"`
		}{a.Version()}, nil
	},
}

// methodWatch streams state changes.
const methodWatch = "Watch"

// watchEvent is one reply of Watch.
type watchEvent struct {
	Name  string `json:"name,omitempty"`
	State string `json:"state,omitempty"`
	Path  string `json:"path,omitempty"`
}
