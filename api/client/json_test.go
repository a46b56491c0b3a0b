package client

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"

	"github.com/porto-dev/porto/api"
)

var jsonStrings = []string{
	"", "plain", `q"uote`, `back\slash`, "new\nline\ttab\r\b\f", "\x00\x01\x1f\x7f",
	"<html>&amp;</html>", "caf\u00e9 \u4e16\u754c \U0001F600", "\u2028\u2029",
	"bad \xff utf8 \xc3", "\xed\xa0\x80 surrogate", "/slash/",
}

// appendString quotes as encoding/json does with HTML escaping off.
func TestAppendString(t *testing.T) {
	for _, s := range jsonStrings {
		checkAppendString(t, s)
	}
}

func checkAppendString(t *testing.T, s string) {
	t.Helper()
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.Encode(s)
	want := bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
	if got := appendString(nil, s); !bytes.Equal(got, want) {
		t.Errorf("appendString(%q) = %s, want %s", s, got, want)
	}
}

// The reader's strings are encoding/json's.
func TestReaderString(t *testing.T) {
	texts := []string{`"a\u00e9\ud83d\ude00"`, `"lone \ud800 x"`, `"\ud800\u0041"`, `"\udc00"`, `"end \ud83d"`, `"\ud83d\ud83d\ude00"`, "\"\xed\xa0\x80\"", `"\/\"\\"`, `"\u0041"`, "\"raw \xff\""}
	for _, s := range jsonStrings {
		b, _ := json.Marshal(s)
		texts = append(texts, string(b))
	}
	for _, text := range texts {
		checkReaderString(t, text)
	}
}

func checkReaderString(t *testing.T, text string) {
	t.Helper()
	var want string
	werr := json.Unmarshal([]byte(text), &want)
	r := jreader{b: []byte(text)}
	got := r.str()
	r.end()
	if (werr == nil) != (r.err == nil) || werr == nil && got != want {
		t.Errorf("%q: got %q, %v; want %q, %v", text, got, r.err, want, werr)
	}
}

// Invalid JSON is refused; valid JSON of any shape is skipped.
func TestReaderValidity(t *testing.T) {
	for _, text := range []string{
		`{}`, `[]`, `null`, `true`, `-0.5e+10`, `0`, `{"a":[1,{"b":null}],"c":"d"}`, " {\n\"a\" : [ ] } ",
		`{`, `{"a"}`, `{"a":}`, `[1,]`, `{"a":1,}`, `01`, `1.`, `-`, `"`, `"\x"`, "\"\x01\"", `tru`, `{} x`, `"\u12"`, ``,
	} {
		r := jreader{b: []byte(text)}
		r.skip()
		r.end()
		if valid := json.Valid([]byte(text)); valid != (r.err == nil) {
			t.Errorf("%q: valid %v, reader error %v", text, valid, r.err)
		}
	}
}

func FuzzJSONStrings(f *testing.F) {
	for _, s := range jsonStrings {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		checkAppendString(t, s)
		checkReaderString(t, `"`+s+`"`)
		b, _ := json.Marshal(s)
		checkReaderString(t, string(b))
		r := jreader{b: []byte(s)}
		r.skip()
		r.end()
		if json.Valid([]byte(s)) != (r.err == nil) {
			t.Errorf("%q: valid %v, reader error %v", s, json.Valid([]byte(s)), r.err)
		}
	})
}

// Replies decode as they did with encoding/json, in any member order and
// spacing, with unknown members ignored.
func TestParseReply(t *testing.T) {
	for _, tc := range []struct {
		reply     string
		value     string
		continues bool
		err       *api.Error
	}{
		{`{"parameters":{"value":"x"}}`, "x", false, nil},
		{` { "continues" : true , "extra" : [1, {"a": null}], "parameters" : { "other": 5, "value" : "caf\u00e9" } } `, "café", true, nil},
		{`{"parameters":{}}`, "", false, nil},
		{`{"parameters":null}`, "", false, nil},
		{`{}`, "", false, nil},
		{`{"error":"io.porto.Manager.ContainerDoesNotExist","parameters":{"message":"no x"}}`, "", false, &api.Error{Code: api.ContainerDoesNotExist, Msg: "no x"}},
		{`{"parameters":{"message":"m","method":"M"},"error":"org.varlink.service.MethodNotFound"}`, "", false, &api.Error{Code: api.InvalidMethod, Msg: "MethodNotFound (method M)"}},
	} {
		var v string
		rep, err := parseReply([]byte(tc.reply), oneString("value", &v))
		if err != nil || v != tc.value || rep.continues != tc.continues || !reflect.DeepEqual(rep.err, tc.err) {
			t.Errorf("%s: %q %v %v %v", tc.reply, v, rep.continues, rep.err, err)
		}
	}
	for _, bad := range []string{``, `[]`, `{"parameters":{"value":1}}`, `{"parameters":{"value":"x"}`, `{"continues":"yes"}`, `{} {}`} {
		var v string
		if _, err := parseReply([]byte(bad), oneString("value", &v)); err == nil {
			t.Errorf("%s: no error", bad)
		}
	}
}

// Get decodes every cell, errors included.
func TestVarlinkGet(t *testing.T) {
	sock := fakeVarlink(t, `{"parameters":{"values":[`+
		`{"container":"a","key":"state","value":"running","error":"","message":""},`+
		`{"container":"a","key":"time","value":"","error":"io.porto.Manager.InvalidState","message":"not now"},`+
		`{"message":"","error":"","value":"v\n","key":"k","container":"b\u00e9"}]}}`)
	c, err := NewVarlink(sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	got, err := c.Get(t.Context(), []string{"a", "b"}, []string{"state", "time"})
	if err != nil {
		t.Fatal(err)
	}
	want := []api.GetResult{
		{Container: "a", Key: "state", Value: "running"},
		{Container: "a", Key: "time", Err: &api.Error{Code: api.InvalidState, Msg: "not now"}},
		{Container: "bé", Key: "k", Value: "v\n"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Get = %+v", got)
	}
	names, err := c.List(t.Context())
	if err != nil || names != nil {
		t.Errorf("List of a reply without names = %q, %v", names, err)
	}
}

func BenchmarkParseGetReply(b *testing.B) {
	type cell struct {
		Container string `json:"container"`
		Key       string `json:"key"`
		Value     string `json:"value"`
		Error     string `json:"error"`
		Message   string `json:"message"`
	}
	var cells []cell
	for i := range 1000 {
		cells = append(cells, cell{"ct-" + string(rune('a'+i%26)), "state", "running", "", ""},
			cell{"ct", "time", "", "io.porto.Manager.InvalidState", "time is not available in state stopped"})
	}
	reply, _ := json.Marshal(map[string]any{"parameters": map[string]any{"values": cells}})
	b.SetBytes(int64(len(reply)))
	for b.Loop() {
		n := 0
		_, err := parseReply(reply, func(r *jreader) {
			r.object(func([]byte) {
				r.array(func() {
					r.object(func([]byte) { _ = r.str() })
					n++
				})
			})
		})
		if err != nil || n != 2000 {
			b.Fatal(err, n)
		}
	}
}
