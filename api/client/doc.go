// Package client is the Go client of porto's D-Bus API (org.porto.Manager):
// typed methods over one bus connection, with D-Bus errors mapped back to
// *api.Error (one function, toAPIError).
//
// Imports: api and godbus only (never service). portoctl (ctl) and the
// integration tests import it.
package client
