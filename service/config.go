package service

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/porto-dev/porto/api"
)

// Config is porto.conf, parsed. Every key, its default and its meaning are
// documented in the repository's porto.conf.
type Config struct {
	StateDir      string        // state_dir: one file per container
	Place         string        // place: parent of default working directories
	CgroupRoot    string        // cgroup_root: porto's subtree in every hierarchy
	CgroupDriver  string        // cgroup_driver: auto|systemd|cgroupfs
	MaxContainers int           // max_containers
	MaxPerUser    int           // max_containers_per_user
	StopTimeout   time.Duration // stop_timeout
	KillTimeout   time.Duration // kill_timeout
	RespawnDelay  time.Duration // respawn_delay
	AgingTime     time.Duration // aging_time
	StdoutLimit   uint64        // stdout_limit
	StartTimeout  time.Duration // start_timeout
	VarlinkSocket string        // varlink_socket
	InitPath      string        // porto_init: path of the porto-init binary
	StagePath     string        // porto_stage: path of the porto-stage binary
	LogLevel      string        // log_level: debug|info|warn|error
	StagePool     int           // stage_pool: warm isolation stages per kind
	Network       bool          // network: per-container traffic classes (net_cls + HTB)
	NetDevices    []string      // network_devices: names or patterns; empty: every up device but lo
}

// DefaultConfig is the configuration when porto.conf sets nothing.
func DefaultConfig() Config {
	return Config{
		StateDir:      "/run/porto",
		Place:         "/place/porto",
		CgroupRoot:    "porto",
		CgroupDriver:  "auto",
		MaxContainers: 3000,
		MaxPerUser:    1000,
		StopTimeout:   30 * time.Second,
		KillTimeout:   5 * time.Second,
		RespawnDelay:  time.Second,
		AgingTime:     24 * time.Hour,
		StdoutLimit:   8 << 20,
		StartTimeout:  300 * time.Second,
		VarlinkSocket: "/run/porto/io.porto.Manager",
		InitPath:      "/usr/lib/porto/porto-init",
		StagePath:     "/usr/lib/porto/porto-stage",
		LogLevel:      "info",
		StagePool:     1,
		Network:       true,
	}
}

type confKey struct {
	set func(c *Config, v string) error
}

func absPath(dst *string) func(*Config, string) error {
	return func(_ *Config, v string) error {
		if !filepath.IsAbs(v) || filepath.Clean(v) == "/" {
			return fmt.Errorf("%q is not an absolute path other than /", v)
		}
		*dst = filepath.Clean(v)
		return nil
	}
}

func confKeys(c *Config) map[string]func(string) error {
	dur := func(dst *time.Duration) func(string) error {
		return func(v string) error {
			d, err := time.ParseDuration(v)
			if err != nil {
				n, err2 := strconv.ParseUint(v, 10, 32)
				if err2 != nil {
					return fmt.Errorf("%q is not a duration (e.g. 30s, 5m)", v)
				}
				d = time.Duration(n) * time.Second
			}
			if d < 0 {
				return fmt.Errorf("%q is negative", v)
			}
			*dst = d
			return nil
		}
	}
	count := func(dst *int, max int) func(string) error {
		return func(v string) error {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > max {
				return fmt.Errorf("%q is not a number from 1 to %d", v, max)
			}
			*dst = n
			return nil
		}
	}
	path := func(dst *string) func(string) error {
		return func(v string) error { return absPath(dst)(c, v) }
	}
	return map[string]func(string) error{
		"state_dir": path(&c.StateDir),
		"place":     path(&c.Place),
		"cgroup_root": func(v string) error {
			if v == "" || strings.ContainsAny(v, "/ \t") || v == "." || v == ".." {
				return fmt.Errorf("%q is not a single cgroup directory name", v)
			}
			c.CgroupRoot = v
			return nil
		},
		"cgroup_driver": func(v string) error {
			switch v {
			case "auto", "systemd", "cgroupfs":
				c.CgroupDriver = v
				return nil
			}
			return fmt.Errorf("%q is not one of auto, systemd, cgroupfs", v)
		},
		"max_containers":          count(&c.MaxContainers, 100000),
		"max_containers_per_user": count(&c.MaxPerUser, 100000),
		"stop_timeout":            dur(&c.StopTimeout),
		"kill_timeout":            dur(&c.KillTimeout),
		"respawn_delay":           dur(&c.RespawnDelay),
		"aging_time":              dur(&c.AgingTime),
		"start_timeout":           dur(&c.StartTimeout),
		"stdout_limit": func(v string) error {
			n, err := ParseSize(v)
			if err != nil || n == 0 || n > 1<<30 {
				return fmt.Errorf("%q is not a size from 1 to 1G", v)
			}
			c.StdoutLimit = n
			return nil
		},
		"stage_pool": func(v string) error {
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 || n > 8 {
				return fmt.Errorf("%q is not a number from 0 to 8", v)
			}
			c.StagePool = n
			return nil
		},
		"network": func(v string) error {
			b, err := ParseBool(v)
			if err != nil {
				return fmt.Errorf("%q is not true or false", v)
			}
			c.Network = b
			return nil
		},
		"network_devices": func(v string) error {
			c.NetDevices = nil
			for _, d := range strings.Fields(v) {
				if _, err := filepath.Match(d, ""); err != nil || !validDevName(d) {
					return fmt.Errorf("%q is not a device name or pattern", d)
				}
				c.NetDevices = append(c.NetDevices, d)
			}
			return nil
		},
		"varlink_socket": path(&c.VarlinkSocket),
		"porto_init":     path(&c.InitPath),
		"porto_stage":    path(&c.StagePath),
		"log_level": func(v string) error {
			switch v {
			case "debug", "info", "warn", "error":
				c.LogLevel = v
				return nil
			}
			return fmt.Errorf("%q is not one of debug, info, warn, error", v)
		},
	}
}

// ConfigKeys lists every key porto.conf accepts.
func ConfigKeys() []string {
	var c Config
	var out []string
	for k := range confKeys(&c) {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// ParseConfig reads porto.conf: "key = value" lines, '#' comments. An unknown
// key or a bad value is an InvalidValue error naming the line and key.
func ParseConfig(r io.Reader, name string) (Config, error) {
	c := DefaultConfig()
	keys := confKeys(&c)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 64<<10)
	seen := map[string]int{}
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			return c, api.Errorf(api.InvalidValue, "%s:%d: expected 'key = value', got %q", name, n, line)
		}
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		if i := strings.Index(v, " #"); i >= 0 {
			v = strings.TrimSpace(v[:i])
		}
		set, ok := keys[k]
		if !ok {
			return c, api.Errorf(api.InvalidValue, "%s:%d: unknown key %q (known: %s)", name, n, k, strings.Join(ConfigKeys(), ", "))
		}
		if prev, dup := seen[k]; dup {
			return c, api.Errorf(api.InvalidValue, "%s:%d: key %q already set on line %d", name, n, k, prev)
		}
		seen[k] = n
		if err := set(v); err != nil {
			return c, api.Errorf(api.InvalidValue, "%s:%d: %s: %v", name, n, k, err)
		}
	}
	if err := sc.Err(); err != nil {
		return c, api.Errorf(api.InvalidValue, "%s: %v", name, err)
	}
	return c, nil
}

// LoadConfig reads the file at path; a missing file gives the defaults only
// when missingOK is set.
func LoadConfig(path string, missingOK bool) (Config, error) {
	f, err := os.Open(path)
	if err != nil {
		if os.IsNotExist(err) && missingOK {
			return DefaultConfig(), nil
		}
		return Config{}, api.Errorf(api.InvalidValue, "config: %v", err)
	}
	defer f.Close()
	return ParseConfig(f, path)
}
