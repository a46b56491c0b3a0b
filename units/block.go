package units

import (
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// wholeDisks lists the names under blockRoot (/sys/block) of the disks
// porto's I/O limits apply to: loop, ram and zram devices and disks of
// size 0 are left out.
func wholeDisks(blockRoot string) []string {
	ents, err := os.ReadDir(blockRoot)
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range ents {
		n := e.Name()
		if strings.HasPrefix(n, "loop") || strings.HasPrefix(n, "ram") || strings.HasPrefix(n, "zram") {
			continue
		}
		if sz, err := readUint(filepath.Join(blockRoot, n, "size")); err != nil || sz == 0 {
			continue
		}
		out = append(out, n)
	}
	return out
}

// blockDevices lists "MAJOR:MINOR" of every disk of wholeDisks, sorted.
func blockDevices(blockRoot string) []string {
	var out []string
	for _, n := range wholeDisks(blockRoot) {
		b, err := os.ReadFile(filepath.Join(blockRoot, n, "dev"))
		if err != nil {
			continue
		}
		if d := strings.TrimSpace(string(b)); d != "" {
			out = append(out, d)
		}
	}
	sort.Strings(out)
	return out
}

// diskSchedulers maps every whole disk of blockDevices (by name) to its
// active I/O scheduler, the bracketed word of queue/scheduler ("none" if
// it has no such file).
func diskSchedulers(blockRoot string) map[string]string {
	out := map[string]string{}
	for _, n := range wholeDisks(blockRoot) {
		sched := "none"
		if b, err := os.ReadFile(filepath.Join(blockRoot, n, "queue", "scheduler")); err == nil {
			s := string(b)
			if i := strings.IndexByte(s, '['); i >= 0 {
				if j := strings.IndexByte(s[i:], ']'); j > 0 {
					sched = s[i+1 : i+j]
				}
			}
		}
		out[n] = sched
	}
	return out
}

// bfqWeightsWork reports whether a bfq weight (blkio.bfq.weight,
// io.bfq.weight) acts on some disk: bfq must be that disk's active
// scheduler. Otherwise it says which scheduler each disk has.
func bfqWeightsWork(blockRoot string) (bool, string) {
	scheds := diskSchedulers(blockRoot)
	var desc []string
	for n, s := range scheds {
		if s == "bfq" {
			return true, ""
		}
		desc = append(desc, n+": "+s)
	}
	sort.Strings(desc)
	if len(desc) == 0 {
		return false, "no disk in " + blockRoot
	}
	return false, strings.Join(desc, ", ")
}
