package varlinkapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
)

// DefaultMaxMessageSize is the largest message (call) the server reads.
const DefaultMaxMessageSize = 8 << 20

// ErrMessageTooLarge is what Decoder.Next returns for a message longer than
// its limit.
var ErrMessageTooLarge = errors.New("varlink message too large")

// Decoder splits a byte stream into NUL-terminated messages.
type Decoder struct {
	r   io.Reader
	max int
	buf []byte
	beg int // start of unconsumed data in buf
	end int // end of data in buf
	// partial, if set, is told when the decoder starts (true) and stops
	// (false) waiting for the rest of a message, so the connection can
	// time out a peer that sends half a message and stalls.
	partial  func(bool)
	inMiddle bool
}

const decoderChunk = 16 << 10

// NewDecoder reads messages of at most max bytes (terminator excluded)
// from r.
func NewDecoder(r io.Reader, max int) *Decoder {
	return &Decoder{r: r, max: max, buf: make([]byte, decoderChunk)}
}

// Next returns the next message without its NUL terminator. The slice is
// only valid until the next call. At the end of the stream it returns
// io.EOF, or io.ErrUnexpectedEOF if a message was left without its
// terminator; a message over the limit gives ErrMessageTooLarge. After an
// error the decoder is done.
func (d *Decoder) Next() ([]byte, error) {
	scanned := d.beg
	for {
		if i := bytes.IndexByte(d.buf[scanned:d.end], 0); i >= 0 {
			if scanned+i-d.beg > d.max {
				return nil, ErrMessageTooLarge
			}
			msg := d.buf[d.beg : scanned+i]
			d.beg = scanned + i + 1
			if d.inMiddle && d.beg == d.end {
				d.setPartial(false)
			}
			return msg, nil
		}
		scanned = d.end
		if d.end-d.beg > d.max {
			return nil, ErrMessageTooLarge
		}
		if d.beg > 0 && d.beg == d.end {
			d.beg, d.end, scanned = 0, 0, 0
			if len(d.buf) > 4*decoderChunk {
				d.buf = make([]byte, decoderChunk) // after a big message
			}
		}
		if d.end == len(d.buf) {
			if d.beg > 0 {
				// Slide the partial message to the front.
				n := copy(d.buf, d.buf[d.beg:d.end])
				scanned -= d.beg
				d.beg, d.end = 0, n
			}
			if d.end == len(d.buf) {
				size := 2 * len(d.buf)
				if size > d.max+1 {
					size = d.max + 1
				}
				if size <= len(d.buf) {
					return nil, ErrMessageTooLarge
				}
				nb := make([]byte, size)
				copy(nb, d.buf[:d.end])
				d.buf = nb
			}
		}
		if d.end > d.beg && !d.inMiddle {
			d.setPartial(true)
		}
		n, err := d.r.Read(d.buf[d.end:])
		d.end += n
		if err != nil {
			if n > 0 && bytes.IndexByte(d.buf[scanned:d.end], 0) >= 0 {
				continue // deliver what arrived; the error comes back next time
			}
			if errors.Is(err, io.EOF) {
				if d.end > d.beg {
					return nil, io.ErrUnexpectedEOF
				}
				return nil, io.EOF
			}
			return nil, err
		}
	}
}

func (d *Decoder) setPartial(on bool) {
	d.inMiddle = on
	if d.partial != nil {
		d.partial(on)
	}
}

// Buffered reports whether data of a next message is already read.
func (d *Decoder) Buffered() bool { return d.end > d.beg }

// call is a Varlink method call.
type call struct {
	Method     string          `json:"method"`
	Parameters json.RawMessage `json:"parameters,omitempty"`
	More       bool            `json:"more,omitempty"`
	Oneway     bool            `json:"oneway,omitempty"`
	Upgrade    bool            `json:"upgrade,omitempty"`
}

// errBadCall is a message that is not a Varlink call.
type errBadCall struct{ msg string }

func (e *errBadCall) Error() string { return e.msg }

// parseCall decodes one message. The parameters keep pointing into msg.
func parseCall(msg []byte) (*call, error) {
	var c call
	if err := json.Unmarshal(msg, &c); err != nil {
		return nil, &errBadCall{"invalid message: " + err.Error()}
	}
	if c.Method == "" {
		return nil, &errBadCall{`invalid message: no "method"`}
	}
	if len(c.Parameters) > 0 && c.Parameters[0] != '{' && !bytes.Equal(c.Parameters, []byte("null")) {
		return nil, &errBadCall{`invalid message: "parameters" is not an object`}
	}
	return &c, nil
}

// reply is a Varlink reply.
type reply struct {
	Parameters any    `json:"parameters"`
	Continues  bool   `json:"continues,omitempty"`
	Error      string `json:"error,omitempty"`
}

// encodeReply appends r and its NUL terminator to buf.
func encodeReply(buf *bytes.Buffer, r *reply) error {
	start := buf.Len()
	enc := json.NewEncoder(buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(r); err != nil {
		buf.Truncate(start)
		return err
	}
	// Encode ends with '\n': replace it by the terminator.
	b := buf.Bytes()
	b[len(b)-1] = 0
	return nil
}

// decodeParams decodes p into v (a struct pointer), refusing unknown
// fields. It returns the name of the offending parameter on error.
func decodeParams(p json.RawMessage, v any) (bad string, err error) {
	if len(p) == 0 || bytes.Equal(p, []byte("null")) {
		p = []byte("{}")
	}
	dec := json.NewDecoder(bytes.NewReader(p))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var te *json.UnmarshalTypeError
		switch {
		case errors.As(err, &te):
			return te.Field, err
		case bytes.HasPrefix([]byte(err.Error()), []byte(`json: unknown field "`)):
			s := err.Error()[len(`json: unknown field "`):]
			if i := bytes.IndexByte([]byte(s), '"'); i >= 0 {
				s = s[:i]
			}
			return s, err
		}
		return "parameters", err
	}
	return "", nil
}
