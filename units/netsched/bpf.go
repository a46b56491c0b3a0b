package netsched

import (
	"fmt"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The classifier: r0 = bpf_get_cgroup_classid(skb); return r0.
// Each instruction is struct bpf_insn {u8 code; u8 dst_reg:4, src_reg:4;
// s16 off; s32 imm}.
const (
	bpfJmp  = 0x05 // BPF_JMP
	bpfCall = 0x80 // BPF_CALL
	bpfExit = 0x90 // BPF_EXIT

	bpfFuncGetCgroupClassid = 17 // BPF_FUNC_get_cgroup_classid

	bpfProgLoad                = 5 // BPF_PROG_LOAD
	bpfProgTypeSchedCls        = 3 // BPF_PROG_TYPE_SCHED_CLS
	bpfInsnLen                 = 8
	bpfProgLoadAttrLen         = 64 // through prog_name
	filterName                 = "porto_classid"
	filterPrio          uint32 = 10
	filterHandle        uint32 = 1
)

func bpfInsn(code uint8, dst, src uint8, off int16, imm int32) []byte {
	b := make([]byte, bpfInsnLen)
	b[0] = code
	b[1] = dst&0x0f | src<<4
	native.PutUint16(b[2:], uint16(off))
	native.PutUint32(b[4:], uint32(imm))
	return b
}

// classidProg returns the program's bytes.
func classidProg() []byte {
	p := bpfInsn(bpfJmp|bpfCall, 0, 0, 0, bpfFuncGetCgroupClassid)
	return append(p, bpfInsn(bpfJmp|bpfExit, 0, 0, 0, 0)...)
}

// bpfProgLoadAttr is the BPF_PROG_LOAD part of union bpf_attr, up to and
// including prog_name; the kernel zero-fills the rest.
type bpfProgLoadAttr struct {
	ProgType    uint32
	InsnCnt     uint32
	Insns       uint64
	License     uint64
	LogLevel    uint32
	LogSize     uint32
	LogBuf      uint64
	KernVersion uint32
	ProgFlags   uint32
	ProgName    [16]byte
}

// loadClassidProg loads the classifier and returns its fd. On failure it
// retries once with the verifier log to put the reason in the error.
func loadClassidProg() (int, error) {
	insns := classidProg()
	license := []byte("GPL\x00")
	fd, errno := bpfLoad(insns, license, nil)
	if errno == 0 {
		return fd, nil
	}
	log := make([]byte, 4096)
	if _, errno2 := bpfLoad(insns, license, log); errno2 != 0 {
		if msg := cString(log); msg != "" {
			return -1, fmt.Errorf("netsched: bpf prog load: %w (verifier: %s)", errno, msg)
		}
	}
	return -1, fmt.Errorf("netsched: bpf prog load: %w", errno)
}

func bpfLoad(insns, license, log []byte) (int, unix.Errno) {
	a := bpfProgLoadAttr{
		ProgType: bpfProgTypeSchedCls,
		InsnCnt:  uint32(len(insns) / bpfInsnLen),
		Insns:    uint64(uintptr(unsafe.Pointer(&insns[0]))),
		License:  uint64(uintptr(unsafe.Pointer(&license[0]))),
	}
	copy(a.ProgName[:15], filterName)
	if len(log) > 0 {
		a.LogLevel = 1
		a.LogSize = uint32(len(log))
		a.LogBuf = uint64(uintptr(unsafe.Pointer(&log[0])))
	}
	fd, _, errno := unix.Syscall(unix.SYS_BPF, bpfProgLoad, uintptr(unsafe.Pointer(&a)), unsafe.Sizeof(a))
	runtime.KeepAlive(insns)
	runtime.KeepAlive(license)
	runtime.KeepAlive(log)
	if errno != 0 {
		return -1, errno
	}
	return int(fd), 0
}
