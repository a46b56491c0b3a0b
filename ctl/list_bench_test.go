package ctl

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/porto-dev/porto/api/client"
)

// listServer is a Varlink socket that answers List and Get as portod does
// with n containers: even ones running (with a time), odd ones stopped
// (time fails with InvalidState).
func listServer(tb testing.TB, n int) string {
	dir, err := os.MkdirTemp("", "vll")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "sock")
	l, err := net.Listen("unix", path)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { l.Close() })
	type cell struct {
		Container string `json:"container"`
		Key       string `json:"key"`
		Value     string `json:"value"`
		Error     string `json:"error"`
		Message   string `json:"message"`
	}
	names := []string{"/"}
	var cells []cell
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("ct-%04d", i)
		if i%10 == 3 {
			name = fmt.Sprintf("ct-%04d/child \"q\" \u00e9", i)
		}
		names = append(names, name)
		if i%2 == 0 {
			cells = append(cells, cell{name, "state", "running", "", ""},
				cell{name, "time", fmt.Sprint(i * 7), "", ""})
		} else {
			cells = append(cells, cell{name, "state", "stopped", "", ""},
				cell{name, "time", "", "io.porto.Manager.InvalidState", "time is not available in state stopped"})
		}
	}
	listReply, _ := json.Marshal(map[string]any{"parameters": map[string]any{"names": names}})
	getReply, _ := json.Marshal(map[string]any{"parameters": map[string]any{"values": cells}})
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				for {
					req, err := r.ReadBytes(0)
					if err != nil {
						return
					}
					reply := getReply
					if bytes.Contains(req, []byte(`Manager.List"`)) {
						reply = listReply
					}
					c.Write(append(reply, 0))
				}
			}()
		}
	}()
	return path
}

func runList(tb testing.TB, path string, out io.Writer) {
	c := &CLI{
		Stdin:  strings.NewReader(""),
		Stdout: out,
		Stderr: os.Stderr,
		Dial: func() (Client, func(), error) {
			cl, err := client.NewVarlink(path)
			if err != nil {
				return nil, nil, err
			}
			return cl, func() { cl.Close() }, nil
		},
	}
	if st := c.Run([]string{"list"}); st != 0 {
		tb.Fatalf("list: %d", st)
	}
}

// BenchmarkList1000 is "portoctl list" with 1000 containers over Varlink,
// the client's share only (the server's replies are canned).
func BenchmarkList1000(b *testing.B) {
	path := listServer(b, 1000)
	b.ReportAllocs()
	for b.Loop() {
		runList(b, path, io.Discard)
	}
}

// list prints what the fmt-based listing printed: names padded by runes,
// states right-aligned, time for running ones only.
func TestListFormat(t *testing.T) {
	path := listServer(t, 40)
	var out bytes.Buffer
	runList(t, path, &out)
	var want strings.Builder
	var names []string
	for i := 0; i < 40; i++ {
		name := fmt.Sprintf("ct-%04d", i)
		if i%10 == 3 {
			name = fmt.Sprintf("ct-%04d/child \"q\" \u00e9", i)
		}
		names = append(names, name)
	}
	w := fieldWidth(names, 0)
	for i, n := range names {
		line := fmt.Sprintf("%-*s", w, n)
		if i%2 == 0 {
			line += fmt.Sprintf("%*s", 9, "running")
			line += fmt.Sprintf("%*s", 12, HumanValue("time", fmt.Sprint(i*7)))
		} else {
			line += fmt.Sprintf("%*s", 9, "stopped")
		}
		fmt.Fprintln(&want, line)
	}
	if out.String() != want.String() {
		t.Errorf("list:\n%s\nwant:\n%s", out.String(), want.String())
	}
}
