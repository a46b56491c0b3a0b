// Package dbusapi exports porto's service.Manager on D-Bus as the
// org.porto.Manager object (api.ManagerPath, api.ManagerInterface) and one
// org.porto.Container object per container (api.ContainerPath).
//
// It owns the D-Bus edge and nothing else: decoding calls, establishing the
// caller's identity from the bus (never from arguments), asking polkit
// through an Authorizer, turning errors into D-Bus
// errors (one function, toDBusError) and recovering panics in handlers.
// Every semantic decision is service's.
//
// The methods themselves (input caps, reply caps, the call into service,
// error classes, caller construction) live in apiserver, shared with the
// Varlink edge (varlinkapi); this package spells them for D-Bus. Polkit
// (Polkit.AuthorizeProcess) also answers for the Varlink edge.
//
// Imports: apiserver, service, api, godbus. Only cmd/portod (and tests)
// import it.
package dbusapi
