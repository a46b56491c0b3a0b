package supervise

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/porto-dev/porto/isolation"
)

// Names shared with cmd/portod.
const (
	// WorkerCommand is argv[1] of the worker the master starts:
	// "Self __worker --supervisor-fd 3 <WorkerArgs...>".
	WorkerCommand = "__worker"
	// SupervisorFDFlag is the worker's flag naming its end of the socket
	// (always 3); cmd/portod passes its value to Dial.
	SupervisorFDFlag = "supervisor-fd"
	// TakeoverFlag is the hidden master flag a master adds when it
	// re-executes itself on SIGHUP ("--takeover=<token>"); cmd/portod passes
	// its value to RunMaster as MasterOptions.Takeover.
	TakeoverFlag = "takeover"
	// WorkerFD is the fd number of the socket in the worker.
	WorkerFD = 3
)

// Message operations (the "op" field).
const (
	opSpawn   = "spawn"   // worker -> master, with fds
	opAck     = "ack"     // worker -> master
	opSpawned = "spawned" // master -> worker, reply to spawn
	opExit    = "exit"    // master -> worker
	opWarm    = "warm"    // worker -> master: start N warm stages of Flags
	opWarmed  = "warmed"  // master -> worker: one warm stage (Pid, Flags) with its socket, or Error
)

const (
	maxMsg = 64 << 10 // largest datagram either side sends or accepts
	maxFDs = 16       // largest number of fds one spawn may carry
)

// message is one datagram. Unused fields are omitted.
type message struct {
	Op string `json:"op"`
	// ID matches a spawned reply to its spawn request.
	ID uint64 `json:"id,omitempty"`
	// Spec is the launch spec of a spawn request.
	Spec *isolation.LaunchSpec `json:"spec,omitempty"`
	// NFiles is the number of file slots of a spawn request. The fds
	// carried by SCM_RIGHTS fill, in order, the slots not listed in Nil.
	NFiles int   `json:"nfiles,omitempty"`
	Nil    []int `json:"nil,omitempty"`
	// Pid: spawned pid (spawned), exited pid (exit), acknowledged pid (ack).
	Pid int `json:"pid,omitempty"`
	// Status is the raw wait(2) status of an exit.
	Status int `json:"status,omitempty"`
	// Error and Errno describe a failed spawn.
	Error string `json:"error,omitempty"`
	Errno int    `json:"errno,omitempty"`
	// Flags and N: warm stages asked for (warm) or given (warmed).
	Flags uintptr `json:"flags,omitempty"`
	N     int     `json:"n,omitempty"`
	// Epoch is the worker's mount epoch when it asked for warm stages;
	// warmed echoes it.
	Epoch uint64 `json:"epoch,omitempty"`
}

// SpawnError is a failed Spawn as the supervisor reported it. Errno is the
// errno of the failed system call, when there was one; errors.Is(err,
// syscall.ENOENT) and the like work through Unwrap.
type SpawnError struct {
	Msg   string
	Errno syscall.Errno
}

func (e *SpawnError) Error() string { return e.Msg }

// Unwrap returns the errno, or nil.
func (e *SpawnError) Unwrap() error {
	if e.Errno == 0 {
		return nil
	}
	return e.Errno
}

// ErrLost is returned (wrapped) by Spawn and Ack once the connection to the
// master is gone.
var ErrLost = errors.New("supervisor connection lost")

// protoError is a malformed datagram (received, or refused before
// sending): the connection itself is still good.
type protoError struct {
	msg *message // what could be decoded, or nil
	err error
}

func (e *protoError) Error() string { return "supervisor protocol: " + e.err.Error() }

// encode renders m; it never fails for the types used here.
func encode(m *message) []byte {
	b, err := json.Marshal(m)
	if err != nil {
		// Unreachable: message holds only plain data.
		b, _ = json.Marshal(&message{Op: m.Op, ID: m.ID, Error: "encode: " + err.Error()})
	}
	return b
}

// spawnRequest builds a spawn datagram and the fds to send with it.
func spawnRequest(id uint64, spec isolation.LaunchSpec, files []*os.File) (*message, []int, error) {
	if len(files) > maxFDs {
		return nil, nil, fmt.Errorf("spawn: %d files, at most %d", len(files), maxFDs)
	}
	m := &message{Op: opSpawn, ID: id, Spec: &spec, NFiles: len(files)}
	var fds []int
	for i, f := range files {
		if f == nil {
			m.Nil = append(m.Nil, i)
			continue
		}
		fds = append(fds, int(f.Fd()))
	}
	return m, fds, nil
}

// spawnFiles lays the received fds out in the slots of a spawn request.
// On error the fds are closed.
func spawnFiles(m *message, got []*os.File) ([]*os.File, error) {
	if m.NFiles < 0 || m.NFiles > maxFDs || len(m.Nil) > m.NFiles || m.NFiles-len(m.Nil) != len(got) {
		closeFiles(got)
		return nil, fmt.Errorf("spawn: %d fds received for %d slots (%d nil)", len(got), m.NFiles, len(m.Nil))
	}
	files := make([]*os.File, m.NFiles)
	hole := make(map[int]bool, len(m.Nil))
	for _, i := range m.Nil {
		if i < 0 || i >= m.NFiles || hole[i] {
			closeFiles(got)
			return nil, fmt.Errorf("spawn: bad nil slot %d", i)
		}
		hole[i] = true
	}
	j := 0
	for i := range files {
		if !hole[i] {
			files[i] = got[j]
			j++
		}
	}
	return files, nil
}

func closeFiles(files []*os.File) {
	for _, f := range files {
		if f != nil {
			f.Close()
		}
	}
}

// writeMsg sends one datagram, with fds as SCM_RIGHTS when there are any.
func writeMsg(c *net.UnixConn, m *message, fds []int) error {
	b := encode(m)
	if len(b) > maxMsg {
		return &protoError{msg: m, err: fmt.Errorf("message of %d bytes is too large", len(b))}
	}
	var oob []byte
	if len(fds) > 0 {
		oob = unix.UnixRights(fds...)
	}
	_, _, err := c.WriteMsgUnix(b, oob, nil)
	return err
}

// readMsg receives one datagram. buf must hold maxMsg bytes and oob
// oobSize bytes. Received fds come back as close-on-exec files. A
// *protoError means the datagram was bad but the connection is usable;
// io.EOF means the peer closed it.
func readMsg(c *net.UnixConn, buf, oob []byte) (*message, []*os.File, error) {
	n, oobn, flags, _, err := c.ReadMsgUnix(buf, oob)
	if err != nil {
		return nil, nil, err
	}
	files, cerr := parseRights(oob[:oobn])
	if n == 0 && oobn == 0 {
		return nil, nil, io.EOF
	}
	if flags&(unix.MSG_TRUNC|unix.MSG_CTRUNC) != 0 {
		closeFiles(files)
		return nil, nil, &protoError{err: fmt.Errorf("truncated datagram (flags %#x)", flags)}
	}
	m := new(message)
	if err := json.Unmarshal(buf[:n], m); err != nil {
		closeFiles(files)
		return nil, nil, &protoError{err: err}
	}
	if cerr != nil {
		closeFiles(files)
		return nil, nil, &protoError{msg: m, err: cerr}
	}
	return m, files, nil
}

var oobSize = unix.CmsgSpace(maxFDs * 4)

func parseRights(oob []byte) ([]*os.File, error) {
	if len(oob) == 0 {
		return nil, nil
	}
	scms, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil, fmt.Errorf("control message: %w", err)
	}
	var files []*os.File
	var ferr error
	for i := range scms {
		fds, err := unix.ParseUnixRights(&scms[i])
		if err != nil {
			ferr = fmt.Errorf("control message: %w", err)
			continue
		}
		for _, fd := range fds {
			unix.CloseOnExec(fd) // MSG_CMSG_CLOEXEC already; be sure
			files = append(files, os.NewFile(uintptr(fd), "scm-rights"))
		}
	}
	return files, ferr
}

// errnoOf returns the errno in err's chain, or 0.
func errnoOf(err error) syscall.Errno {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return errno
	}
	return 0
}

// ParseWorkerArgs takes the supervisor's flag out of the arguments that
// follow WorkerCommand: it returns the value of --supervisor-fd (for Dial)
// and the remaining arguments (the master's WorkerArgs) in order.
func ParseWorkerArgs(args []string) (fd int, rest []string, err error) {
	v, rest, found, err := takeFlag(args, SupervisorFDFlag)
	if err != nil {
		return -1, nil, err
	}
	if !found {
		return -1, nil, fmt.Errorf("--%s is required", SupervisorFDFlag)
	}
	fd, err = strconv.Atoi(v)
	if err != nil || fd < 0 {
		return -1, nil, fmt.Errorf("--%s: bad fd %q", SupervisorFDFlag, v)
	}
	return fd, rest, nil
}

// ParseMasterArgs takes --takeover out of the master's arguments: it
// returns its value (for MasterOptions.Takeover, "" if absent) and the
// remaining arguments.
func ParseMasterArgs(args []string) (takeover string, rest []string, err error) {
	v, rest, _, err := takeFlag(args, TakeoverFlag)
	return v, rest, err
}

// takeFlag removes every "--name=V", "--name V" (one dash too) from args
// and returns the last V.
func takeFlag(args []string, name string) (val string, rest []string, found bool, err error) {
	rest = []string{}
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			rest = append(rest, args[i:]...)
			break
		}
		if a == "--"+name || a == "-"+name {
			if i+1 >= len(args) {
				return "", nil, false, fmt.Errorf("--%s needs a value", name)
			}
			val, found = args[i+1], true
			i++
			continue
		}
		if v, ok := strings.CutPrefix(a, "--"+name+"="); ok {
			val, found = v, true
			continue
		}
		if v, ok := strings.CutPrefix(a, "-"+name+"="); ok {
			val, found = v, true
			continue
		}
		rest = append(rest, a)
	}
	return val, rest, found, nil
}
