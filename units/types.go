package units

// Limits are the resource limits porto applies to a container's cgroups.
// A zero value means "not set / unlimited" unless said otherwise.
type Limits struct {
	MemoryLimit       uint64 // bytes
	MemoryGuarantee   uint64 // bytes
	RechargeOnPgfault bool
	CPULimit          float64 // cores (1.0 = one core); 0 = unlimited
	CPUGuarantee      float64 // cores
	CPUPolicy         string  // normal|rt|idle|batch
	IOLimit           uint64  // bytes/s
	IOPolicy          string  // normal|batch
	PidsLimit         uint64  // 0 = unlimited
	// Devices are device-cgroup rules ("c 1:3 rwm"); nil keeps the default.
	Devices []string
}

// Stats are a container's resource counters, summed over its subtree.
type Stats struct {
	CPUUsage     uint64 // ns
	MemoryUsage  uint64 // bytes
	MaxRSS       uint64 // bytes
	MinorFaults  uint64
	MajorFaults  uint64
	IORead       uint64 // bytes
	IOWrite      uint64 // bytes
	ProcessCount uint64
	OOMKills     uint64
}
