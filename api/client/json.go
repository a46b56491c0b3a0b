package client

import (
	"errors"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// The Varlink transport encodes its calls and decodes its replies by hand:
// encoding/json's reflection costs a short-lived portoctl more than the
// call itself (its first use of each type builds caches), and a reply of
// thousands of cells (list with 1000 containers) was scanned four times
// (the envelope, then the parameters, each validated before decoding).
// The reader below is a strict JSON parser for the shapes porto replies
// with; anything else is skipped as encoding/json would ignore it.

// errBadJSON is the reader's only error: the reply is not valid JSON or a
// value has the wrong type.
var errBadJSON = errors.New("invalid JSON")

// jreader reads one JSON text. The first problem is kept in err and every
// later read is a no-op, so decoders check err once at the end.
type jreader struct {
	b   []byte
	i   int
	err error
}

func (r *jreader) fail() {
	if r.err == nil {
		r.err = errBadJSON
	}
	r.i = len(r.b)
}

func (r *jreader) ws() {
	for r.i < len(r.b) {
		switch r.b[r.i] {
		case ' ', '\t', '\n', '\r':
			r.i++
		default:
			return
		}
	}
}

// peek returns the next non-space byte without consuming it (0 at the end).
func (r *jreader) peek() byte {
	r.ws()
	if r.i < len(r.b) {
		return r.b[r.i]
	}
	return 0
}

// lit consumes the literal s (true, false, null).
func (r *jreader) lit(s string) {
	if len(r.b)-r.i < len(s) || string(r.b[r.i:r.i+len(s)]) != s {
		r.fail()
		return
	}
	r.i += len(s)
}

// null consumes a null and reports whether there was one.
func (r *jreader) null() bool {
	if r.peek() == 'n' {
		r.lit("null")
		return true
	}
	return false
}

// object calls field for each member of an object (or nothing for null);
// field must consume the value (r.skip if it does not want it). The key
// is only valid during the call.
func (r *jreader) object(field func(key []byte)) {
	if r.err != nil || r.null() {
		return
	}
	if r.peek() != '{' {
		r.fail()
		return
	}
	r.i++
	if r.peek() == '}' {
		r.i++
		return
	}
	for r.err == nil {
		if r.peek() != '"' {
			r.fail()
			return
		}
		key, esc := r.rawString()
		if esc {
			key = []byte(unquote(key))
		}
		if r.peek() != ':' {
			r.fail()
			return
		}
		r.i++
		field(key)
		switch r.peek() {
		case ',':
			r.i++
		case '}':
			r.i++
			return
		default:
			r.fail()
		}
	}
}

// array calls elem for each element of an array (or nothing for null);
// elem must consume the element.
func (r *jreader) array(elem func()) {
	if r.err != nil || r.null() {
		return
	}
	if r.peek() != '[' {
		r.fail()
		return
	}
	r.i++
	if r.peek() == ']' {
		r.i++
		return
	}
	for r.err == nil {
		elem()
		switch r.peek() {
		case ',':
			r.i++
		case ']':
			r.i++
			return
		default:
			r.fail()
		}
	}
}

// str reads a string ("" for null).
func (r *jreader) str() string {
	if r.err != nil || r.null() {
		return ""
	}
	if r.peek() != '"' {
		r.fail()
		return ""
	}
	raw, esc := r.rawString()
	if r.err != nil {
		return ""
	}
	if esc {
		return unquote(raw)
	}
	return string(raw)
}

// interner shares the strings a reply repeats (keys, states, error
// names and messages of thousands of cells): one allocation each.
type interner struct {
	m    map[string]string
	last string // the last string interned (consecutive cells share their container)
}

// str reads a string as r.str does, shared if it was seen before.
func (in *interner) str(r *jreader) string {
	if r.err != nil || r.peek() != '"' {
		return r.str()
	}
	raw, esc := r.rawString()
	switch {
	case r.err != nil:
		return ""
	case esc:
		return unquote(raw)
	case string(raw) == in.last:
		return in.last
	}
	if s, ok := in.m[string(raw)]; ok {
		in.last = s
		return s
	}
	s := string(raw)
	if in.m == nil {
		in.m = make(map[string]string)
	}
	if len(in.m) < 256 {
		in.m[s] = s
	}
	in.last = s
	return s
}

// strings reads an array of strings (nil for null, empty for []).
func (r *jreader) strings() []string {
	if r.err != nil || r.null() {
		return nil
	}
	out := []string{}
	r.array(func() { out = append(out, r.str()) })
	return out
}

// boolean reads true or false (false for null).
func (r *jreader) boolean() bool {
	switch r.peek() {
	case 't':
		r.lit("true")
		return true
	case 'f':
		r.lit("false")
	case 'n':
		r.lit("null")
	default:
		r.fail()
	}
	return false
}

// rawString consumes a string and returns what is between the quotes
// (still escaped), and whether it needs unquote: it has an escape, a
// byte that is not printable ASCII, or is invalid. Control characters
// fail.
func (r *jreader) rawString() (raw []byte, slow bool) {
	r.i++ // the opening quote
	start := r.i
	for r.i < len(r.b) {
		// The common bytes in a tight loop, the others below.
		b, i := r.b, r.i
		for i < len(b) && plain[b[i]] {
			i++
		}
		r.i = i
		if i == len(b) {
			break
		}
		c := b[i]
		switch {
		case c == '"':
			raw = r.b[start:r.i]
			r.i++
			return raw, slow
		case c == '\\':
			slow = true
			r.i++
			if r.i >= len(r.b) {
				r.fail()
				return nil, false
			}
			switch r.b[r.i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				r.i++
			case 'u':
				if len(r.b)-r.i < 5 {
					r.fail()
					return nil, false
				}
				for _, h := range r.b[r.i+1 : r.i+5] {
					if !isHex(h) {
						r.fail()
						return nil, false
					}
				}
				r.i += 5
			default:
				r.fail()
				return nil, false
			}
		case c < 0x20:
			r.fail()
			return nil, false
		case c >= 0x80:
			slow = true
			r.i++
		default:
			r.i++
		}
	}
	r.fail()
	return nil, false
}

// plain are the bytes that stand for themselves in a JSON string:
// printable ASCII but the quote and the backslash.
var plain = func() (t [256]bool) {
	for c := 0x20; c < 0x80; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

// unquote decodes a string body that rawString found valid, exactly as
// encoding/json does: escapes decoded, invalid UTF-8 and lone surrogates
// become U+FFFD. (encoding/json's own decoder is not linked: portoctl
// starts faster without it.)
func unquote(raw []byte) string {
	b := make([]byte, 0, len(raw)+utf8.UTFMax)
	for r := 0; r < len(raw); {
		c := raw[r]
		switch {
		case c == '\\':
			r++
			switch e := raw[r]; e {
			case 'b':
				b = append(b, '\b')
			case 'f':
				b = append(b, '\f')
			case 'n':
				b = append(b, '\n')
			case 'r':
				b = append(b, '\r')
			case 't':
				b = append(b, '\t')
			case 'u':
				rr := getu4(raw[r-1:])
				r += 5
				if utf16.IsSurrogate(rr) {
					if dec := utf16.DecodeRune(rr, getu4(raw[r:])); dec != utf8.RuneError {
						r += 6
						b = utf8.AppendRune(b, dec)
						continue
					}
					rr = utf8.RuneError
				}
				b = utf8.AppendRune(b, rr)
				continue
			default: // " \ /
				b = append(b, e)
			}
			r++
		case c < utf8.RuneSelf:
			b = append(b, c)
			r++
		default:
			rr, size := utf8.DecodeRune(raw[r:])
			b = utf8.AppendRune(b, rr)
			r += size
		}
	}
	return string(b)
}

// getu4 decodes \uXXXX at the start of s, or returns -1.
func getu4(s []byte) rune {
	if len(s) < 6 || s[0] != '\\' || s[1] != 'u' {
		return -1
	}
	var r rune
	for _, c := range s[2:6] {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			c = c - 'A' + 10
		default:
			return -1
		}
		r = r*16 + rune(c)
	}
	return r
}

// skip consumes any value.
func (r *jreader) skip() {
	switch r.peek() {
	case '{':
		r.object(func([]byte) { r.skip() })
	case '[':
		r.array(r.skip)
	case '"':
		r.rawString()
	case 't':
		r.lit("true")
	case 'f':
		r.lit("false")
	case 'n':
		r.lit("null")
	default:
		r.number()
	}
}

// number consumes a JSON number.
func (r *jreader) number() {
	b, i := r.b, r.i
	if i < len(b) && b[i] == '-' {
		i++
	}
	digits := func() bool {
		s := i
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
		return i > s
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case !digits():
		r.fail()
		return
	}
	if i < len(b) && b[i] == '.' {
		i++
		if !digits() {
			r.fail()
			return
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if !digits() {
			r.fail()
			return
		}
	}
	r.i = i
}

// end checks that nothing but space follows the value.
func (r *jreader) end() {
	if r.peek() != 0 || r.i != len(r.b) {
		r.fail()
	}
}

// jwriter builds one call. Its methods append to b.
type jwriter struct {
	b     []byte
	comma bool // a member was written in the current object
}

// key starts a member.
func (w *jwriter) key(k string) {
	if w.comma {
		w.b = append(w.b, ',')
	}
	w.comma = true
	w.b = appendString(w.b, k)
	w.b = append(w.b, ':')
}

func (w *jwriter) str(k, v string) {
	w.key(k)
	w.b = appendString(w.b, v)
}

func (w *jwriter) int(k string, v int64) {
	w.key(k)
	w.b = strconv.AppendInt(w.b, v, 10)
}

func (w *jwriter) strs(k string, vs []string) {
	w.key(k)
	w.b = append(w.b, '[')
	for i, v := range vs {
		if i > 0 {
			w.b = append(w.b, ',')
		}
		w.b = appendString(w.b, v)
	}
	w.b = append(w.b, ']')
}

// flag writes k: true when v is set (omitempty).
func (w *jwriter) flag(k string, v bool) {
	if v {
		w.key(k)
		w.b = append(w.b, "true"...)
	}
}

const hexDigits = "0123456789abcdef"

// appendString appends s quoted as encoding/json does with HTML escaping
// off: invalid UTF-8 becomes U+FFFD, U+2028 and U+2029 are escaped.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' && c < utf8.RuneSelf {
			i++
			continue
		}
		if c < utf8.RuneSelf {
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
