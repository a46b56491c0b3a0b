// Package isolation owns how a container's first process comes to life:
// namespaces, mounts, pivot_root, hostname, rlimits, credentials and the
// exec of the command. Launch starts the hidden "__isolate" stage of the
// daemon binary with the right clone flags; RunStage is that stage; Config
// is the pure-data description of what it must set up, sent to it over the
// sync socket.
//
// It imports only the standard library and golang.org/x/sys. The service
// package imports it (Config and the parent side of the sync protocol);
// isolation never imports service, dbusapi or units.
package isolation
