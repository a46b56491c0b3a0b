package netsched

import (
	"errors"
	"fmt"
	"sort"

	"golang.org/x/sys/unix"
)

const (
	Major        = 1    // every handle is 1:<minor>
	RootMinor    = 1    // class 1:1, parent of every other class, rate = ceil = MaxRate
	DefaultMinor = 2    // class 1:2 under 1:1: traffic no container claims (the host's own)
	FirstMinor   = 0x10 // the first minor the caller may use for its classes
)

// Link is a network device of the Sched's namespace.
type Link struct {
	Index    int
	Name     string
	Up       bool   // IFF_UP
	Loopback bool   // IFF_LOOPBACK
	Kind     string // IFLA_LINKINFO/IFLA_INFO_KIND ("veth", "bridge", "dummy", ...); "" for a physical device
}

// Class is an HTB class 1:Minor.
type Class struct {
	Minor  uint16
	Parent uint16 // minor of the parent class; RootMinor for a top-level one (0: directly under the qdisc, as 1:1 is)
	Rate   uint64 // guaranteed bytes/s; 0 means the minimal rate HTB takes, 1 byte/s
	Ceil   uint64 // bytes/s; 0 = unlimited (MaxRate); a ceil below the rate is raised to the rate
	Prio   uint32 // 0..7, HTB prio (lower = more priority); above 7 is 7
}

// Stats are a class's counters since it was created.
type Stats struct{ Bytes, Packets, Drops, Overlimits uint64 }

// ClassInfo is what Classes reports for one class.
type ClassInfo struct {
	Parent uint16 // minor of the parent class; 0 for 1:1 (its parent is the qdisc)
	Leaf   bool   // no child classes
	Stats  Stats
	// Rate, Ceil (bytes/s) and Prio as the kernel reports them.
	Rate, Ceil uint64
	Prio       uint32
}

// Sched is an rtnetlink socket in the network namespace of the thread that
// called Open. Safe for concurrent use (one mutex around each request/reply).
type Sched struct {
	c *conn
}

// Open opens the rtnetlink socket. The socket stays in the network namespace
// of the calling thread whatever thread uses it later.
func Open() (*Sched, error) {
	c, err := dial()
	if err != nil {
		return nil, err
	}
	return &Sched{c: c}, nil
}

// Close closes the socket; the Sched is unusable afterwards.
func (s *Sched) Close() error { return s.c.close() }

func opErr(op string, ifindex int, err error) error {
	return fmt.Errorf("netsched: %s dev %d: %w", op, ifindex, err)
}

// Links lists the namespace's network devices, by index.
func (s *Sched) Links() ([]Link, error) {
	body := make([]byte, ifinfoLen) // struct ifinfomsg, AF_UNSPEC: every link
	msgs, err := s.c.dump(unix.RTM_GETLINK, body, nil)
	if err != nil {
		return nil, fmt.Errorf("netsched: list links: %w", err)
	}
	var out []Link
	for _, m := range msgs {
		if m.Type != unix.RTM_NEWLINK {
			continue
		}
		if l, ok := parseLink(m.Data); ok {
			out = append(out, l)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Index < out[j].Index })
	return out, nil
}

// parseLink decodes struct ifinfomsg {u8 family, pad; u16 type; s32 index;
// u32 flags, change} and the IFLA_IFNAME and IFLA_LINKINFO attributes.
func parseLink(b []byte) (Link, bool) {
	if len(b) < ifinfoLen {
		return Link{}, false
	}
	flags := native.Uint32(b[8:])
	l := Link{
		Index:    int(int32(native.Uint32(b[4:]))),
		Up:       flags&unix.IFF_UP != 0,
		Loopback: flags&unix.IFF_LOOPBACK != 0,
	}
	as, _ := parseAttrs(b[ifinfoLen:])
	if d, ok := find(as, unix.IFLA_IFNAME); ok {
		l.Name = cString(d)
	}
	if d, ok := find(as, unix.IFLA_LINKINFO); ok {
		info, _ := parseAttrs(d)
		if k, ok := find(info, unix.IFLA_INFO_KIND); ok {
			l.Kind = cString(k)
		}
	}
	return l, true
}

// rootQdisc returns the kind and handle of ifindex's root qdisc ("" when the
// dump shows none).
func (s *Sched) rootQdisc(ifindex int) (kind string, h uint32, err error) {
	msgs, err := s.c.dump(unix.RTM_GETQDISC, tcmsg(0, 0, 0, 0), nil)
	if err != nil {
		return "", 0, err
	}
	for _, m := range msgs {
		if m.Type != unix.RTM_NEWQDISC {
			continue
		}
		hdr, as, _ := parseTcmsg(m.Data)
		if hdr.Ifindex != ifindex || hdr.Parent != tcHRoot {
			continue
		}
		k, _ := find(as, unix.TCA_KIND)
		return cString(k), hdr.Handle, nil
	}
	if err := s.linkExists(ifindex); err != nil {
		return "", 0, err
	}
	return "", 0, nil
}

func (s *Sched) linkExists(ifindex int) error {
	body := make([]byte, ifinfoLen)
	native.PutUint32(body[4:], uint32(int32(ifindex)))
	_, err := s.c.do(newMsg(unix.RTM_GETLINK, unix.NLM_F_REQUEST, body))
	return err
}

// Owned reports whether ifindex's root qdisc is an HTB with handle 1:0 (what
// Setup leaves).
func (s *Sched) Owned(ifindex int) (bool, error) {
	kind, h, err := s.rootQdisc(ifindex)
	if err != nil {
		return false, opErr("get root qdisc", ifindex, err)
	}
	return kind == "htb" && h == handle(0), nil
}

// Setup makes ifindex's root qdisc porto's: HTB handle 1:0 with default minor
// DefaultMinor, class 1:1, class 1:2 under it, and the BPF classifier filter
// at parent 1:0. An HTB root qdisc with handle 1:0 that is already there is
// kept with its classes and counters (a daemon restart must not reset them),
// and only the missing pieces (1:1, 1:2, the filter) are added. Any other
// root qdisc is replaced.
func (s *Sched) Setup(ifindex int) error {
	kind, h, err := s.rootQdisc(ifindex)
	if err != nil {
		return opErr("get root qdisc", ifindex, err)
	}
	if kind != "htb" || h != handle(0) {
		if h != 0 {
			// Deleting first: the kernel refuses to replace a qdisc of
			// another kind in place under the same handle.
			if err := s.deleteRoot(ifindex); err != nil {
				return err
			}
		}
		m := newMsg(unix.RTM_NEWQDISC, unix.NLM_F_REQUEST|unix.NLM_F_CREATE|unix.NLM_F_EXCL,
			tcmsg(ifindex, handle(0), tcHRoot, 0))
		m.attrString(unix.TCA_KIND, "htb")
		m.begin(unix.TCA_OPTIONS)
		m.attr(tcaHtbInit, htbGlob(DefaultMinor))
		m.end()
		if _, err := s.c.do(m); err != nil {
			return opErr("add htb root qdisc", ifindex, err)
		}
	}
	classes, err := s.Classes(ifindex)
	if err != nil {
		return err
	}
	if _, ok := classes[RootMinor]; !ok {
		if err := s.SetClass(ifindex, Class{Minor: RootMinor, Parent: 0, Rate: MaxRate, Ceil: MaxRate}); err != nil {
			return err
		}
	}
	if _, ok := classes[DefaultMinor]; !ok {
		if err := s.SetClass(ifindex, Class{Minor: DefaultMinor, Parent: RootMinor}); err != nil {
			return err
		}
	}
	return s.ensureFilter(ifindex)
}

// ensureFilter adds the classifier at parent 1:0 unless it is there.
// Another filter holding its prio is deleted first.
func (s *Sched) ensureFilter(ifindex int) error {
	msgs, err := s.c.dump(unix.RTM_GETTFILTER, tcmsg(ifindex, 0, handle(0), 0), nil)
	if err != nil {
		return opErr("list filters", ifindex, err)
	}
	var stale []uint32 // tcm_info of other filters at our prio
	for _, m := range msgs {
		if m.Type != unix.RTM_NEWTFILTER {
			continue
		}
		hdr, as, _ := parseTcmsg(m.Data)
		if hdr.Ifindex != ifindex || hdr.Parent != handle(0) || hdr.Info>>16 != filterPrio {
			continue
		}
		if isOurFilter(hdr, as) {
			return nil
		}
		stale = append(stale, hdr.Info)
	}
	for _, info := range stale {
		m := newMsg(unix.RTM_DELTFILTER, unix.NLM_F_REQUEST, tcmsg(ifindex, 0, handle(0), info))
		if _, err := s.c.do(m); err != nil && !errors.Is(err, unix.ENOENT) {
			return opErr("delete filter", ifindex, err)
		}
	}
	fd, err := loadClassidProg()
	if err != nil {
		return opErr("add filter", ifindex, err)
	}
	defer unix.Close(fd) // the filter holds its own reference
	m := newMsg(unix.RTM_NEWTFILTER, unix.NLM_F_REQUEST|unix.NLM_F_CREATE|unix.NLM_F_EXCL,
		tcmsg(ifindex, filterHandle, handle(0), filterInfo()))
	filterOptions(m, fd)
	if _, err := s.c.do(m); err != nil {
		return opErr("add filter", ifindex, err)
	}
	return nil
}

// filterInfo is tcm_info of the filter: prio in the upper 16 bits, the
// protocol (ETH_P_ALL) in network byte order in the lower.
func filterInfo() uint32 {
	return filterPrio<<16 | uint32(htons(unix.ETH_P_ALL))
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// filterOptions encodes kind "bpf" and TCA_OPTIONS {TCA_BPF_FD,
// TCA_BPF_NAME}; no TCA_BPF_FLAGS, so the program's return value is the
// classid (not direct-action).
func filterOptions(m *msgBuilder, fd int) {
	m.attrString(unix.TCA_KIND, "bpf")
	m.begin(unix.TCA_OPTIONS)
	m.attrU32(tcaBpfFd, uint32(fd))
	m.attrString(tcaBpfName, filterName)
	m.end()
}

func isOurFilter(hdr tcHeader, as []attr) bool {
	if hdr.Info != filterInfo() {
		return false
	}
	if k, _ := find(as, unix.TCA_KIND); cString(k) != "bpf" {
		return false
	}
	opts, ok := find(as, unix.TCA_OPTIONS)
	if !ok {
		return false
	}
	o, _ := parseAttrs(opts)
	if f, ok := find(o, tcaBpfFlags); ok && len(f) >= 4 && native.Uint32(f) != 0 {
		return false // direct-action: not ours
	}
	n, ok := find(o, tcaBpfName)
	return ok && cString(n) == filterName
}

func (s *Sched) deleteRoot(ifindex int) error {
	m := newMsg(unix.RTM_DELQDISC, unix.NLM_F_REQUEST, tcmsg(ifindex, 0, tcHRoot, 0))
	_, err := s.c.do(m)
	if err != nil && !errors.Is(err, unix.ENOENT) {
		return opErr("delete root qdisc", ifindex, err)
	}
	return nil
}

// Teardown deletes ifindex's root qdisc (the kernel puts its default back);
// no error when it is already default.
func (s *Sched) Teardown(ifindex int) error {
	// The kernel answers ENOENT ("Cannot delete qdisc with handle of
	// zero") for a default root qdisc, and ENODEV for a missing device.
	return s.deleteRoot(ifindex)
}

// SetClass creates the class or changes it in place (counters kept). The
// parent must exist (else an error wrapping ENOENT); a class cannot move to
// another parent (the kernel refuses). Parent 0 puts the class directly under
// the qdisc, as 1:1 is; callers use RootMinor.
func (s *Sched) SetClass(ifindex int, c Class) error {
	if c.Minor == 0 {
		return opErr("set class", ifindex, fmt.Errorf("class minor 0: %w", unix.EINVAL))
	}
	if c.Parent != 0 {
		// HTB itself would make a class with an unknown parent a
		// top-level one; refuse instead.
		get := newMsg(unix.RTM_GETTCLASS, unix.NLM_F_REQUEST, tcmsg(ifindex, handle(c.Parent), 0, 0))
		if _, err := s.c.do(get); err != nil {
			return opErr(fmt.Sprintf("set class 1:%x: parent 1:%x", c.Minor, c.Parent), ifindex, err)
		}
	}
	m := newMsg(unix.RTM_NEWTCLASS, unix.NLM_F_REQUEST|unix.NLM_F_CREATE,
		tcmsg(ifindex, handle(c.Minor), handle(c.Parent), 0))
	m.attrString(unix.TCA_KIND, "htb")
	classOptions(m, c)
	if _, err := s.c.do(m); err != nil {
		return opErr(fmt.Sprintf("set class 1:%x", c.Minor), ifindex, err)
	}
	return nil
}

// DeleteClass deletes 1:minor; a missing class is not an error. A class with
// children fails (EBUSY; the caller deletes children first).
func (s *Sched) DeleteClass(ifindex int, minor uint16) error {
	m := newMsg(unix.RTM_DELTCLASS, unix.NLM_F_REQUEST, tcmsg(ifindex, handle(minor), 0, 0))
	if _, err := s.c.do(m); err != nil && !errors.Is(err, unix.ENOENT) {
		return opErr(fmt.Sprintf("delete class 1:%x", minor), ifindex, err)
	}
	return nil
}

// Classes dumps every class of ifindex's root qdisc, by minor.
func (s *Sched) Classes(ifindex int) (map[uint16]ClassInfo, error) {
	msgs, err := s.c.dump(unix.RTM_GETTCLASS, tcmsg(ifindex, 0, 0, 0), nil)
	if err != nil {
		return nil, opErr("list classes", ifindex, err)
	}
	return parseClasses(ifindex, msgs), nil
}

func parseClasses(ifindex int, msgs []message) map[uint16]ClassInfo {
	out := make(map[uint16]ClassInfo)
	for _, m := range msgs {
		if m.Type != unix.RTM_NEWTCLASS {
			continue
		}
		hdr, as, _ := parseTcmsg(m.Data)
		if hdr.Ifindex != ifindex || hdr.Handle>>16 != Major || hdr.Handle&0xffff == 0 {
			continue
		}
		ci := ClassInfo{Leaf: true, Stats: parseStats(as)}
		if hdr.Parent != tcHRoot && hdr.Parent>>16 == Major {
			ci.Parent = uint16(hdr.Parent)
		}
		if opts, ok := find(as, unix.TCA_OPTIONS); ok {
			if p, ok := parseHtbParms(opts); ok {
				ci.Rate, ci.Ceil, ci.Prio = p.Rate, p.Ceil, p.Prio
			}
		}
		out[uint16(hdr.Handle)] = ci
	}
	for _, ci := range out {
		if ci.Parent == 0 {
			continue
		}
		if p, ok := out[ci.Parent]; ok {
			p.Leaf = false
			out[ci.Parent] = p
		}
	}
	return out
}
