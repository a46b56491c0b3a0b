// Package varlinkapi serves porto's API on a Varlink socket: the interface
// io.porto.Manager (the same methods, arguments and error classes as
// org.porto.Manager on D-Bus) plus org.varlink.service, as NUL-terminated
// JSON messages on a unix stream socket.
//
// It owns the Varlink edge only: framing and decoding (with a size limit,
// a per-connection cap on queued calls and a server-wide cap on
// connections and buffered bytes), the caller's identity from the kernel
// (SO_PEERCRED, SO_PEERGROUPS, SO_PEERPIDFD) rather than from anything the
// peer says, the polkit subject (a unix-process: pid, start time, uid), and
// spelling results and errors (io.porto.Manager.<EErrorName>). The methods
// themselves are apiserver's, shared with dbusapi: no semantics live here.
//
// Listen opens the socket: the one passed by systemd socket activation
// (LISTEN_FDNAMES "varlink"), one handed down by the supervisor master
// (PassActivated), or a socket it binds itself (mode 0666: everyone may
// call, as the D-Bus policy allows; each call is authorized by service).
//
// Imports: apiserver, service, api, go-systemd/activation, x/sys, stdlib.
// No Varlink library. Only cmd/portod (and tests) import it.
package varlinkapi
