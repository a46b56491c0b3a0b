package tests

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Issue 5: statistics (root tier). Every datum is read on a real container
// that did the work the datum counts, then the seed's "portoctl top".

// statsScript does disk I/O with O_DIRECT (ext4 here supports it, so the
// bytes reach the block layer and blkio counts them), then execs
// statsPy.
const statsScript = `set -e
dd if=/dev/zero of=io.dat bs=1M count=8 oflag=direct status=none
dd if=io.dat of=/dev/null bs=1M iflag=direct status=none
exec /usr/bin/python3 "$1"
`

// statsPy allocates 64 MiB (memory_usage, max_rss, minor faults), then
// makes major faults: a file is written, dropped from the page cache and
// read back through a mapping, so its pages come from the disk.
const statsPy = `import mmap, os, time
b = b"x" * (64 << 20)
fd = os.open("mf.dat", os.O_RDWR | os.O_CREAT, 0o600)
os.write(fd, b"y" * (4 << 20))
os.fsync(fd)
os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
m = mmap.mmap(fd, 4 << 20, prot=mmap.PROT_READ)
s = 0
for off in range(0, 4 << 20, 4096):
    s += m[off]
print("ready", flush=True)
time.sleep(1000)
`

func TestStats(t *testing.T) {
	// In a network namespace with the device em1, as in the seed, so that
	// net_packets reads "em1: 0" as the seed's top shows.
	e := NewEnvNet(t, nil)
	root := rootUser

	t.Run("data", func(t *testing.T) {
		requirePython(t)
		e.CleanupContainers(t)
		sh := filepath.Join(e.Dir, "stats.sh")
		py := filepath.Join(e.Dir, "stats.py")
		if err := os.WriteFile(sh, []byte(statsScript), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(py, []byte(statsPy), 0o644); err != nil {
			t.Fatal(err)
		}
		// Stopped: the data are not available yet.
		e.OK(t, root, "create", "s")
		for _, k := range []string{"cpu_usage", "memory_usage", "max_rss", "minor_faults", "major_faults",
			"io_read", "io_write", "process_count", "time"} {
			e.FailWith(t, root, "InvalidState", "dget", "s", k)
		}
		e.OK(t, root, "set", "s", "command", "bash "+sh+" "+py)
		e.OK(t, root, "start", "s")
		if !waitUntil(20*time.Second, func() bool { return e.Out(t, root, "get", "s", "stdout") == "ready" }) {
			t.Fatalf("the workload never got ready: stdout %q stderr %q state %s", e.Out(t, root, "get", "s", "stdout"),
				e.Out(t, root, "get", "s", "stderr"), e.Out(t, root, "get", "s", "state"))
		}
		get := func(k string) uint64 { return e.dgetUint(t, "s", k) }
		vals := map[string]uint64{}
		for _, k := range []string{"cpu_usage", "memory_usage", "max_rss", "minor_faults", "major_faults",
			"io_read", "io_write", "process_count"} {
			vals[k] = get(k)
		}
		t.Logf("data: %v", vals)
		if v := vals["memory_usage"]; v < 64<<20 || v > 512<<20 {
			t.Errorf("memory_usage = %d after allocating 64M", v)
		}
		if v := vals["max_rss"]; v < vals["memory_usage"] && v < 64<<20 {
			t.Errorf("max_rss = %d, below memory_usage %d", v, vals["memory_usage"])
		}
		if v := vals["minor_faults"]; v < (64<<20)/4096 {
			t.Errorf("minor_faults = %d, fewer than the 16384 pages just allocated", v)
		}
		if v := vals["major_faults"]; v == 0 {
			t.Errorf("major_faults = 0 after reading a file dropped from the page cache through a mapping")
		}
		if v := vals["io_write"]; v < 8<<20 {
			t.Errorf("io_write = %d after writing 8M with O_DIRECT", v)
		}
		if v := vals["io_read"]; v < 8<<20 {
			t.Errorf("io_read = %d after reading 8M with O_DIRECT", v)
		}
		if v := vals["process_count"]; v != 1 {
			t.Errorf("process_count = %d, want 1 (bash exec'd python)", v)
		}
		if v := vals["cpu_usage"]; v < 10_000_000 {
			t.Errorf("cpu_usage = %d ns after building 64M in python", v)
		}
		// get humanizes sizes and nanoseconds; dget stays raw.
		if h := e.Out(t, root, "get", "s", "memory_usage"); !regexp.MustCompile(`^[0-9.]+M$`).MatchString(h) {
			t.Errorf("get memory_usage = %q, want N.NM", h)
		}
		if h := e.Out(t, root, "get", "s", "cpu_usage"); !regexp.MustCompile(`^[0-9.]+(ms|s)$`).MatchString(h) {
			t.Errorf("get cpu_usage = %q", h)
		}
		// Per device, from the container's traffic class (traffic itself:
		// tests/network_test.go).
		for _, k := range []string{"net_bytes", "net_packets", "net_drops", "net_overlimits"} {
			if v := e.Out(t, root, "dget", "s", k); !regexp.MustCompile(`^em1: [0-9]+$`).MatchString(v) {
				t.Errorf("dget %s = %q, want em1: N", k, v)
			}
		}
		// time counts seconds since start; it stops at death.
		if !waitUntil(3*time.Second, func() bool { return get("time") >= 1 }) {
			t.Errorf("time = %d after more than a second", get("time"))
		}
		e.OK(t, root, "kill", "s", "9")
		e.WaitState(t, root, "s", "dead")
		t0 := get("time")
		// Dead: still readable, and frozen.
		for _, k := range []string{"cpu_usage", "minor_faults", "io_write"} {
			if v := get(k); v < vals[k] {
				t.Errorf("dead: %s = %d, was %d", k, v, vals[k])
			}
		}
		time.Sleep(1100 * time.Millisecond)
		if t1 := get("time"); t1 != t0 {
			t.Errorf("time of a dead container moved: %d then %d", t0, t1)
		}
		e.Expect(t, root, "false", "get", "s", "oom_killed")
	})

	// cpu_usage grows while a process works; process_count counts the
	// processes of the subtree.
	t.Run("cpu-processes", func(t *testing.T) {
		e.CleanupContainers(t)
		e.OK(t, root, "create", "w")
		e.OK(t, root, "set", "w", "cpu_limit", "0.2c") // be kind to the machine
		e.OK(t, root, "start", "w")
		e.OK(t, root, "run", "w/c", "command=bash -c 'sleep 1000 & sleep 1000 & while :; do :; done'")
		if !waitUntil(5*time.Second, func() bool { return e.dgetUint(t, "w/c", "process_count") == 3 }) {
			t.Errorf("process_count = %d, want 3", e.dgetUint(t, "w/c", "process_count"))
		}
		// The meta parent's data cover its child, plus the dummy porto-init
		// an isolated meta container runs to hold its namespaces.
		if v := e.dgetUint(t, "w", "process_count"); v != 4 {
			t.Errorf("meta parent's process_count = %d, want 4 (its porto-init and the child's 3)", v)
		}
		u0 := e.dgetUint(t, "w/c", "cpu_usage")
		time.Sleep(500 * time.Millisecond)
		u1 := e.dgetUint(t, "w/c", "cpu_usage")
		if u1 <= u0 {
			t.Errorf("cpu_usage did not grow: %d then %d", u0, u1)
		}
		if p := e.dgetUint(t, "w", "cpu_usage"); p < u1 {
			t.Errorf("meta parent's cpu_usage %d < its child's %d", p, u1)
		}
	})

	// The seed's Statistics transcript:
	//   $ portoctl top
	//   container    cpu_usage memory_usage major_faults minor_faults net_packets
	//   meta/child1  1.41732ms         220K            0           82      em1: 0
	//   meta/child2  1.05066ms         208K            0           83      em1: 0
	// net_packets is the count of the container's traffic class on em1
	// (tests/network_test.go sends traffic; these two send none).
	t.Run("seed-top", func(t *testing.T) {
		e.CleanupContainers(t)
		e.OK(t, root, "create", "meta")
		e.OK(t, root, "run", "meta/child1", "command=sleep 1000")
		e.OK(t, root, "run", "meta/child2", "command=sleep 1000")
		out := e.Out(t, root, "top")
		t.Logf("portoctl top:\n%s", out)
		lines := strings.Split(out, "\n")
		const header = "container    cpu_usage memory_usage major_faults minor_faults net_packets"
		if len(lines) != 3 || lines[0] != header {
			t.Fatalf("portoctl top:\n%s\nwant the header %q and two rows", out, header)
		}
		row := regexp.MustCompile(`^(meta/child[12]) +([0-9.]+(?:ns|us|ms|s)) +([0-9.]+[KMG]?) +([0-9]+) +([0-9]+) +(em1: 0)$`)
		seen := map[string]bool{}
		for i, l := range lines[1:] {
			m := row.FindStringSubmatch(l)
			if m == nil {
				t.Errorf("row %q does not look like the seed's", l)
				continue
			}
			// Sorted by cpu_usage (highest first): either child may lead.
			if seen[m[1]] {
				t.Errorf("row %d repeats %s", i+1, m[1])
			}
			seen[m[1]] = true
			if len(l) != len(header) {
				t.Errorf("row %q is not aligned with the header", l)
			}
			// Each cell right-aligned under its header.
			cells := append(m[2:6:6], "0")
			for j, h := range strings.Fields(header)[1:] {
				end := strings.Index(header, h) + len(h)
				if f := strings.Fields(l[:end]); f[len(f)-1] != cells[j] {
					t.Errorf("%s: column %s ends at %d, cell %q is not right-aligned there", m[1], h, end, cells[j])
				}
			}
			if n, _ := strconv.Atoi(m[5]); n == 0 {
				t.Errorf("%s: minor_faults 0", m[1])
			}
		}
		e.OK(t, root, "destroy", "meta")
	})
}
