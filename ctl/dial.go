package ctl

import "github.com/porto-dev/porto/api/client"

// DialSystemBus connects to portod on the system bus (api/client honours
// DBUS_SYSTEM_BUS_ADDRESS). With interactive set, every call carries D-Bus's
// ALLOW_INTERACTIVE_AUTHORIZATION flag, so polkit may ask the user through
// an agent instead of refusing; Run sets it when stdin is a terminal, as
// systemctl does.
func DialSystemBus(interactive bool) (Client, func(), error) {
	c, err := client.New(client.WithInteractive(interactive))
	if err != nil {
		return nil, nil, err
	}
	return c, func() { c.Close() }, nil
}
