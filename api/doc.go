// Package api is the wire contract of porto: the D-Bus names and paths, the
// method and property names, the error taxonomy (api.Code, mirroring Porto's
// EError), container states, container-name rules and polkit action ids.
//
// It is a leaf: it imports only the standard library, so the daemon, the
// client library and portoctl can all share it without dragging in godbus.
package api
