package netsched

import (
	"bufio"
	"fmt"
	"math"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// Constants from linux/pkt_sched.h, linux/pkt_cls.h and linux/gen_stats.h
// (kernel 6.18 uapi). x/sys/unix has the TCA_* top-level ones only.
const (
	tcHRoot = 0xFFFFFFFF // TC_H_ROOT

	tcLinklayerEthernet = 1 // TC_LINKLAYER_ETHERNET
	tcHtbProtover       = 3 // TC_HTB_PROTOVER
	tcHtbNumPrio        = 8 // TC_HTB_NUMPRIO

	tcaHtbParms      = 1 // TCA_HTB_PARMS
	tcaHtbInit       = 2 // TCA_HTB_INIT
	tcaHtbDirectQlen = 5 // TCA_HTB_DIRECT_QLEN
	tcaHtbRate64     = 6 // TCA_HTB_RATE64
	tcaHtbCeil64     = 7 // TCA_HTB_CEIL64

	tcaBpfClassid = 3 // TCA_BPF_CLASSID
	tcaBpfFd      = 6 // TCA_BPF_FD
	tcaBpfName    = 7 // TCA_BPF_NAME
	tcaBpfFlags   = 8 // TCA_BPF_FLAGS

	tcaStatsBasic = 1 // TCA_STATS_BASIC
	tcaStatsQueue = 3 // TCA_STATS_QUEUE
	tcaStatsPkt64 = 8 // TCA_STATS_PKT64

	tcRatespecLen = 12 // struct tc_ratespec
	tcHtbOptLen   = 44 // struct tc_htb_opt
	tcHtbGlobLen  = 20 // struct tc_htb_glob
	gnetBasicLen  = 16 // struct gnet_stats_basic (u64 + u32, padded to 8)
	gnetQueueLen  = 20 // struct gnet_stats_queue
	tcStatsLen    = 36 // struct tc_stats without its tail padding
)

// MaxRate is the rate, in bytes/s, that stands for "unlimited": 2^40-1
// (about 8.8 Tbit/s). It is far above any NIC and well inside what HTB
// accepts (it takes 64-bit rates through TCA_HTB_RATE64/TCA_HTB_CEIL64 and
// precomputes a multiplier that stays non-zero at this rate).
const MaxRate uint64 = 0xffffffffff

// minRate is what a Class.Rate of 0 becomes: HTB refuses a zero rate, and
// 1 byte/s is the smallest it takes. Such a class gets no guarantee worth
// speaking of and lives on what it borrows up to its ceil.
const minRate uint64 = 1

const (
	minBurst   = 32 << 10 // bytes; burst = max(rate/100, minBurst)
	minQuantum = 1600     // bytes; a full Ethernet frame and some
	maxQuantum = 200000   // HTB's own upper bound before it warns
)

// handle returns the tc handle 1:minor.
func handle(minor uint16) uint32 { return Major<<16 | uint32(minor) }

// tcmsg encodes struct tcmsg {u8 family, pad, u16 pad; s32 ifindex;
// u32 handle, parent, info}.
func tcmsg(ifindex int, h, parent, info uint32) []byte {
	b := make([]byte, tcmsgLen)
	b[0] = 0 // AF_UNSPEC
	native.PutUint32(b[4:], uint32(int32(ifindex)))
	native.PutUint32(b[8:], h)
	native.PutUint32(b[12:], parent)
	native.PutUint32(b[16:], info)
	return b
}

type tcHeader struct {
	Ifindex int
	Handle  uint32
	Parent  uint32
	Info    uint32
}

func parseTcmsg(b []byte) (tcHeader, []attr, error) {
	if len(b) < tcmsgLen {
		return tcHeader{}, nil, errMalformed
	}
	h := tcHeader{
		Ifindex: int(int32(native.Uint32(b[4:]))),
		Handle:  native.Uint32(b[8:]),
		Parent:  native.Uint32(b[12:]),
		Info:    native.Uint32(b[16:]),
	}
	as, err := parseAttrs(b[tcmsgLen:])
	return h, as, err
}

// putRatespec encodes struct tc_ratespec {u8 cell_log; u8 linklayer;
// u16 overhead; s16 cell_align; u16 mpu; u32 rate}. With the linklayer set
// the kernel computes transmission times itself and wants no rate table.
func putRatespec(b []byte, rate uint64) {
	b[0] = 0
	b[1] = tcLinklayerEthernet
	native.PutUint16(b[2:], 0)
	native.PutUint16(b[4:], 0)
	native.PutUint16(b[6:], 0)
	r := uint32(math.MaxUint32)
	if rate < math.MaxUint32 {
		r = uint32(rate)
	}
	native.PutUint32(b[8:], r)
}

// htbOpt encodes struct tc_htb_opt {tc_ratespec rate, ceil; u32 buffer,
// cbuffer, quantum, level, prio}.
func htbOpt(rate, ceil uint64, buffer, cbuffer, quantum, prio uint32) []byte {
	b := make([]byte, tcHtbOptLen)
	putRatespec(b[0:], rate)
	putRatespec(b[12:], ceil)
	native.PutUint32(b[24:], buffer)
	native.PutUint32(b[28:], cbuffer)
	native.PutUint32(b[32:], quantum)
	native.PutUint32(b[36:], 0) // level: out only
	native.PutUint32(b[40:], prio)
	return b
}

// htbGlob encodes struct tc_htb_glob {u32 version, rate2quantum, defcls,
// debug, direct_pkts}.
func htbGlob(defcls uint32) []byte {
	b := make([]byte, tcHtbGlobLen)
	native.PutUint32(b[0:], tcHtbProtover)
	native.PutUint32(b[4:], 10) // rate2quantum, tc's default
	native.PutUint32(b[8:], defcls)
	return b
}

// ticksPerUsec is the psched tick rate, as iproute2's tc_core_init derives it
// from /proc/net/psched; every kernel since 2.6.24 says 1000/64 = 15.625.
var ticksPerUsec = sync.OnceValue(func() float64 {
	const dflt = 1000.0 / 64
	f, err := os.Open("/proc/net/psched")
	if err != nil {
		return dflt
	}
	defer f.Close()
	var t2us, us2t, clockRes uint32
	if _, err := fmt.Fscanf(bufio.NewReader(f), "%08x%08x%08x", &t2us, &us2t, &clockRes); err != nil {
		return dflt
	}
	return psched(t2us, us2t, clockRes, dflt)
})

func psched(t2us, us2t, clockRes uint32, dflt float64) float64 {
	if us2t == 0 || clockRes == 0 {
		return dflt
	}
	if clockRes == 1000000000 {
		t2us = us2t // iproute2's compatibility hack
	}
	clockFactor := float64(clockRes) / 1e6
	return float64(t2us) / float64(us2t) * clockFactor
}

// xmitTicks is tc_calc_xmittime: the psched ticks it takes to send size
// bytes at rate bytes/s, saturated at the u32 the kernel takes.
func xmitTicks(rate, size uint64, tpu float64) uint32 {
	if rate == 0 {
		return math.MaxUint32
	}
	t := 1e6 * float64(size) / float64(rate) * tpu
	if t >= math.MaxUint32 {
		return math.MaxUint32
	}
	return uint32(t)
}

func burstFor(rate uint64) uint64 {
	return max(rate/100, minBurst)
}

// classOptions encodes TCA_OPTIONS for a class: what tc class add ... htb
// rate R ceil C burst B cburst CB quantum Q prio P would send.
func classOptions(m *msgBuilder, c Class) {
	rate, ceil := normRates(c)
	tpu := ticksPerUsec()
	quantum := uint32(min(max(rate/10, minQuantum), maxQuantum))
	prio := min(c.Prio, tcHtbNumPrio-1)
	m.begin(unix.TCA_OPTIONS)
	m.attr(tcaHtbParms, htbOpt(rate, ceil,
		xmitTicks(rate, burstFor(rate), tpu),
		xmitTicks(ceil, burstFor(ceil), tpu),
		quantum, prio))
	if rate >= math.MaxUint32 {
		m.attrU64(tcaHtbRate64, rate)
	}
	if ceil >= math.MaxUint32 {
		m.attrU64(tcaHtbCeil64, ceil)
	}
	m.end()
}

// normRates applies the documented defaults: Rate 0 = minRate, Ceil 0 =
// MaxRate, both capped at MaxRate, and the ceil never below the rate.
func normRates(c Class) (rate, ceil uint64) {
	rate, ceil = c.Rate, c.Ceil
	if rate == 0 {
		rate = minRate
	}
	if ceil == 0 {
		ceil = MaxRate
	}
	rate = min(rate, MaxRate)
	ceil = min(ceil, MaxRate)
	ceil = max(ceil, rate)
	return rate, ceil
}

// parseStats reads a class's counters: TCA_STATS2 {TCA_STATS_BASIC,
// TCA_STATS_PKT64, TCA_STATS_QUEUE} when present, else legacy TCA_STATS.
func parseStats(as []attr) Stats {
	var s Stats
	if b, ok := find(as, unix.TCA_STATS2); ok {
		nested, _ := parseAttrs(b)
		if d, ok := find(nested, tcaStatsBasic); ok && len(d) >= 12 {
			s.Bytes = native.Uint64(d[0:])
			s.Packets = uint64(native.Uint32(d[8:]))
		}
		if d, ok := find(nested, tcaStatsPkt64); ok && len(d) >= 8 {
			s.Packets = native.Uint64(d)
		}
		if d, ok := find(nested, tcaStatsQueue); ok && len(d) >= gnetQueueLen {
			s.Drops = uint64(native.Uint32(d[8:]))
			s.Overlimits = uint64(native.Uint32(d[16:]))
		}
		return s
	}
	if d, ok := find(as, unix.TCA_STATS); ok && len(d) >= 20 {
		// struct tc_stats {u64 bytes; u32 packets, drops, overlimits, ...}
		s.Bytes = native.Uint64(d[0:])
		s.Packets = uint64(native.Uint32(d[8:]))
		s.Drops = uint64(native.Uint32(d[12:]))
		s.Overlimits = uint64(native.Uint32(d[16:]))
	}
	return s
}

// htbParms reads TCA_OPTIONS {TCA_HTB_PARMS, TCA_HTB_RATE64, TCA_HTB_CEIL64}
// of a class dump.
type htbParms struct {
	Rate, Ceil uint64
	Buffer     uint32
	Cbuffer    uint32
	Quantum    uint32
	Level      uint32
	Prio       uint32
}

func parseHtbParms(opts []byte) (htbParms, bool) {
	as, _ := parseAttrs(opts)
	d, ok := find(as, tcaHtbParms)
	if !ok || len(d) < tcHtbOptLen {
		return htbParms{}, false
	}
	p := htbParms{
		Rate:    uint64(native.Uint32(d[8:])),
		Ceil:    uint64(native.Uint32(d[20:])),
		Buffer:  native.Uint32(d[24:]),
		Cbuffer: native.Uint32(d[28:]),
		Quantum: native.Uint32(d[32:]),
		Level:   native.Uint32(d[36:]),
		Prio:    native.Uint32(d[40:]),
	}
	if r, ok := find(as, tcaHtbRate64); ok && len(r) >= 8 {
		p.Rate = native.Uint64(r)
	}
	if r, ok := find(as, tcaHtbCeil64); ok && len(r) >= 8 {
		p.Ceil = native.Uint64(r)
	}
	return p, true
}
