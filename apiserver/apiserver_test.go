package apiserver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"testing"

	"github.com/porto-dev/porto/api"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func TestClassify(t *testing.T) {
	if c, m := Classify(quiet, "m", nil); c != api.Success || m != "" {
		t.Fatalf("nil: %v %q", c, m)
	}
	cases := []struct {
		err  error
		code api.Code
		msg  string
	}{
		{api.Errorf(api.InvalidValue, "bad value"), api.InvalidValue, "bad value"},
		{fmt.Errorf("start %q: %w", "a", api.Errorf(api.InvalidState, "is running")), api.InvalidState, "is running"},
		{api.Wrap(api.Permission, errors.New("EPERM"), ""), api.Permission, "EPERM"},
		{errors.New("boom"), api.Unknown, "boom"},
		{&api.Error{Code: api.Success, Msg: "odd"}, api.Unknown, "Success: odd"},
		{&api.Error{Code: api.Code(999), Msg: "odd"}, api.Unknown, "Code(999): odd"},
		{fmt.Errorf("x: %w", context.Canceled), api.Unknown, "call cancelled: x: context canceled"},
		{context.DeadlineExceeded, api.Unknown, "call timed out: context deadline exceeded"},
	}
	for _, tc := range cases {
		c, m := Classify(quiet, "m", tc.err)
		if c != tc.code || m != tc.msg {
			t.Errorf("%v: got %v %q, want %v %q", tc.err, c, m, tc.code, tc.msg)
		}
	}
}

func TestRecovered(t *testing.T) {
	f := func() (err error) {
		defer func() {
			if r := recover(); r != nil {
				err = Recovered(quiet, "M", r)
			}
		}()
		panic("x")
	}
	if c := api.CodeOf(f()); c != api.Unknown {
		t.Fatalf("recovered panic gave %v", c)
	}
}

func TestResolveGID(t *testing.T) {
	proc := func(ruid, euid, egid uint32, err error) func(int32) (uint32, uint32, uint32, error) {
		return func(int32) (uint32, uint32, uint32, error) { return ruid, euid, egid, err }
	}
	pw := func(g uint32, ok bool) func(uint32) (uint32, bool) {
		return func(uint32) (uint32, bool) { return g, ok }
	}
	noProc := proc(0, 0, 0, errors.New("gone"))
	cases := []struct {
		name   string
		uid    uint32
		pid    int32
		groups []uint32
		proc   func(int32) (uint32, uint32, uint32, error)
		pw     func(uint32) (uint32, bool)
		want   uint32
	}{
		{"egid vouched by groups", 1000, 5, []uint32{1000, 27}, proc(1000, 1000, 27, nil), pw(1000, true), 27},
		{"egid is the passwd group", 1000, 5, nil, proc(1000, 1000, 1000, nil), pw(1000, true), 1000},
		{"egid not vouched", 1000, 5, []uint32{1000}, proc(1000, 1000, 0, nil), pw(1000, true), 1000},
		{"process changed uid", 1000, 5, []uint32{27}, proc(0, 0, 27, nil), pw(1000, true), 1000},
		{"no process", 1000, 5, nil, noProc, pw(1000, true), 1000},
		{"no pid, no passwd", 1000, 0, []uint32{42}, noProc, pw(0, false), 42},
		{"nothing", 1000, 0, nil, noProc, pw(0, false), 1000},
	}
	for _, tc := range cases {
		if got := ResolveGID(tc.uid, tc.pid, tc.groups, tc.proc, tc.pw); got != tc.want {
			t.Errorf("%s: got %d, want %d", tc.name, got, tc.want)
		}
	}
}

func TestProcReaders(t *testing.T) {
	st, err := ReadProcStatus(int32(os.Getpid()))
	if err != nil {
		t.Fatal(err)
	}
	if st.EUID != uint32(os.Geteuid()) || st.EGID != uint32(os.Getegid()) {
		t.Errorf("ReadProcStatus = %+v", st)
	}
	groups, _ := os.Getgroups()
	if len(groups) != len(st.Groups) {
		t.Errorf("groups %v, want %v", st.Groups, groups)
	}
	start, err := ProcStartTime(int32(os.Getpid()))
	if err != nil || start == 0 {
		t.Fatalf("ProcStartTime = %d, %v", start, err)
	}
	if _, err := ReadProcStatus(-5); err == nil {
		t.Error("status of pid -5 read")
	}
}

func TestParseStartTime(t *testing.T) {
	rest := " S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 424242 20 21"
	for _, comm := range []string{"(sh)", "(a) b) c)", "()", "(\x00))"} {
		v, err := parseStartTime([]byte("123 " + comm + rest))
		if err != nil || v != 424242 {
			t.Errorf("%q: %d, %v", comm, v, err)
		}
	}
	for _, bad := range []string{"", "123 sh S 1", "1 (x) S 1 2", "1 (x)" + strings.Replace(rest, "424242", "x", 1)} {
		if _, err := parseStartTime([]byte(bad)); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}
