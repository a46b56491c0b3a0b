// Package ctl is portoctl: its subcommands, argument parsing and output
// formatting. cmd/portoctl is a thin main around Run.
//
// ctl talks to portod only through api/client (the Varlink socket when it
// can reach it, else D-Bus; the global --transport forces one) and shares the
// wire contract in api. It may import api, api/client, github.com/spf13/pflag
// and the standard library, nothing else: portoctl must never link service,
// units, isolation, dbusapi or varlinkapi (cmd/portoctl/deps_test.go
// enforces this).
//
// Output is normative: the lines portoctl prints are the ones the seed
// document shows (for example "Container exited with 1" and
// "Can't set property: Permission (Only root can change this property)").
// Every error is printed as "Can't <action>: <EError name> (<message>)" on
// stderr (the seed's format, which wins over house-style's
// "portoctl: <Code>: <msg>"), and the exit status is the api.Code's
// ExitStatus; a bad command line prints the usage on stderr and exits 2.
//
// The formats are pinned by golden files in testdata/ (go test ./ctl -update
// rewrites them), and the whole seed is replayed against a fake daemon
// (seed_test.go) and must print byte for byte what the seed shows.
package ctl
