// Package apiserver is what every transport of porto's API shares: the
// D-Bus edge (dbusapi) and the Varlink edge (varlinkapi) both serve the
// same methods through it, so no semantics are implemented twice.
//
// It owns, transport-neutrally:
//   - Backend, what a transport needs of service.Manager;
//   - API, the methods of org.porto.Manager / io.porto.Manager: input caps
//     (Limits), the reply cap of Get and GetProperty, wire timeouts, and the
//     call into service;
//   - Classify, the one place an error becomes an (api.Code, message) pair
//     (transports only spell the pair: org.porto.Error.X, io.porto.Manager.X),
//     and Recovered for panics in handlers;
//   - Identity and NewCaller: turning credentials a transport established
//     (bus or SO_PEERCRED) into a service.Caller, including the primary
//     group choice (ResolveGID) and the /proc readers it needs.
//
// Authorization decisions stay in service (Caller.Authorize is asked by
// service); a transport only supplies the polkit question's subject.
//
// Imports: service, api, stdlib. Imported by dbusapi and varlinkapi, never
// by service.
package apiserver
