package api

// polkit action ids. Their defaults live in packaging/org.porto.policy.
const (
	// ActionManageAny lets a caller act on containers owned by other users.
	ActionManageAny = "org.porto.manage-any"
	// ActionSetPrivileged lets a caller set root-only properties (user,
	// group, capabilities, allowed devices, ...).
	ActionSetPrivileged = "org.porto.set-privileged"
)
