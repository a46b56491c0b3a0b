// Package client is the Go client of porto's API, with the same typed
// methods over either transport:
//   - Varlink: porto's socket (io.porto.Manager, DefaultVarlinkSocket),
//     NUL-terminated JSON, a small pool of connections; preferred by New
//     when reachable. Errors map back in varlinkError. Calls are encoded
//     and replies decoded by hand (json.go: one pass, no reflection), and
//     WithDirectIO reads and writes the socket with blocking system calls
//     instead of the network poller (portoctl: cheaper for a short-lived
//     process).
//   - D-Bus: one system-bus connection (org.porto.Manager). Errors map
//     back in toAPIError.
//
// Imports: api, godbus and the standard library (never service, never a
// Varlink library). portoctl (ctl) and the integration tests import it.
package client
