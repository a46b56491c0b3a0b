package varlinkapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"strings"
	"testing"
	"testing/iotest"
)

// chunked reads at most n bytes at a time.
type chunked struct {
	r io.Reader
	n int
}

func (c *chunked) Read(p []byte) (int, error) {
	if len(p) > c.n {
		p = p[:c.n]
	}
	return c.r.Read(p)
}

func decodeAll(r io.Reader, max int) ([]string, error) {
	d := NewDecoder(r, max)
	var out []string
	for {
		m, err := d.Next()
		if err != nil {
			return out, err
		}
		out = append(out, string(m))
	}
}

func TestDecoder(t *testing.T) {
	big := strings.Repeat("x", 100<<10)
	cases := []struct {
		in   string
		max  int
		want []string
		err  error
	}{
		{"", 100, nil, io.EOF},
		{"a\x00", 100, []string{"a"}, io.EOF},
		{"a\x00\x00b\x00", 100, []string{"a", "", "b"}, io.EOF},
		{"a\x00b", 100, []string{"a"}, io.ErrUnexpectedEOF},
		{"0123456789\x00", 10, []string{"0123456789"}, io.EOF},
		{"0123456789a\x00", 10, nil, ErrMessageTooLarge},
		{"ab\x000123456789a\x00", 10, []string{"ab"}, ErrMessageTooLarge},
		{big + "\x00" + big + "\x00", 200 << 10, []string{big, big}, io.EOF},
		{big + "\x00", 50 << 10, nil, ErrMessageTooLarge},
	}
	for i, tc := range cases {
		for _, n := range []int{1, 3, 7, 1 << 20} {
			got, err := decodeAll(&chunked{strings.NewReader(tc.in), n}, tc.max)
			if !errors.Is(err, tc.err) || strings.Join(got, "|") != strings.Join(tc.want, "|") {
				t.Errorf("case %d chunk %d: got %d messages, %v; want %d, %v", i, n, len(got), err, len(tc.want), tc.err)
			}
		}
	}
	// A read error with data delivers the complete messages first.
	got, err := decodeAll(iotest.DataErrReader(strings.NewReader("a\x00b\x00")), 10)
	if err != io.EOF || len(got) != 2 {
		t.Errorf("DataErrReader: %q %v", got, err)
	}
	boom := errors.New("boom")
	if _, err := decodeAll(iotest.ErrReader(boom), 10); err != boom {
		t.Errorf("ErrReader: %v", err)
	}
}

func TestDecoderPartial(t *testing.T) {
	var events []bool
	d := NewDecoder(&chunked{strings.NewReader("abc\x00de\x00"), 2}, 100)
	d.partial = func(on bool) { events = append(events, on) }
	for {
		if _, err := d.Next(); err != nil {
			break
		}
	}
	// on while "abc" trickles in, off when it is complete; again for "de".
	if len(events) < 2 || !events[0] || events[1] {
		t.Errorf("partial events %v", events)
	}
}

func TestParseCall(t *testing.T) {
	good := []string{
		`{"method":"io.porto.Manager.List"}`,
		`{"method":"a.b.C","parameters":{"x":1},"more":true}`,
		`{"method":"a.b.C","parameters":null}`,
		`{"method":"a.b.C","unknown":1}`,
	}
	for _, g := range good {
		if _, err := parseCall([]byte(g)); err != nil {
			t.Errorf("%s: %v", g, err)
		}
	}
	bad := []string{
		``, `{`, `[]`, `"x"`, `{"method":""}`, `{"parameters":{}}`, `{"method":1}`,
		`{"method":"a.b.C","parameters":[1]}`, `{"method":"a.b.C","parameters":"x"}`,
		`{"method":"a.b.C"} trailing`, `{"method":"a.b.C","more":"yes"}`,
	}
	for _, b := range bad {
		if _, err := parseCall([]byte(b)); err == nil {
			t.Errorf("%s: parsed", b)
		}
	}
}

func TestDecodeParams(t *testing.T) {
	var in struct {
		Name *string `json:"name"`
		N    *int64  `json:"n"`
	}
	if bad, err := decodeParams(json.RawMessage(`{"name":"x","n":3}`), &in); err != nil || *in.Name != "x" || *in.N != 3 {
		t.Fatalf("%q %v", bad, err)
	}
	for raw, want := range map[string]string{
		`{"name":1}`:           "name",
		`{"n":"x"}`:            "n",
		`{"n":1.5}`:            "n",
		`{"other":1}`:          "other",
		`{"name":"x","z":[1]}`: "z",
	} {
		bad, err := decodeParams(json.RawMessage(raw), &in)
		if err == nil || bad != want {
			t.Errorf("%s: bad %q, %v; want %q", raw, bad, err, want)
		}
	}
}

func TestEncodeReply(t *testing.T) {
	var buf bytes.Buffer
	if err := encodeReply(&buf, &reply{Parameters: map[string]string{"v": "<&>"}}); err != nil {
		t.Fatal(err)
	}
	if got := buf.String(); got != `{"parameters":{"v":"<&>"}}`+"\x00" {
		t.Errorf("%q", got)
	}
}

// FuzzDecode feeds arbitrary streams through the decoder and the call
// parser: no panic, messages never contain NUL, and what is returned is
// the input's prefix split at NULs.
func FuzzDecode(f *testing.F) {
	for _, s := range []string{
		`{"method":"io.porto.Manager.List"}` + "\x00",
		`{"method":"org.varlink.service.GetInfo","parameters":{}}` + "\x00" + `{"method":"x"`,
		"\x00\x00\x00",
		`{"method":"io.porto.Manager.Get","parameters":{"names":["a"],"keys":["state"]},"more":true}` + "\x00",
	} {
		f.Add([]byte(s), uint8(3))
	}
	f.Fuzz(func(t *testing.T, data []byte, chunk uint8) {
		n := int(chunk)%64 + 1
		d := NewDecoder(&chunked{bytes.NewReader(data), n}, 256)
		var joined []byte
		for {
			m, err := d.Next()
			if err != nil {
				if errors.Is(err, ErrMessageTooLarge) || errors.Is(err, io.ErrUnexpectedEOF) {
					return
				}
				if err != io.EOF {
					t.Fatalf("unexpected error %v", err)
				}
				break
			}
			if bytes.IndexByte(m, 0) >= 0 {
				t.Fatal("message contains NUL")
			}
			if len(m) > 256 {
				t.Fatalf("message of %d bytes over the limit", len(m))
			}
			joined = append(append(joined, m...), 0)
			if c, err := parseCall(m); err == nil {
				var p struct {
					Name *string `json:"name"`
				}
				decodeParams(c.Parameters, &p)
			}
		}
		if !bytes.Equal(joined, data) {
			t.Fatalf("messages do not add up to the input")
		}
	})
}

// docs/varlink-api.md mentions every method and error of the interface.
func TestDocsCoverInterface(t *testing.T) {
	doc, err := os.ReadFile("../docs/varlink-api.md")
	if err != nil {
		t.Skip("docs not found:", err)
	}
	for _, line := range strings.Split(Description, "\n") {
		f := strings.Fields(line)
		if len(f) < 2 || (f[0] != "method" && f[0] != "error") {
			continue
		}
		name := f[1]
		if i := strings.IndexByte(name, '('); i >= 0 {
			name = name[:i]
		}
		if !strings.Contains(string(doc), "`"+name+"`") {
			t.Errorf("docs/varlink-api.md does not mention %s %s", f[0], name)
		}
	}
}
