package ctl

import "github.com/porto-dev/porto/api/client"

// DialSystemBus connects to portod on the system bus (DBUS_SYSTEM_BUS_ADDRESS
// is honoured by api/client). It is CLI.Dial in Run.
func DialSystemBus() (Client, func(), error) {
	c, err := client.New()
	if err != nil {
		return nil, nil, err
	}
	return c, func() { c.Close() }, nil
}
