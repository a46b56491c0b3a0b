package service

import (
	"github.com/porto-dev/porto/api"
	"github.com/porto-dev/porto/units"
)

// limitsOf collects c's resource limits from its properties.
func (m *Manager) limitsOf(c *Container) (units.Limits, error) {
	var l units.Limits
	if v, ok := c.prop("allowed_devices"); ok {
		l.Devices = splitList(v)
	}
	return l, nil
}

// applyLimits pushes c's limits into its cgroups.
func (m *Manager) applyLimits(c *Container) error {
	l, err := m.limitsOf(c)
	if err != nil {
		return err
	}
	if err := m.cg.Apply(c.name, l); err != nil {
		return api.AsError(err)
	}
	return nil
}
