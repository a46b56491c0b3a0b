package netsched

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// Message and attribute layout constants from linux/netlink.h and
// linux/rtnetlink.h. All of netlink is in host byte order; porto only runs on
// little-endian machines but the code uses binary.NativeEndian anyway.
const (
	nlmsgHdrLen = 16 // struct nlmsghdr
	tcmsgLen    = 20 // struct tcmsg
	ifinfoLen   = 16 // struct ifinfomsg
	nlaHdrLen   = 4  // struct nlattr / rtattr

	nlaTypeMask = 0x3fff // strips NLA_F_NESTED and NLA_F_NET_BYTEORDER
	nlaFNested  = 0x8000

	nlmFCapped  = 0x100 // NLM_F_CAPPED
	nlmFAckTLVs = 0x200 // NLM_F_ACK_TLVS

	// recvBufLen holds any single datagram the kernel sends for a dump
	// (it sizes dump skbs from the reader's buffer, at most 32 KiB, or to
	// fit one message).
	recvBufLen = 1 << 16
)

var native = binary.NativeEndian

func nlAlign(n int) int { return (n + 3) &^ 3 }

// attr is one netlink attribute; Data excludes the header and the padding.
type attr struct {
	Type uint16 // with the NLA_F_* flag bits stripped
	Data []byte
}

// msgBuilder builds one netlink request: header, fixed body, attributes.
type msgBuilder struct {
	b     []byte
	nests []int
}

func newMsg(typ, flags uint16, body []byte) *msgBuilder {
	m := &msgBuilder{b: make([]byte, nlmsgHdrLen, 256)}
	native.PutUint16(m.b[4:], typ)
	native.PutUint16(m.b[6:], flags)
	m.b = append(m.b, body...)
	m.pad()
	return m
}

func (m *msgBuilder) pad() {
	for len(m.b)%4 != 0 {
		m.b = append(m.b, 0)
	}
}

// attr appends an attribute: rta_len counts the header and the payload
// without padding; the next attribute starts 4-aligned.
func (m *msgBuilder) attr(typ uint16, data []byte) {
	var h [nlaHdrLen]byte
	native.PutUint16(h[0:], uint16(nlaHdrLen+len(data)))
	native.PutUint16(h[2:], typ)
	m.b = append(m.b, h[:]...)
	m.b = append(m.b, data...)
	m.pad()
}

func (m *msgBuilder) attrU32(typ uint16, v uint32) {
	var b [4]byte
	native.PutUint32(b[:], v)
	m.attr(typ, b[:])
}

func (m *msgBuilder) attrU64(typ uint16, v uint64) {
	var b [8]byte
	native.PutUint64(b[:], v)
	m.attr(typ, b[:])
}

// attrString appends a NUL-terminated string (NLA_STRING / NLA_NUL_STRING).
func (m *msgBuilder) attrString(typ uint16, s string) {
	m.attr(typ, append([]byte(s), 0))
}

// begin opens a nested attribute; end closes the innermost one.
func (m *msgBuilder) begin(typ uint16) {
	m.nests = append(m.nests, len(m.b))
	m.attr(typ, nil)
}

func (m *msgBuilder) end() {
	at := m.nests[len(m.nests)-1]
	m.nests = m.nests[:len(m.nests)-1]
	native.PutUint16(m.b[at:], uint16(len(m.b)-at))
}

// finish stamps the length and the sequence number and returns the bytes.
func (m *msgBuilder) finish(seq uint32) []byte {
	native.PutUint32(m.b[0:], uint32(len(m.b)))
	native.PutUint32(m.b[8:], seq)
	return m.b
}

// parseAttrs splits b into attributes. A truncated or malformed attribute
// ends the walk with an error; the attributes before it are returned.
func parseAttrs(b []byte) ([]attr, error) {
	var out []attr
	for len(b) > 0 {
		if len(b) < nlaHdrLen {
			return out, errMalformed
		}
		l := int(native.Uint16(b[0:]))
		if l < nlaHdrLen || l > len(b) {
			return out, errMalformed
		}
		out = append(out, attr{Type: native.Uint16(b[2:]) & nlaTypeMask, Data: b[nlaHdrLen:l]})
		n := nlAlign(l)
		if n >= len(b) {
			break
		}
		b = b[n:]
	}
	return out, nil
}

// find returns the first attribute of type typ.
func find(as []attr, typ uint16) ([]byte, bool) {
	for _, a := range as {
		if a.Type == typ {
			return a.Data, true
		}
	}
	return nil, false
}

func cString(b []byte) string {
	for i, c := range b {
		if c == 0 {
			return string(b[:i])
		}
	}
	return string(b)
}

var errMalformed = errors.New("malformed netlink message")

// message is one netlink message of a reply.
type message struct {
	Type  uint16
	Flags uint16
	Seq   uint32
	Data  []byte // after the nlmsghdr
}

// parseMessages splits one datagram into messages.
func parseMessages(b []byte) ([]message, error) {
	var out []message
	for len(b) > 0 {
		if len(b) < nlmsgHdrLen {
			return out, errMalformed
		}
		l := int(native.Uint32(b[0:]))
		if l < nlmsgHdrLen || l > len(b) {
			return out, errMalformed
		}
		out = append(out, message{
			Type:  native.Uint16(b[4:]),
			Flags: native.Uint16(b[6:]),
			Seq:   native.Uint32(b[8:]),
			Data:  b[nlmsgHdrLen:l],
		})
		n := nlAlign(l)
		if n >= len(b) {
			break
		}
		b = b[n:]
	}
	return out, nil
}

// nlError is a failed request: the errno and the kernel's extended-ack text.
type nlError struct {
	Errno syscall.Errno
	Msg   string
}

func (e *nlError) Error() string {
	if e.Msg != "" {
		return fmt.Sprintf("%v (%s)", e.Errno, e.Msg)
	}
	return e.Errno.Error()
}

func (e *nlError) Unwrap() error { return e.Errno }

// parseAck decodes the payload of an NLMSG_ERROR message (struct nlmsgerr,
// then the echoed request or only its header when NLM_F_CAPPED, then the
// extended-ack attributes when NLM_F_ACK_TLVS). It returns nil for an ACK.
// It also decodes an NLMSG_DONE payload, which is an int error followed by
// the same attributes.
func parseAck(flags uint16, data []byte, done bool) error {
	if len(data) < 4 {
		if done {
			return nil
		}
		return errMalformed
	}
	code := int32(native.Uint32(data))
	if code == 0 {
		return nil
	}
	e := &nlError{Errno: syscall.Errno(-code)}
	if code > 0 {
		e.Errno = syscall.Errno(code)
	}
	if flags&nlmFAckTLVs == 0 {
		return e
	}
	off := 4
	if !done {
		// The echoed request header: its length tells how much follows
		// unless the echo was capped to the header.
		if len(data) < 4+nlmsgHdrLen {
			return e
		}
		off += nlmsgHdrLen
		if flags&nlmFCapped == 0 {
			l := int(native.Uint32(data[4:]))
			if l < nlmsgHdrLen {
				return e
			}
			off = 4 + nlAlign(l)
		}
	}
	if off > len(data) {
		return e
	}
	as, _ := parseAttrs(data[off:])
	if m, ok := find(as, unix.NLMSGERR_ATTR_MSG); ok {
		e.Msg = cString(m)
	}
	return e
}

// conn is a NETLINK_ROUTE socket with one request in flight at a time.
type conn struct {
	mu  sync.Mutex
	fd  int
	seq uint32
	buf []byte
}

func dial() (*conn, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("netsched: netlink socket: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("netsched: netlink bind: %w", err)
	}
	// Best effort: error strings from the kernel, and no echo of our
	// (possibly large) request in error replies.
	_ = unix.SetsockoptInt(fd, unix.SOL_NETLINK, unix.NETLINK_EXT_ACK, 1)
	_ = unix.SetsockoptInt(fd, unix.SOL_NETLINK, unix.NETLINK_CAP_ACK, 1)
	// Never block forever on a kernel that does not answer.
	tv := unix.Timeval{Sec: 10}
	_ = unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	return &conn{fd: fd, buf: make([]byte, recvBufLen)}, nil
}

func (c *conn) close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fd < 0 {
		return nil
	}
	err := unix.Close(c.fd)
	c.fd = -1
	return err
}

var errClosed = errors.New("netsched: closed")

// do sends m and collects the reply. For a dump (NLM_F_DUMP) it returns
// every message up to NLMSG_DONE; otherwise it asks for an ACK and returns
// the messages that came before it (none for a NEW/DEL request).
func (c *conn) do(m *msgBuilder) ([]message, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fd < 0 {
		return nil, errClosed
	}
	c.seq++
	seq := c.seq
	flags := native.Uint16(m.b[6:])
	dump := flags&unix.NLM_F_DUMP == unix.NLM_F_DUMP
	if !dump {
		native.PutUint16(m.b[6:], flags|unix.NLM_F_ACK)
	}
	req := m.finish(seq)
	if err := unix.Sendto(c.fd, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return nil, err
	}
	var out []message
	intr := false
	for {
		n, from, err := unix.Recvfrom(c.fd, c.buf, 0)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, err
		}
		if sa, ok := from.(*unix.SockaddrNetlink); ok && sa.Pid != 0 {
			continue // not from the kernel
		}
		msgs, err := parseMessages(c.buf[:n])
		if err != nil {
			return nil, err
		}
		for _, msg := range msgs {
			if msg.Seq != seq {
				continue // a late reply to an earlier, abandoned request
			}
			if msg.Flags&unix.NLM_F_DUMP_INTR != 0 {
				intr = true
			}
			switch msg.Type {
			case unix.NLMSG_ERROR:
				if err := parseAck(msg.Flags, msg.Data, false); err != nil {
					return nil, err
				}
				if !dump {
					return out, nil
				}
			case unix.NLMSG_DONE:
				if err := parseAck(msg.Flags, msg.Data, true); err != nil {
					return nil, err
				}
				if intr {
					return nil, errDumpIntr
				}
				return out, nil
			case unix.NLMSG_NOOP:
			default:
				// Copy: c.buf is reused by the next read.
				msg.Data = append([]byte(nil), msg.Data...)
				out = append(out, msg)
			}
		}
	}
}

var errDumpIntr = errors.New("dump interrupted by a concurrent change")

// dump runs a dump request, retrying a few times when the kernel reports
// that the dumped table changed under it.
func (c *conn) dump(typ uint16, body []byte, attrs func(*msgBuilder)) ([]message, error) {
	for i := 0; ; i++ {
		m := newMsg(typ, unix.NLM_F_REQUEST|unix.NLM_F_DUMP, body)
		if attrs != nil {
			attrs(m)
		}
		msgs, err := c.do(m)
		if err == errDumpIntr && i < 5 {
			continue
		}
		return msgs, err
	}
}
