package netsched

import (
	"bytes"
	"encoding/hex"
	"errors"
	"math"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

func TestAttrEncoding(t *testing.T) {
	for _, tc := range []struct {
		data    []byte
		wantLen uint16 // rta_len
		wantTot int    // bytes appended, padded
	}{
		{nil, 4, 4},
		{[]byte{1}, 5, 8},
		{[]byte{1, 2, 3}, 7, 8},
		{[]byte{1, 2, 3, 4}, 8, 8},
		{[]byte{1, 2, 3, 4, 5}, 9, 12},
	} {
		m := newMsg(1, 0, nil)
		m.attr(42, tc.data)
		b := m.b[nlmsgHdrLen:]
		if len(b) != tc.wantTot {
			t.Errorf("len(%x): appended %d, want %d", tc.data, len(b), tc.wantTot)
		}
		if l := native.Uint16(b); l != tc.wantLen {
			t.Errorf("len(%x): rta_len %d, want %d", tc.data, l, tc.wantLen)
		}
		as, err := parseAttrs(b)
		if err != nil || len(as) != 1 || as[0].Type != 42 || !bytes.Equal(as[0].Data, tc.data) {
			t.Errorf("round trip of %x: %+v %v", tc.data, as, err)
		}
	}
}

func TestNestedAndHeader(t *testing.T) {
	m := newMsg(unix.RTM_NEWTCLASS, unix.NLM_F_REQUEST, tcmsg(7, handle(0x10), handle(1), 0))
	m.attrString(unix.TCA_KIND, "htb")
	m.begin(unix.TCA_OPTIONS)
	m.attrU32(1, 0xdeadbeef)
	m.attrU64(2, 1<<40)
	m.end()
	b := m.finish(99)
	if got := native.Uint32(b); int(got) != len(b) || len(b)%4 != 0 {
		t.Fatalf("nlmsg_len %d, len %d", got, len(b))
	}
	if native.Uint16(b[4:]) != unix.RTM_NEWTCLASS || native.Uint32(b[8:]) != 99 {
		t.Errorf("header %x", b[:16])
	}
	// tcmsg: family 0, ifindex 7, handle 1:10, parent 1:1.
	wantTc, _ := hex.DecodeString("00000000" + "07000000" + "10000100" + "01000100" + "00000000")
	if !bytes.Equal(b[16:36], wantTc) {
		t.Errorf("tcmsg %x, want %x", b[16:36], wantTc)
	}
	hdr, as, err := parseTcmsg(b[16:])
	if err != nil || hdr.Ifindex != 7 || hdr.Handle != 0x10010 || hdr.Parent != 0x10001 {
		t.Fatalf("parseTcmsg: %+v %v", hdr, err)
	}
	// KIND "htb\0" = 8 bytes; OPTIONS = 4 + (4+4) + (4+8) = 24.
	if len(as) != 2 || cString(as[0].Data) != "htb" || as[1].Type != unix.TCA_OPTIONS || len(as[1].Data) != 20 {
		t.Fatalf("attrs %+v", as)
	}
	inner, err := parseAttrs(as[1].Data)
	if err != nil || len(inner) != 2 || native.Uint32(inner[0].Data) != 0xdeadbeef || native.Uint64(inner[1].Data) != 1<<40 {
		t.Errorf("nested %+v %v", inner, err)
	}
}

func TestParseMalformed(t *testing.T) {
	for _, b := range [][]byte{
		{1},
		{3, 0, 1, 0},          // rta_len < 4
		{9, 0, 1, 0, 1, 2, 3}, // rta_len beyond the buffer
		{0, 0, 0, 0},
	} {
		if _, err := parseAttrs(b); err == nil {
			t.Errorf("parseAttrs(%x) accepted", b)
		}
	}
	for _, b := range [][]byte{
		{1, 2, 3},
		{8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, // nlmsg_len < 16
		{64, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0},
	} {
		if _, err := parseMessages(b); err == nil {
			t.Errorf("parseMessages(%x) accepted", b)
		}
	}
	// Every truncation of a real reply parses without a panic.
	full := capturedClass(t)
	for i := range full {
		hdr, as, _ := parseTcmsg(full[:i])
		_ = parseStats(as)
		if o, ok := find(as, unix.TCA_OPTIONS); ok {
			parseHtbParms(o)
		}
		_ = hdr
		parseClasses(3, []message{{Type: unix.RTM_NEWTCLASS, Data: full[:i]}})
		parseLink(full[:i])
		parseAck(nlmFAckTLVs, full[:i], false)
		parseAck(nlmFAckTLVs|nlmFCapped, full[:i], true)
	}
}

func TestMessages(t *testing.T) {
	m1 := newMsg(unix.RTM_NEWTCLASS, unix.NLM_F_MULTI, []byte{1, 2, 3}).finish(5) // padded to 20
	m2 := newMsg(unix.NLMSG_DONE, unix.NLM_F_MULTI, []byte{0, 0, 0, 0}).finish(5)
	msgs, err := parseMessages(append(append([]byte{}, m1...), m2...))
	if err != nil || len(msgs) != 2 || msgs[0].Seq != 5 || msgs[1].Type != unix.NLMSG_DONE || len(msgs[0].Data) != 4 {
		t.Fatalf("%+v %v", msgs, err)
	}
}

func TestRatespecAndHtbOpt(t *testing.T) {
	if tcRatespecLen != 12 || tcHtbOptLen != 2*tcRatespecLen+5*4 || tcHtbGlobLen != 5*4 || tcmsgLen != 20 {
		t.Fatal("struct sizes disagree with linux/pkt_sched.h and rtnetlink.h")
	}
	b := htbOpt(0x11223344, 1<<40, 0xaabbccdd, 7, 1600, 3)
	if len(b) != tcHtbOptLen {
		t.Fatalf("len %d", len(b))
	}
	want := "" +
		"00" + "01" + "0000" + "0000" + "0000" + "44332211" + // rate: cell_log, linklayer ETHERNET, overhead, cell_align, mpu, rate
		"00" + "01" + "0000" + "0000" + "0000" + "ffffffff" + // ceil: saturated u32, the real value goes in TCA_HTB_CEIL64
		"ddccbbaa" + "07000000" + "40060000" + "00000000" + "03000000" // buffer, cbuffer, quantum, level, prio
	if got := hex.EncodeToString(b); got != want {
		t.Errorf("tc_htb_opt\n got %s\nwant %s", got, want)
	}
	if got := hex.EncodeToString(htbGlob(DefaultMinor)); got != "03000000"+"0a000000"+"02000000"+"00000000"+"00000000" {
		t.Errorf("tc_htb_glob %s", got)
	}
}

func TestClassOptions(t *testing.T) {
	for _, tc := range []struct {
		c              Class
		rate, ceil     uint64
		has64r, has64c bool
		prio           uint32
	}{
		{Class{Rate: 1_000_000, Ceil: 2_000_000, Prio: 3}, 1_000_000, 2_000_000, false, false, 3},
		{Class{}, minRate, MaxRate, false, true, 0},
		{Class{Rate: 5 << 30, Ceil: 1, Prio: 100}, 5 << 30, 5 << 30, true, true, 7},
		{Class{Rate: math.MaxUint64}, MaxRate, MaxRate, true, true, 0},
	} {
		m := newMsg(0, 0, nil)
		classOptions(m, tc.c)
		as, err := parseAttrs(m.b[nlmsgHdrLen:])
		if err != nil || len(as) != 1 || as[0].Type != unix.TCA_OPTIONS {
			t.Fatalf("%+v: %+v %v", tc.c, as, err)
		}
		inner, _ := parseAttrs(as[0].Data)
		_, r64 := find(inner, tcaHtbRate64)
		_, c64 := find(inner, tcaHtbCeil64)
		p, ok := parseHtbParms(as[0].Data)
		if !ok || p.Rate != tc.rate || p.Ceil != tc.ceil || r64 != tc.has64r || c64 != tc.has64c || p.Prio != tc.prio {
			t.Errorf("%+v: parms %+v rate64 %v ceil64 %v", tc.c, p, r64, c64)
		}
		if p.Quantum < minQuantum || p.Quantum > maxQuantum || p.Buffer == 0 || p.Cbuffer == 0 {
			t.Errorf("%+v: quantum %d buffer %d cbuffer %d", tc.c, p.Quantum, p.Buffer, p.Cbuffer)
		}
	}
}

func TestTicks(t *testing.T) {
	// /proc/net/psched on every current kernel: 000003e8 00000040 000f4240 3b9aca00.
	tpu := psched(0x3e8, 0x40, 0xf4240, 0)
	if tpu != 15.625 {
		t.Fatalf("ticks per usec %v", tpu)
	}
	if got := psched(0x3e8, 0x40, 1000000000, 0); got != 1000 {
		t.Errorf("nanosecond clock_res hack: %v", got)
	}
	for _, tc := range []struct {
		rate, size uint64
		want       uint32
	}{
		{1_000_000, 32768, 512000},       // 32.768 ms, what tc shows as burst 32Kb at 8Mbit
		{MaxRate, MaxRate / 100, 156249}, // 10 ms, float rounding down as tc does
		{1, 32768, math.MaxUint32},       // saturates
		{0, 1, math.MaxUint32},
	} {
		if got := xmitTicks(tc.rate, tc.size, tpu); got != tc.want {
			t.Errorf("xmitTicks(%d, %d) = %d, want %d", tc.rate, tc.size, got, tc.want)
		}
	}
	if tp := ticksPerUsec(); tp <= 0 {
		t.Errorf("ticksPerUsec() = %v", tp)
	}
}

// capturedClass is the tcmsg part of an RTM_NEWTCLASS reply the 6.18 kernel
// sent for class 1:2 (rate 1, ceil MaxRate, prio 0) of the HTB on ifindex 3
// after 3 datagrams of 44 bytes: TCA_KIND, TCA_OPTIONS {TCA_HTB_PARMS,
// TCA_HTB_CEIL64}, TCA_STATS2 {BASIC, RATE_EST, QUEUE}, TCA_STATS, TCA_XSTATS.
func capturedClass(t *testing.T) []byte {
	b, err := hex.DecodeString("0000000003000000020001000100010000000000080001006874620040000200300001000001000000000000010000000001000000000000ffffffffffffffff596202004006000000000000000000000c000700ffffffffff00000048000700140001008400000000000000030000000000000018000300000000000000000000000000000000000000000018000400030000000000000000000000ffffff7f596202002c0003008400000000000000030000000000000000000000000000000000000000000000000000000000000018000400030000000000000000000000ffffff7f59620200")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseCapturedClass(t *testing.T) {
	b := capturedClass(t)
	cs := parseClasses(3, []message{
		{Type: unix.RTM_NEWTCLASS, Data: b},
		{Type: unix.RTM_NEWTCLASS, Data: b[:tcmsgLen-1]}, // malformed: ignored
	})
	want := ClassInfo{Parent: RootMinor, Leaf: true, Stats: Stats{Bytes: 132, Packets: 3}, Rate: 1, Ceil: MaxRate}
	if len(cs) != 1 || cs[DefaultMinor] != want {
		t.Errorf("parseClasses = %+v, want {2: %+v}", cs, want)
	}
	if got := parseClasses(4, []message{{Type: unix.RTM_NEWTCLASS, Data: b}}); len(got) != 0 {
		t.Errorf("other ifindex: %+v", got)
	}

	// Legacy TCA_STATS only, and TCA_STATS2 with PKT64 and a queue.
	legacy := make([]byte, 36)
	native.PutUint64(legacy[0:], 1000)
	native.PutUint32(legacy[8:], 10)
	native.PutUint32(legacy[12:], 2)
	native.PutUint32(legacy[16:], 5)
	m := newMsg(0, 0, nil)
	m.attr(unix.TCA_STATS, legacy)
	as, _ := parseAttrs(m.b[nlmsgHdrLen:])
	if s := parseStats(as); s != (Stats{Bytes: 1000, Packets: 10, Drops: 2, Overlimits: 5}) {
		t.Errorf("legacy stats %+v", s)
	}
	basic := make([]byte, gnetBasicLen)
	native.PutUint64(basic, 1<<33)
	native.PutUint32(basic[8:], 7)
	queue := make([]byte, gnetQueueLen)
	native.PutUint32(queue[8:], 11)  // drops
	native.PutUint32(queue[16:], 13) // overlimits
	m = newMsg(0, 0, nil)
	m.begin(unix.TCA_STATS2)
	m.attr(tcaStatsBasic, basic)
	m.attrU64(tcaStatsPkt64, 1<<32+7)
	m.attr(tcaStatsQueue, queue)
	m.end()
	m.attr(unix.TCA_STATS, legacy) // ignored when STATS2 is there
	as, _ = parseAttrs(m.b[nlmsgHdrLen:])
	if s := parseStats(as); s != (Stats{Bytes: 1 << 33, Packets: 1<<32 + 7, Drops: 11, Overlimits: 13}) {
		t.Errorf("stats2 %+v", s)
	}
}

func TestParseClassesTree(t *testing.T) {
	mk := func(minor uint16, parent uint32) message {
		return message{Type: unix.RTM_NEWTCLASS, Data: tcmsg(5, handle(minor), parent, 0)}
	}
	cs := parseClasses(5, []message{
		mk(RootMinor, tcHRoot), mk(DefaultMinor, handle(RootMinor)),
		mk(0x10, handle(RootMinor)), mk(0x11, handle(0x10)),
		{Type: unix.RTM_NEWTCLASS, Data: tcmsg(5, 0x20001, tcHRoot, 0)}, // another qdisc's class
	})
	want := map[uint16]ClassInfo{
		RootMinor:    {Parent: 0, Leaf: false},
		DefaultMinor: {Parent: RootMinor, Leaf: true},
		0x10:         {Parent: RootMinor, Leaf: false},
		0x11:         {Parent: 0x10, Leaf: true},
	}
	if len(cs) != len(want) {
		t.Fatalf("%+v", cs)
	}
	for k, w := range want {
		if cs[k] != w {
			t.Errorf("1:%x = %+v, want %+v", k, cs[k], w)
		}
	}
}

func TestParseAck(t *testing.T) {
	ok := make([]byte, 4+nlmsgHdrLen)
	if err := parseAck(0, ok, false); err != nil {
		t.Errorf("ack: %v", err)
	}
	// error -ENOENT, capped echo of the request header, NLMSGERR_ATTR_MSG.
	m := newMsg(0, 0, nil)
	m.b = m.b[:0]
	var e [4]byte
	native.PutUint32(e[:], uint32(0xfffffffe))
	m.b = append(m.b, e[:]...)
	m.b = append(m.b, newMsg(unix.RTM_NEWTCLASS, 0, nil).finish(1)...)
	m.attrString(unix.NLMSGERR_ATTR_MSG, "Specified class not found")
	err := parseAck(nlmFCapped|nlmFAckTLVs, m.b, false)
	if !errors.Is(err, unix.ENOENT) || err.Error() != "no such file or directory (Specified class not found)" {
		t.Errorf("capped: %v", err)
	}
	// Uncapped: the echoed request (with a body) precedes the attributes.
	m2 := newMsg(0, 0, nil)
	m2.b = append(m2.b[:0], e[:]...)
	m2.b = append(m2.b, newMsg(unix.RTM_NEWTCLASS, 0, tcmsg(1, 2, 3, 4)).finish(1)...)
	m2.attrString(unix.NLMSGERR_ATTR_MSG, "x")
	if err := parseAck(nlmFAckTLVs, m2.b, false); !errors.Is(err, unix.ENOENT) || err.Error() != "no such file or directory (x)" {
		t.Errorf("uncapped: %v", err)
	}
	if err := parseAck(0, e[:], true); !errors.Is(err, unix.ENOENT) {
		t.Errorf("done: %v", err)
	}
	if err := parseAck(0, nil, true); err != nil {
		t.Errorf("empty done: %v", err)
	}
	if err := parseAck(0, []byte{1}, false); err == nil {
		t.Error("short error accepted")
	}
	wrapped := opErr("set class 1:10", 3, err)
	if !errors.Is(wrapped, unix.ENOENT) {
		t.Errorf("errno lost in %v", wrapped)
	}
}

func TestParseLink(t *testing.T) {
	body := make([]byte, ifinfoLen)
	native.PutUint32(body[4:], 4)
	native.PutUint32(body[8:], unix.IFF_UP|unix.IFF_BROADCAST)
	m := newMsg(unix.RTM_NEWLINK, 0, body)
	m.attrString(unix.IFLA_IFNAME, "veth0")
	m.begin(unix.IFLA_LINKINFO | nlaFNested)
	m.attrString(unix.IFLA_INFO_KIND, "veth")
	m.end()
	l, ok := parseLink(m.b[nlmsgHdrLen:])
	if !ok || l != (Link{Index: 4, Name: "veth0", Up: true, Kind: "veth"}) {
		t.Errorf("%+v %v", l, ok)
	}
}

func TestBPFProgram(t *testing.T) {
	want := "8500000011000000" + "9500000000000000" // call bpf_get_cgroup_classid; exit
	if got := hex.EncodeToString(classidProg()); got != want {
		t.Errorf("program %s, want %s", got, want)
	}
	if unsafe.Sizeof(bpfProgLoadAttr{}) != bpfProgLoadAttrLen {
		t.Errorf("bpf_attr prefix is %d bytes", unsafe.Sizeof(bpfProgLoadAttr{}))
	}
	if filterInfo() != 10<<16|0x0300 {
		t.Errorf("tcm_info %#x", filterInfo())
	}
	if handle(FirstMinor) != 0x10010 {
		t.Errorf("handle(FirstMinor) %#x", handle(FirstMinor))
	}
}
