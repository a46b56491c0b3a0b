package supervise

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/porto-dev/porto/isolation"
)

// The test binary doubles as the master ("__master") and the worker
// ("__worker") of the master tests, the way portod does.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case "__master":
			os.Exit(testMaster(os.Args[2:]))
		case WorkerCommand:
			os.Exit(testWorker(os.Args[2:]))
		}
	}
	os.Exit(m.Run())
}

// standInLaunch replaces isolation.Launch: it runs a shell that reads one
// command line from fd 3 (where the real stage reads its config) and
// evaluates it, with files as its fds.
func standInLaunch(self string, spec isolation.LaunchSpec, files []*os.File) (int, error) {
	if len(files) < 4 {
		return 0, fmt.Errorf("stand-in launch: %d files", len(files))
	}
	switch spec.JoinPid {
	case -1:
		return 0, &os.SyscallError{Syscall: "setns", Err: syscall.EINVAL}
	case -3:
		time.Sleep(time.Second) // a slow launch
	}
	p, err := os.StartProcess("/bin/sh",
		[]string{"sh", "-c", `IFS= read -r c <&3; exec 3<&-; eval "$c"`},
		&os.ProcAttr{Files: files, Sys: &syscall.SysProcAttr{Setsid: true}})
	if err != nil {
		return 0, err
	}
	pid := p.Pid
	p.Release()
	return pid, nil
}

// commandFiles builds the files of a stand-in spawn: /dev/null, the
// caller's stderr twice, and a pipe carrying cmd.
func commandFiles(cmd string) ([]*os.File, func(), error) {
	null, err := os.Open(os.DevNull)
	if err != nil {
		return nil, nil, err
	}
	r, w, err := os.Pipe()
	if err != nil {
		null.Close()
		return nil, nil, err
	}
	// The pipe buffer holds a short command; write before spawning.
	if _, err := w.WriteString(cmd + "\n"); err != nil {
		return nil, nil, err
	}
	w.Close()
	return []*os.File{null, os.Stderr, os.Stderr, r}, func() { null.Close(); r.Close() }, nil
}

func testMaster(args []string) int {
	takeover, rest, err := ParseMasterArgs(args)
	if err != nil {
		fmt.Fprintln(os.Stderr, "master:", err)
		return 2
	}
	fs := flag.NewFlagSet("__master", flag.ContinueOnError)
	ctl := fs.String("ctl", "", "control socket of the test")
	stop := fs.Duration("stop-timeout", stopTimeout, "")
	orphan := fs.Duration("orphan-timeout", orphanTimeout, "")
	ignoreTerm := fs.Bool("worker-ignore-term", false, "")
	self := fs.String("self", "", "")
	upgrade := fs.Duration("upgrade-timeout", upgradeTimeout, "")
	if err := fs.Parse(rest); err != nil {
		return 2
	}
	restartMin = 50 * time.Millisecond
	stopTimeout, orphanTimeout, upgradeTimeout = *stop, *orphan, *upgrade
	if *orphan < scanInterval {
		scanInterval = *orphan / 2
	}
	wargs := []string{"--ctl", *ctl}
	if *ignoreTerm {
		wargs = append(wargs, "--ignore-term")
	}
	err = RunMaster(MasterOptions{
		Self:       *self,
		WorkerArgs: wargs,
		Args:       append([]string{"__master"}, rest...),
		Takeover:   takeover,
		Log:        slog.New(slog.NewTextHandler(os.Stderr, nil)),
		Launch:     standInLaunch,
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "master:", err)
		return 1
	}
	return 0
}

// ctlMsg is one line of the control protocol between a test and its fake
// workers.
type ctlMsg struct {
	T      string `json:"t"`
	ID     int    `json:"id,omitempty"`
	Pid    int    `json:"pid,omitempty"`
	Sup    int    `json:"sup,omitempty"`
	Status int    `json:"status,omitempty"`
	Cmd    string `json:"cmd,omitempty"`
	Err    string `json:"err,omitempty"`
	Errno  int    `json:"errno,omitempty"`
	Join   int    `json:"join,omitempty"`
}

// testWorker is a worker whose brain is the test: it spawns, reports and
// acknowledges as told over the control socket.
func testWorker(args []string) int {
	sfd, rest, err := ParseWorkerArgs(args)
	if err != nil {
		fmt.Fprintln(os.Stderr, "worker:", err)
		return 2
	}
	fs := flag.NewFlagSet(WorkerCommand, flag.ContinueOnError)
	ctl := fs.String("ctl", "", "")
	ignoreTerm := fs.Bool("ignore-term", false, "")
	if err := fs.Parse(rest); err != nil {
		return 2
	}
	if *ignoreTerm {
		signal.Ignore(syscall.SIGTERM)
	}
	c, err := Dial(sfd)
	if err != nil {
		fmt.Fprintln(os.Stderr, "worker:", err)
		return 1
	}
	conn, err := net.Dial("unix", *ctl)
	if err != nil {
		fmt.Fprintln(os.Stderr, "worker:", err)
		return 1
	}
	var mu sync.Mutex
	enc := json.NewEncoder(conn)
	send := func(m ctlMsg) {
		mu.Lock()
		defer mu.Unlock()
		enc.Encode(m)
	}
	var closed atomic.Bool
	send(ctlMsg{T: "hello", Pid: os.Getpid(), Sup: c.SupervisorPid()})
	go func() {
		for e := range c.Exits() {
			send(ctlMsg{T: "exit", Pid: e.Pid, Status: e.Status})
		}
		send(ctlMsg{T: "closed"})
		if !closed.Load() {
			os.Exit(0) // the master is gone
		}
	}()
	sc := bufio.NewScanner(conn)
	for sc.Scan() {
		var m ctlMsg
		if json.Unmarshal(sc.Bytes(), &m) != nil {
			continue
		}
		switch m.T {
		case "spawn":
			go func() {
				files, done, err := commandFiles(m.Cmd)
				if err != nil {
					send(ctlMsg{T: "spawned", ID: m.ID, Err: err.Error()})
					return
				}
				defer done()
				pid, err := c.Spawn(isolation.LaunchSpec{JoinPid: m.Join}, files)
				r := ctlMsg{T: "spawned", ID: m.ID, Pid: pid}
				if err != nil {
					r.Err = err.Error()
					r.Errno = int(errnoOf(err))
				}
				send(r)
			}()
		case "close":
			closed.Store(true)
			c.Close() // and keep running without the master
		case "ack":
			err := c.Ack(m.Pid)
			r := ctlMsg{T: "acked", Pid: m.Pid}
			if err != nil {
				r.Err = err.Error()
			}
			send(r)
		}
	}
	return 0 // the test is done with us
}

// procStat returns the state letter and ppid of pid, or "" if it is gone.
func procStat(pid int) (state string, ppid int) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return "", 0
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return "", 0
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 2 {
		return "", 0
	}
	ppid, _ = strconv.Atoi(f[1])
	return f[0], ppid
}
