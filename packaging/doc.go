// Package packaging holds porto's system integration files, installed by
// "make install":
//
//   - porto.service: the systemd unit (Type=dbus, KillMode=process);
//   - porto.socket: socket activation of the Varlink endpoint;
//   - org.porto.Manager.service: D-Bus system bus activation;
//   - org.porto.Manager.conf: the D-Bus policy (root owns the name, everyone
//     may call the methods, Properties.Set is not exposed);
//   - org.porto.policy: the polkit actions and their defaults;
//   - setup-demo: the README's one-command setup of a fresh machine.
//
// The package has no code; its test checks that these files agree with the
// wire contract in package api (bus name, interfaces, polkit action ids).
// Nothing imports it.
package packaging
