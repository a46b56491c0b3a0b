// Package units owns porto's cgroups and its systemd units: the cgroupfs
// drivers for cgroup v1 and v2, and the systemd driver that delegates each
// first-level container a transient scope (Delegate=yes).
//
// The service package reaches it only through the service.Cgroups
// interface; units never imports service or dbusapi.
package units
