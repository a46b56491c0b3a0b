package service

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/porto-dev/porto/api"
)

// store keeps one small JSON file per container under dir/containers,
// replaced atomically (temp file, fsync, rename) on every change, so a
// crash at any moment leaves either the old or the new file, never a torn
// one. state_dir belongs on a tmpfs (/run/porto by default), where the
// fsync costs nothing; on a disk it costs 8-10 ms per lifecycle of `true`
// (docs/performance.md), the price of issue 8's durability rule.
type store struct {
	dir string
}

const recordSuffix = ".json"

func newStore(stateDir string) (*store, error) {
	// state_dir also holds the varlink socket, which every user may
	// reach; the container records are root's only.
	if err := os.MkdirAll(stateDir, 0o755); err != nil {
		return nil, fmt.Errorf("state dir: %w", err)
	}
	if st, err := os.Stat(stateDir); err == nil && st.Mode().Perm()&0o005 != 0o005 {
		os.Chmod(stateDir, st.Mode().Perm()|0o755)
	}
	dir := filepath.Join(stateDir, "containers")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("state dir: %w", err)
	}
	return &store{dir: dir}, nil
}

func (s *store) path(name string) string {
	return filepath.Join(s.dir, api.EscapePath(name)+recordSuffix)
}

func marshalRecord(r *record) ([]byte, error) { return json.Marshal(r) }

func (s *store) write(name string, data []byte) error {
	f, err := os.CreateTemp(s.dir, ".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, s.path(name))
	}
	if err != nil {
		os.Remove(tmp)
	}
	return err
}

func (s *store) remove(name string) error {
	err := os.Remove(s.path(name))
	if os.IsNotExist(err) {
		return nil
	}
	return err
}

// load reads every record; broken ones are reported and skipped, and
// leftover temp files are removed.
func (s *store) load() (recs []record, bad []string) {
	ents, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, []string{err.Error()}
	}
	for _, e := range ents {
		n := e.Name()
		if strings.HasPrefix(n, ".tmp-") {
			os.Remove(filepath.Join(s.dir, n))
			continue
		}
		if !strings.HasSuffix(n, recordSuffix) {
			continue
		}
		data, err := os.ReadFile(filepath.Join(s.dir, n))
		var r record
		if err == nil {
			err = json.Unmarshal(data, &r)
		}
		if err == nil {
			if want, _ := api.UnescapePath(strings.TrimSuffix(n, recordSuffix)); want != r.Name || api.ValidateName(r.Name) != nil {
				err = fmt.Errorf("name %q does not match file %s", r.Name, n)
			}
		}
		if err != nil {
			bad = append(bad, fmt.Sprintf("%s: %v", n, err))
			os.Rename(filepath.Join(s.dir, n), filepath.Join(s.dir, n+".broken"))
			continue
		}
		recs = append(recs, r)
	}
	return recs, bad
}
