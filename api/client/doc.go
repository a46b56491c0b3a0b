// Package client is the Go client of porto's API, with the same typed
// methods over either transport:
//   - Varlink: porto's socket (io.porto.Manager, DefaultVarlinkSocket),
//     NUL-terminated JSON, a small pool of connections; preferred by New
//     when reachable. Errors map back in varlinkError.
//   - D-Bus: one system-bus connection (org.porto.Manager). Errors map
//     back in toAPIError.
//
// Imports: api, godbus and the standard library (never service, never a
// Varlink library). portoctl (ctl) and the integration tests import it.
package client
