// Package rootfs builds minimal container roots for tests: the given host
// binaries plus every shared library ldd lists for them, and the dynamic
// loader, copied to the same paths under a directory (like the bringup
// script of Porto's documentation). It is a test helper: only tests import
// it, and it imports only the standard library.
package rootfs
