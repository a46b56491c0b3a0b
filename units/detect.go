package units

import (
	"fmt"
	"path/filepath"

	"github.com/porto-dev/porto/api"
)

// Detect tells how cgroups are mounted under mountRoot: CgroupV2 if
// mountRoot itself is a cgroup2 hierarchy (it has cgroup.controllers),
// CgroupV1 if per-controller v1 hierarchies are mounted below it (a
// cgroup2 at mountRoot/unified beside them, the hybrid layout, is v1 for
// porto).
func Detect(mountRoot string) (Version, error) {
	if mountRoot == "" {
		mountRoot = defaultMountRoot
	}
	if exists(filepath.Join(mountRoot, "cgroup.controllers")) {
		return CgroupV2, nil
	}
	for _, c := range v1Controllers {
		if exists(filepath.Join(mountRoot, c, "cgroup.procs")) {
			return CgroupV1, nil
		}
	}
	return 0, api.Errorf(api.NotSupported, "no cgroup hierarchy found under %s", mountRoot)
}

// NewCgroupfs detects the cgroup version under opts.MountRoot and returns
// the matching driver, *V1 or *V2, after creating porto's root cgroup.
func NewCgroupfs(opts Options) (Driver, error) {
	if err := opts.fill(); err != nil {
		return nil, err
	}
	ver, err := Detect(opts.MountRoot)
	if err != nil {
		return nil, err
	}
	switch ver {
	case CgroupV1:
		d, err := NewV1(opts)
		if err != nil {
			return nil, err
		}
		opts.Log.Info("managing cgroups directly", "version", ver.String(), "root", opts.Root, "controllers", d.Controllers())
		return d, nil
	case CgroupV2:
		d, err := NewV2(opts)
		if err != nil {
			return nil, err
		}
		opts.Log.Info("managing cgroups directly", "version", ver.String(), "root", opts.Root, "controllers", d.Controllers())
		return d, nil
	}
	return nil, fmt.Errorf("unknown cgroup version %v", ver)
}
