package units

import (
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// blockDevices lists "MAJOR:MINOR" of every whole disk under blockRoot
// (/sys/block) that io_limit applies to: loop, ram and zram devices and
// disks of size 0 are left out.
func blockDevices(blockRoot string) []string {
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
