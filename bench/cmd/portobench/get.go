package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/porto-dev/porto/api"
	"github.com/porto-dev/porto/api/client"
	"github.com/porto-dev/porto/bench"
)

const (
	echoPath  = "/org/porto/BenchEcho"
	echoIface = bench.EchoName
)

type echo struct{}

// Empty is the empty method: no argument, no result.
func (echo) Empty() *dbus.Error { return nil }

// echoServer serves echoIface.Empty on the bus at addr (in a process of
// its own, like portod's worker) until its stdin closes.
func echoServer(addr string) int {
	conn, err := dbus.Dial(addr)
	if err == nil {
		err = conn.Auth(nil)
	}
	if err == nil {
		err = conn.Hello()
	}
	if err == nil {
		err = conn.Export(echo{}, echoPath, echoIface)
	}
	var reply dbus.RequestNameReply
	if err == nil {
		reply, err = conn.RequestName(bench.EchoName, dbus.NameFlagDoNotQueue)
	}
	if err == nil && reply != dbus.RequestNameReplyPrimaryOwner {
		err = fmt.Errorf("RequestName: %v", reply)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "echo server:", err)
		return 1
	}
	fmt.Println("ready")
	io.Copy(io.Discard, os.Stdin)
	return 0
}

// startEcho runs echoServer in a child process.
func startEcho(addr string) (stop func(), err error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(self, "-echo-server", addr)
	in, _ := cmd.StdinPipe()
	outp, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	stop = func() { in.Close(); cmd.Wait() }
	line, _ := bufio.NewReader(outp).ReadString('\n')
	if line != "ready\n" {
		stop()
		return nil, errors.New("echo server did not start")
	}
	return stop, nil
}

// caller makes one independent client (its own connection) and returns
// its one-call function.
type caller struct {
	name string
	new  func() (func() error, error)
}

func suiteGet() error {
	env, err := startEnv(options())
	if err != nil {
		return err
	}
	defer closeEnv(env)
	stopEcho, err := startEcho(env.BusAddr)
	if err != nil {
		return err
	}
	defer stopEcho()
	{
		c, err := env.Client(client.TransportVarlink)
		if err != nil {
			return err
		}
		err = c.Create(context.Background(), "g")
		c.Close()
		if err != nil {
			return err
		}
	}
	getState := func(transport string) func() (func() error, error) {
		return func() (func() error, error) {
			c, err := env.Client(transport)
			if err != nil {
				return nil, err
			}
			ctx := context.Background()
			return func() error {
				v, err := c.GetProperty(ctx, "g", "state")
				if err == nil && v != "stopped" {
					err = fmt.Errorf("state %q", v)
				}
				return err
			}, nil
		}
	}
	rawCall := func(dest, path, method string) func() (func() error, error) {
		return func() (func() error, error) {
			conn, err := env.DialBus()
			if err != nil {
				return nil, err
			}
			obj := conn.Object(dest, dbus.ObjectPath(path))
			return func() error { return obj.Call(method, 0).Err }, nil
		}
	}
	const (
		ping    = "empty call: `org.freedesktop.DBus.Peer.Ping` to portod's connection"
		getDBus = "get state, Go client over D-Bus"
	)
	callers := []caller{
		{getDBus, getState(client.TransportDBus)},
		{"get state, Go client over Varlink", getState(client.TransportVarlink)},
		{ping, rawCall(api.BusName, api.ManagerPath, "org.freedesktop.DBus.Peer.Ping")},
		{"empty call: exported godbus method `Empty` of a separate process", rawCall(bench.EchoName, echoPath, echoIface+".Empty")},
		{"one hop: `org.freedesktop.DBus.GetId` of dbus-daemon itself", rawCall("org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus.GetId")},
	}

	// Latency: one client each, single calls interleaved A B C ...
	var cases []bench.Case
	for _, cl := range callers {
		f, err := cl.new()
		if err != nil {
			return fmt.Errorf("%s: %w", cl.name, err)
		}
		cases = append(cases, bench.Case{Name: cl.name, Run: f})
	}
	progress("get: latency, %d calls x %d", *flagCalls, len(cases))
	res, err := bench.Interleave(*flagCalls, 200, cases)
	if err != nil {
		return err
	}
	say("\n## Get state\n\n### Latency, one client\n\n%d single calls of each contender, interleaved one by one after 200 warm-ups, each client on its own connection through one private dbus-daemon (the system bus policy plus porto's). A container `g` (stopped) is read with GetProperty(g, state).\n\n", *flagCalls)
	tableHead("Peer.Ping")
	for _, c := range cases {
		row(c.Name, res[c.Name], res[ping].Median())
	}

	// portoctl: whole processes.
	ctlCases := []bench.Case{
		{Name: "fork+exec `/bin/true`", Run: trueFloor},
		{Name: "`portoctl get g state` over Varlink", Run: func() error { return env.RunCtl("--transport=varlink", "get", "g", "state") }},
		{Name: "`portoctl get g state` over D-Bus", Run: func() error { return env.RunCtl("--transport=dbus", "get", "g", "state") }},
	}
	progress("get: portoctl, %d x %d", *flagCtlCalls, len(ctlCases))
	// (the latency table is printed first: progress goes to stderr)
	cres, err := bench.Interleave(*flagCtlCalls, *flagWarm, ctlCases)
	if err != nil {
		return err
	}
	say("\n### Through portoctl\n\n%d interleaved invocations each (whole processes).\n\n", *flagCtlCalls)
	tableHead("fork+exec true")
	for _, c := range ctlCases {
		row(c.Name, cres[c.Name], cres[ctlCases[0].Name].Median())
	}

	// Throughput: k clients, each its own connection and goroutine.
	for _, k := range []int{1, 8} {
		progress("get: throughput %d clients", k)
		say("\n### Throughput, %d concurrent client%s\n\n%d interleaved rounds of %s per contender; every client has its own connection and goroutine and calls back to back.\n\n",
			k, map[bool]string{true: "s"}[k > 1], *flagRounds, *flagDur)
		say("| contender | calls/s | median ms | p90 ms | ratio of calls/s to Peer.Ping |\n|---|---|---|---|---|\n")
		fs := make(map[string][]func() error)
		for _, cl := range callers {
			for range k {
				f, err := cl.new()
				if err != nil {
					return err
				}
				fs[cl.name] = append(fs[cl.name], f)
			}
		}
		lat := map[string]bench.Sample{}
		count := map[string]int{}
		busy := map[string]time.Duration{}
		for r := range *flagRounds {
			for j := range callers {
				cl := callers[(j+r)%len(callers)]
				l, n, d, err := hammer(fs[cl.name], *flagDur)
				if err != nil {
					return fmt.Errorf("%s: %w", cl.name, err)
				}
				lat[cl.name] = append(lat[cl.name], l...)
				count[cl.name] += n
				busy[cl.name] += d
			}
		}
		rate := func(n string) float64 { return float64(count[n]) / busy[n].Seconds() }
		for _, cl := range callers {
			say("| %s | %.0f | %s | %s | %.2f |\n", cl.name, rate(cl.name), bench.Ms(lat[cl.name].Median()), bench.Ms(lat[cl.name].P90()), rate(cl.name)/rate(ping))
		}
	}
	return nil
}

// hammer calls every f in a goroutine of its own, back to back, for d.
// It returns every call's latency, the number of calls and the time taken.
func hammer(fs []func() error, d time.Duration) (bench.Sample, int, time.Duration, error) {
	var mu sync.Mutex
	var all bench.Sample
	var first error
	var wg sync.WaitGroup
	start := time.Now()
	deadline := start.Add(d)
	for _, f := range fs {
		wg.Go(func() {
			var mine bench.Sample
			for time.Now().Before(deadline) {
				t0 := time.Now()
				err := f()
				mine = append(mine, time.Since(t0))
				if err != nil {
					mu.Lock()
					first = cmpOr(first, err)
					mu.Unlock()
					return
				}
			}
			mu.Lock()
			all = append(all, mine...)
			mu.Unlock()
		})
	}
	wg.Wait()
	return all, len(all), time.Since(start), first
}

func cmpOr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}
