package service

import "time"

// Config is porto.conf, parsed. Every key, its default and its meaning are
// documented in the repository's porto.conf.
type Config struct {
	StateDir        string        // state_dir: one file per container
	Place           string        // place: parent of default working directories
	CgroupRoot      string        // cgroup_root: porto's subtree in every hierarchy
	CgroupDriver    string        // cgroup_driver: auto|systemd|cgroupfs
	MaxContainers   int           // max_containers
	MaxPerUser      int           // max_containers_per_user
	StopTimeout     time.Duration // stop_timeout
	KillTimeout     time.Duration // kill_timeout
	RespawnDelay    time.Duration // respawn_delay
	AgingTime       time.Duration // aging_time
	StdoutLimit     uint64        // stdout_limit
	StartTimeout    time.Duration // start_timeout
	VarlinkSocket   string        // varlink_socket
	InitPath        string        // porto_init: path of the porto-init binary
	LogLevel        string        // log_level
}
