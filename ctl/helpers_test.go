package ctl

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// teeWriter appends to a shared transcript as well as its own buffer, so
// stdout and stderr interleave as on a terminal.
type teeWriter struct {
	own *bytes.Buffer
	all *bytes.Buffer
}

func (w teeWriter) Write(p []byte) (int, error) {
	w.own.Write(p)
	return w.all.Write(p)
}

type result struct {
	stdout, stderr, all string
	status              int
}

// runCLI runs one portoctl command line against f.
func runCLI(f *fake, args []string, mod ...func(*CLI)) result {
	var out, errb, all bytes.Buffer
	c := &CLI{
		Stdin:           strings.NewReader(""),
		Stdout:          teeWriter{&out, &all},
		Stderr:          teeWriter{&errb, &all},
		RefreshInterval: time.Hour,
		Dial: func() (Client, func(), error) {
			if f == nil {
				panic("dialled without a client")
			}
			f.log = append(f.log, "(dial)")
			return f, func() { f.log = append(f.log, "(close)") }, nil
		},
	}
	for _, m := range mod {
		m(c)
	}
	st := c.Run(args)
	return result{out.String(), errb.String(), all.String(), st}
}

// golden compares got with testdata/name, or rewrites it with -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./ctl -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs (go test ./ctl -update rewrites it):\n%s", path, diff(string(want), got))
	}
}

// diff is a minimal line diff for test failures.
func diff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	var b strings.Builder
	for i := 0; i < len(w) || i < len(g); i++ {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl || i >= len(w) || i >= len(g) {
			b.WriteString("line " + strconv.Itoa(i+1) + ":\n  want " + quote(wl, i < len(w)) + "\n  got  " + quote(gl, i < len(g)) + "\n")
		}
	}
	return b.String()
}

func quote(s string, ok bool) string {
	if !ok {
		return "<none>"
	}
	return "\"" + strings.ReplaceAll(s, "\t", "\\t") + "\""
}

// shellWords splits a command line as sh would for the seed's lines:
// blanks separate words, '...' and "..." quote, backslash escapes.
func shellWords(s string) []string {
	var words []string
	var cur strings.Builder
	in := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == ' ' || c == '\t':
			if in {
				words = append(words, cur.String())
				cur.Reset()
				in = false
			}
		case c == '\'':
			in = true
			j := strings.IndexByte(s[i+1:], '\'')
			cur.WriteString(s[i+1 : i+1+j])
			i += j + 1
		case c == '"':
			in = true
			for i++; i < len(s) && s[i] != '"'; i++ {
				if s[i] == '\\' && i+1 < len(s) && strings.IndexByte("\"\\$`", s[i+1]) >= 0 {
					i++
				}
				cur.WriteByte(s[i])
			}
		case c == '\\' && i+1 < len(s):
			in = true
			i++
			cur.WriteByte(s[i])
		default:
			in = true
			cur.WriteByte(c)
		}
	}
	if in {
		words = append(words, cur.String())
	}
	return words
}
