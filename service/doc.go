// Package service is porto's core: the container tree, the state machine,
// the property registry, ownership checks, persistence and recovery. It is
// transport-agnostic: dbusapi (and any other endpoint) decode a call, build
// a Caller from the transport's credentials and call a Manager method.
//
// It reaches processes and cgroups only through the Spawner and Cgroups
// interfaces it defines. It never imports dbusapi or godbus.
package service
