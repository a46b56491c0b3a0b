package rootfs

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

func TestBuild(t *testing.T) {
	dir := t.TempDir()
	if err := Build(dir, "ls"); err != nil {
		t.Skipf("no ldd or ls here: %v", err)
	}
	ls, err := exec.LookPath("ls")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, ls)); err != nil {
		t.Fatalf("binary not copied: %v", err)
	}
	libs, err := Libraries(ls)
	if err != nil {
		t.Fatal(err)
	}
	if len(libs) == 0 {
		t.Skip("static ls")
	}
	for _, l := range libs {
		if _, err := os.Stat(filepath.Join(dir, l)); err != nil {
			t.Errorf("library %s not copied: %v", l, err)
		}
	}
}
