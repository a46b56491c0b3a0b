// Package tests is porto's privileged integration tier: black-box tests
// that drive the real binaries (bin/portod, bin/portoctl, bin/porto-init)
// through the command line, busctl and raw D-Bus calls.
//
// Every test skips unless PORTO_ROOT_TESTS=1 is set and the test runs as
// root ("sudo make check" sets both). Each test starts its own private
// dbus-daemon, configured like the system bus and with the project's own
// policy file packaging/org.porto.Manager.conf, and its own portod whose
// state_dir, place and cgroup_root are unique to the test. Teardown checks
// that no process, cgroup, mount or file is left behind.
//
// The seed's transcripts, bad input and concurrent clients are replayed
// over both transports: D-Bus, and the Varlink socket (portoctl
// --transport=varlink).
//
// Binaries are taken from $PORTO_BIN (default ../bin); the harness builds
// nothing itself. Non-root transcripts run as the users porto-alice and
// porto-bob (group porto), which .ci/run creates.
//
// The package has no non-test code and nothing imports it.
package tests
