// Package apitest holds what the tests of both transports (dbusapi,
// varlinkapi) share: a real service.Manager over fake processes and
// cgroups (NewManager), and the permission table (PermTable,
// RunPermissions) that must give the same answers over D-Bus and Varlink.
//
// Imports: service, isolation (data types only), units (data types only),
// api, testing. Only tests import it.
package apitest
