package isolation

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// maxFrame bounds one config frame (environment and argv included).
const maxFrame = 16 << 20

// SyncPair creates the sync socket: a SOCK_STREAM unix socketpair, both
// ends close-on-exec. The service keeps parent (Release, WaitExec) and
// hands child to Launch as fd 3. After Launch, every process other than the
// stage must close its copy of child, or WaitExec never sees EOF.
func SyncPair() (parent, child *os.File, err error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("socketpair: %w", err)
	}
	return os.NewFile(uintptr(fds[0]), "porto-sync"), os.NewFile(uintptr(fds[1]), "porto-sync-child"), nil
}

// Release sends cfg to the stage on the parent end of the sync socket. It
// is also the "go" signal: the stage does nothing before it. The service
// first places the stage's pid in its cgroups, then calls Release, then
// WaitExec. Closing the socket without Release makes the stage exit quietly.
//
// The frame is a 4-byte big-endian length followed by that much JSON.
func Release(sync *os.File, cfg *Config) error {
	b, err := json.Marshal(cfg)
	if err != nil {
		return fmt.Errorf("encode config: %w", err)
	}
	if len(b) > maxFrame {
		return fmt.Errorf("config too large (%d bytes)", len(b))
	}
	buf := make([]byte, 4+len(b))
	binary.BigEndian.PutUint32(buf, uint32(len(b)))
	copy(buf[4:], b)
	if _, err := sync.Write(buf); err != nil {
		return fmt.Errorf("release stage: %w", err)
	}
	return nil
}

// WaitExec reads the parent end of the sync socket until EOF and says how
// the command started:
//
//   - EOF with no data: the stage itself reached execve and it succeeded
//     (the stage's end is close-on-exec); pid is 0 and the command is the
//     stage's own pid. This is the path of every launch that joins no pid
//     namespace.
//   - a reply with a pid: the stage joined a pid namespace and forked the
//     command there; pid is the command's pid in the stage's (the
//     caller's) pid namespace. The stage then exits 0 by itself and the
//     command is reparented to the supervisor, so the caller must expect
//     two exits: the stage's (status 0, to be acknowledged and ignored) and
//     later the command's.
//   - a *StartError: the stage failed (and exits 127); any other error is
//     a failure to read the socket.
//
// WaitExec blocks until the stage execs, forks or fails; a caller that
// needs a bound can set a read deadline on sync first.
func WaitExec(sync *os.File) (pid int, err error) {
	b, err := io.ReadAll(io.LimitReader(sync, maxFrame))
	if err != nil {
		return 0, fmt.Errorf("wait for exec: %w", err)
	}
	if len(b) == 0 {
		return 0, nil
	}
	var r stageReply
	if err := json.Unmarshal(b, &r); err != nil || (r.Pid <= 0 && r.Op == "" && r.Msg == "") || (r.Pid > 0 && r.Msg != "") {
		return 0, &StartError{Errno: int(unix.EPROTO), Op: "stage", Msg: "Malformed reply from the isolation stage"}
	}
	if r.Pid > 0 {
		return r.Pid, nil
	}
	se := r.StartError
	return 0, &se
}

// stageReply is what the stage writes on the sync socket: a StartError,
// or the pid of the command it forked.
type stageReply struct {
	Pid int `json:"pid,omitempty"`
	StartError
}

// readConfig reads the config frame on the stage side. It returns io.EOF
// when the parent closed the socket before sending anything.
func readConfig(r io.Reader) (*Config, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, io.EOF
		}
		return nil, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n > maxFrame {
		return nil, fmt.Errorf("config frame too large (%d bytes)", n)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	cfg := new(Config)
	if err := json.Unmarshal(b, cfg); err != nil {
		return nil, fmt.Errorf("decode config: %w", err)
	}
	return cfg, nil
}

// writeError sends se on the stage side; the stage then exits.
func writeError(w io.Writer, se *StartError) {
	_ = writeReply(w, &stageReply{StartError: *se})
}

// writeReply sends r on the stage side.
func writeReply(w io.Writer, r *stageReply) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}
