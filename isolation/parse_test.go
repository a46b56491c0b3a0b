package isolation

import (
	"reflect"
	"strings"
	"testing"
)

func TestParseBinds(t *testing.T) {
	tests := []struct {
		in   string
		want []Bind
		err  string
	}{
		{"", nil, ""},
		{" ; ;", nil, ""},
		{"/tmp/porto2 /binded", []Bind{{Source: "/tmp/porto2", Target: "/binded"}}, ""},
		{"/a /b ro; /c /d rw;", []Bind{{"/a", "/b", true}, {"/c", "/d", false}}, ""},
		{"  /a\t/b  ro  ", []Bind{{"/a", "/b", true}}, ""},
		{`/with\ space /semi\;colon`, []Bind{{"/with space", "/semi;colon", false}}, ""},
		{`/back\\slash /x`, []Bind{{`/back\slash`, "/x", false}}, ""},
		{"/a /../../etc", []Bind{{"/a", "/../../etc", false}}, ""},
		{"/a", nil, "expected"},
		{"/a /b ro extra", nil, "expected"},
		{"/a /b rx", nil, "not ro or rw"},
		{"a /b", nil, "not an absolute path"},
		{"/a b", nil, "not an absolute path"},
		{`/a /b\`, nil, "trailing backslash"},
		{"/a\x00 /b", nil, "NUL"},
	}
	for _, tt := range tests {
		got, err := ParseBinds(tt.in)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("ParseBinds(%q) error = %v, want it to contain %q", tt.in, err, tt.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseBinds(%q): %v", tt.in, err)
			continue
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("ParseBinds(%q) = %#v, want %#v", tt.in, got, tt.want)
		}
	}
}

func TestFormatBindsRoundTrip(t *testing.T) {
	in := []Bind{{"/a b", "/c;d", true}, {`/e\f`, "/g\th", false}}
	s := FormatBinds(in)
	out, err := ParseBinds(s)
	if err != nil {
		t.Fatalf("ParseBinds(%q): %v", s, err)
	}
	if !reflect.DeepEqual(in, out) {
		t.Fatalf("round trip of %q: %#v", s, out)
	}
	if got := FormatBinds([]Bind{{"/tmp/porto2", "/binded", false}}); got != "/tmp/porto2 /binded rw" {
		t.Errorf("FormatBinds = %q", got)
	}
}

func FuzzParseBinds(f *testing.F) {
	for _, s := range []string{"/a /b", "/a /b ro; /c /d rw", `/x\ y /z\;w`, ";;", "/a", `\`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		b, err := ParseBinds(s)
		if err != nil {
			return
		}
		for _, x := range b {
			if !strings.HasPrefix(x.Source, "/") || !strings.HasPrefix(x.Target, "/") {
				t.Fatalf("ParseBinds(%q) accepted a relative path: %#v", s, x)
			}
		}
		s2 := FormatBinds(b)
		b2, err := ParseBinds(s2)
		if err != nil {
			t.Fatalf("ParseBinds(FormatBinds(%q) = %q): %v", s, s2, err)
		}
		if len(b) != len(b2) || (len(b) > 0 && !reflect.DeepEqual(b, b2)) {
			t.Fatalf("round trip of %q via %q: %#v != %#v", s, s2, b, b2)
		}
	})
}

func TestParseCapabilities(t *testing.T) {
	got, err := ParseCapabilities("NET_ADMIN; CHOWN;cap_kill, chown")
	if err != nil {
		t.Fatal(err)
	}
	if want := []int{0, 5, 12}; !reflect.DeepEqual(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
	if s := FormatCapabilities(got); s != "CHOWN; KILL; NET_ADMIN" {
		t.Errorf("FormatCapabilities = %q", s)
	}
	if got, err := ParseCapabilities(" "); err != nil || got == nil || len(got) != 0 {
		t.Errorf("empty list: %v, %v", got, err)
	}
	if _, err := ParseCapabilities("CHOWN; FLY"); err == nil || !strings.Contains(err.Error(), "FLY") {
		t.Errorf("unknown capability: %v", err)
	}
	if CapabilityName(21) != "SYS_ADMIN" || CapabilityName(99) != "99" {
		t.Error("CapabilityName")
	}
}

func FuzzParseCapabilities(f *testing.F) {
	for _, s := range []string{"CHOWN; NET_ADMIN", "cap_sys_admin", "", "X", ";,;"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseCapabilities(s)
		if err != nil {
			return
		}
		c2, err := ParseCapabilities(FormatCapabilities(c))
		if err != nil || !reflect.DeepEqual(c, c2) {
			t.Fatalf("round trip of %q: %v, %v, %v", s, c, c2, err)
		}
	})
}

func TestRlimitName(t *testing.T) {
	if RlimitName(7) != "nofile" || RlimitName(6) != "nproc" || RlimitName(42) != "42" {
		t.Error("RlimitName")
	}
}
