// Package netsched programs per-container network accounting and shaping
// the way Yandex Porto does: an HTB root qdisc on every managed host device,
// one HTB class per container, and traffic classified by the net_cls cgroup
// classid of the sending socket.
//
// The kernel this targets has sch_htb and cls_bpf but not cls_cgroup, so the
// classifier is a two-instruction cls_bpf program in classid (non
// direct-action) mode:
//
//	call bpf_get_cgroup_classid   // r1 already holds the skb
//	exit                          // r0 = the classid; 0 = no match
//
// A classid of 1:<minor> sends the packet to class 1:<minor>; 0 or a classid
// that names no leaf class of the qdisc falls back to HTB's default class
// 1:2 (DefaultMinor), which therefore accounts the host's own traffic.
//
// The tree that Setup leaves on a device:
//
//	qdisc htb 1:0 root default 2
//	  filter parent 1:0 protocol all prio 10 bpf "porto_classid"
//	  class 1:1  (RootMinor)    rate = ceil = MaxRate
//	    class 1:2  (DefaultMinor) rate minimal, ceil MaxRate
//	    class 1:<minor>, minor >= FirstMinor: the caller's (one per container)
//
// Limit (TestRootForwardedFromNetns): classification works for packets that
// processes of the namespace owning the shaped device send themselves. A
// packet sent from another network namespace through a veth and forwarded
// here has lost its socket (veth scrubs it when crossing namespaces) and is
// classified in softirq, so it gets classid 0 and lands in the default class
// whatever the sender's net_cls classid.
//
// The package owns exactly that: the root qdisc of the devices it is asked to
// Setup, their classes, and the one filter. It talks rtnetlink and bpf(2)
// directly through golang.org/x/sys/unix (no exec, no other dependency).
//
// Who imports it: cmd/portod wires a *Sched into service through an interface
// that service defines; netsched never imports service (or api).
package netsched
