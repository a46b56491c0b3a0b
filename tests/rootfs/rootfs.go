package rootfs

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Build copies each binary (a path, or a name looked up in PATH) and the
// libraries `ldd` lists for it into dir, each at its host path below dir
// (/bin/ls becomes dir/bin/ls). Statically linked binaries are copied
// alone. Existing files are overwritten.
func Build(dir string, binaries ...string) error {
	for _, b := range binaries {
		p := b
		if !strings.Contains(p, "/") {
			lp, err := exec.LookPath(p)
			if err != nil {
				return err
			}
			p = lp
		}
		libs, err := Libraries(p)
		if err != nil {
			return err
		}
		for _, f := range append(libs, p) {
			if err := copyFile(f, filepath.Join(dir, f)); err != nil {
				return err
			}
		}
	}
	return nil
}

// Libraries lists the shared libraries and the loader that ldd reports
// for binary; it is empty for a static binary.
func Libraries(binary string) ([]string, error) {
	var stdout, stderr bytes.Buffer
	cmd := exec.Command("ldd", binary)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		if strings.Contains(stdout.String()+stderr.String(), "not a dynamic executable") {
			return nil, nil
		}
		return nil, fmt.Errorf("ldd %s: %v: %s", binary, err, strings.TrimSpace(stderr.String()))
	}
	var libs []string
	sc := bufio.NewScanner(&stdout)
	for sc.Scan() {
		// "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" or
		// "/lib64/ld-linux-x86-64.so.2 (0x...)"; the vdso has no file.
		f := strings.Fields(sc.Text())
		for _, i := range []int{2, 0} {
			if i < len(f) && strings.HasPrefix(f[i], "/") {
				if _, err := os.Stat(f[i]); err == nil {
					libs = append(libs, f[i])
				}
			}
		}
	}
	return libs, sc.Err()
}

// copyFile copies src (following symlinks) to dst with src's permissions.
func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	st, err := in.Stat()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, st.Mode().Perm())
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Close(); err != nil {
		return err
	}
	return os.Chmod(dst, st.Mode().Perm())
}
