// Command porto-stage is the isolation stage of a container's first
// process: "porto-stage __isolate [pool]", started by portod's supervisor,
// sets up the namespaces, mounts, credentials and rlimits and execs the
// container's command (isolation.RunStage).
//
// portod can be its own stage ("portod __isolate"), but portod is a large
// binary linked with the C library for the user database. porto-stage is
// the same code, static and without cgo: it starts in about half the time,
// which every start of a container pays, either directly or in the launch
// of the warm stage that replaces the one it used. portod uses it when it
// finds it at porto_stage (porto.conf), and falls back to itself
// otherwise.
package main
