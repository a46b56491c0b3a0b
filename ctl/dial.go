package ctl

import "github.com/porto-dev/porto/api/client"

// Dial connects to portod over transport ("varlink", "dbus", or "auto"
// and "": the Varlink socket when it can be reached, else the system bus;
// see client.New). With interactive set, calls let polkit ask the user
// through an agent instead of refusing (D-Bus's
// ALLOW_INTERACTIVE_AUTHORIZATION flag, Varlink's "interactive"); Run sets
// it when stdin is a terminal, as systemctl does. portoctl makes its calls
// one after the other, so the Varlink socket is used with direct I/O
// (client.WithDirectIO): no network poller to set up in every run.
func Dial(interactive bool, transport string) (Client, func(), error) {
	c, err := client.New(client.WithInteractive(interactive), client.WithTransport(transport), client.WithDirectIO(true))
	if err != nil {
		return nil, nil, err
	}
	return c, func() { c.Close() }, nil
}

// DialSystemBus is Dial with the automatic choice of transport.
func DialSystemBus(interactive bool) (Client, func(), error) {
	return Dial(interactive, client.TransportAuto)
}
