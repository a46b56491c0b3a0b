package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/porto-dev/porto/api/client"
	"github.com/porto-dev/porto/bench"
)

var (
	flagBin      = flag.String("bin", "", "directory of portod, portoctl and porto-init (default: <repo>/bin)")
	flagBinB     = flag.String("bin-b", "", "lifecycle and scale: also run this second build's portod (Go client over Varlink), interleaved with the first: before/after figures")
	flagConfB    = flag.String("conf-b", "", "lifecycle: also run portod B with these porto.conf lines (\"key = value; key = value\"; with -bin-b, that build), interleaved: the cost of a setting")
	flagSuites   = flag.String("suites", "lifecycle,get,scale,sandbox", "comma-separated suites to run")
	flagN        = flag.Int("n", 200, "lifecycle iterations per contender (after -warm warm-ups)")
	flagWarm     = flag.Int("warm", 5, "unrecorded warm-up iterations")
	flagCalls    = flag.Int("calls", 5000, "get-state: single calls per contender, one client")
	flagCtlCalls = flag.Int("ctl-calls", 200, "get-state: portoctl invocations per contender")
	flagDur      = flag.Duration("dur", time.Second, "get-state throughput: duration of one round of one contender")
	flagRounds   = flag.Int("rounds", 3, "get-state throughput: interleaved rounds")
	flagScale    = flag.String("scale", "1000,3000", "numbers of running containers for the scale suite")
	flagPprof    = flag.String("pprof", "", "directory: profile the worker (CPU and heap) during the lifecycle and scale runs")
	flagLog      = flag.String("daemon-log", "", "append dbus-daemon's and portod's output to this file (default: discarded)")
	flagOnDisk   = flag.Bool("state-on-disk", false, "keep portod's state_dir on $TMPDIR's file system instead of a private tmpfs (as /run is on a systemd host)")
	flagOut      = flag.String("out", "", "also write the markdown report to this file")
	flagVerbose  = flag.Bool("v", false, "progress on stderr")
	flagSbxInner = flag.Bool("sandbox-inner", false, "(internal) run the floor/systemd-run loop inside the sandbox, print JSON")
	flagSbxPorto = flag.Bool("sandbox-porto", false, "(internal) with -sandbox-inner: also porto's lifecycle through the system's porto")
	flagEcho     = flag.String("echo-server", "", "(internal) serve the empty D-Bus method on this bus address")
)

var out io.Writer = os.Stdout

// live envs, torn down on SIGINT/SIGTERM too.
var (
	liveMu      sync.Mutex
	live        = map[*bench.Env]bool{}
	sandboxDown func() // set while the sandbox is up
)

func startEnv(o bench.Options) (*bench.Env, error) {
	e, err := bench.Start(o)
	if err == nil {
		liveMu.Lock()
		live[e] = true
		liveMu.Unlock()
	}
	return e, err
}

// onSignal tears down every live env (containers, portod, bus, cgroups,
// tmpfs) and exits.
func onSignal() {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		s := <-sig
		fmt.Fprintf(os.Stderr, "portobench: %v: tearing down\n", s)
		liveMu.Lock()
		if sandboxDown != nil {
			sandboxDown()
		}
		for e := range live {
			if err := e.Close(); err != nil {
				fmt.Fprintln(os.Stderr, "teardown:", err)
			}
		}
		os.Exit(130)
	}()
}

// options are the bench.Options of every env of this run.
func options() bench.Options {
	o := bench.Options{Bin: *flagBin, Pprof: *flagPprof, StateOnDisk: *flagOnDisk}
	if *flagLog != "" {
		f, err := os.OpenFile(*flagLog, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			fatal(err)
		}
		o.Log = f
	}
	return o
}

// confB is -conf-b as porto.conf lines.
func confB() []string {
	var out []string
	for _, l := range strings.Split(*flagConfB, ";") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return out
}

func say(format string, args ...any) { fmt.Fprintf(out, format, args...) }

func progress(format string, args ...any) {
	if *flagVerbose {
		fmt.Fprintf(os.Stderr, "[%s] "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
	}
}

func main() {
	flag.Parse()
	if *flagEcho != "" {
		os.Exit(echoServer(*flagEcho))
	}
	if *flagSbxInner {
		os.Exit(sandboxInner(*flagN, *flagWarm))
	}
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "portobench: needs root (sudo make bench)")
		os.Exit(2)
	}
	if !strings.Contains(*flagSuites, "hold") {
		onSignal()
	}
	var report strings.Builder
	out = io.MultiWriter(os.Stdout, &report)
	if *flagPprof != "" {
		abs, err := filepath.Abs(*flagPprof)
		if err == nil {
			err = os.MkdirAll(abs, 0o755)
		}
		if err != nil {
			fatal(err)
		}
		*flagPprof = abs
	}
	t0 := time.Now()
	machine()
	failed := false
	for _, s := range strings.Split(*flagSuites, ",") {
		var err error
		progress("suite %s", s)
		switch strings.TrimSpace(s) {
		case "lifecycle":
			err = suiteLifecycle()
		case "get":
			err = suiteGet()
		case "scale":
			for _, f := range strings.Split(*flagScale, ",") {
				n, perr := strconv.Atoi(strings.TrimSpace(f))
				if perr != nil {
					fatal(fmt.Errorf("-scale: %v", perr))
				}
				if err = suiteScale(n); err != nil {
					break
				}
			}
		case "sandbox":
			err = suiteSandbox()
		case "hold":
			err = suiteHold()
		case "":
		default:
			err = fmt.Errorf("unknown suite %q", s)
		}
		if err != nil {
			say("\n**suite %s failed: %v**\n", s, err)
			failed = true
		}
	}
	say("\nTotal run time: %s.\n", time.Since(t0).Round(time.Second))
	if *flagOut != "" {
		if err := os.WriteFile(*flagOut, []byte(report.String()), 0o644); err != nil {
			fatal(err)
		}
	}
	if failed {
		os.Exit(1)
	}
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "portobench:", err)
	os.Exit(1)
}

// machine prints the facts every figure depends on.
func machine() {
	var uts [3]string
	for i, f := range []string{"/proc/sys/kernel/osrelease", "/proc/loadavg", "/proc/sys/kernel/pid_max"} {
		b, _ := os.ReadFile(f)
		uts[i] = strings.TrimSpace(string(b))
	}
	model := ""
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "model name"); ok {
				model = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				break
			}
		}
	}
	var v1 []string
	if ents, err := os.ReadDir("/sys/fs/cgroup"); err == nil {
		for _, e := range ents {
			if e.IsDir() {
				v1 = append(v1, e.Name())
			}
		}
	}
	commit, _ := exec.Command("git", "rev-parse", "--short", "HEAD").Output()
	say("# portobench %s\n\n", time.Now().UTC().Format("2006-01-02 15:04 UTC"))
	say("- machine: %d CPUs (%s), kernel %s, pid_max %s, load average at start %s\n", runtime.NumCPU(), model, uts[0], uts[2], uts[1])
	say("- cgroup hierarchies under /sys/fs/cgroup: %s\n", strings.Join(v1, " "))
	say("- porto commit %s, %s; figures are medians (p90) of the stated number of iterations\n", strings.TrimSpace(string(commit)), runtime.Version())
}

// row prints one table row: name, median, p90, n, ratio to base.
func row(name string, s bench.Sample, base time.Duration) {
	say("| %s | %s | %s | %d | %s |\n", name, bench.Ms(s.Median()), bench.Ms(s.P90()), len(s), bench.Ratio(s.Median(), base))
}

func tableHead(ratioTo string) {
	say("| contender | median ms | p90 ms | n | ratio to %s |\n|---|---|---|---|---|\n", ratioTo)
}

// runCmd runs argv, failing with its output.
func runCmd(argv ...string) error {
	out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %v: %s", strings.Join(argv, " "), err, out)
	}
	return nil
}

// unshareFloor is the floor of every container start: a new pid
// namespace, a fresh /proc, fork and exec of true.
func unshareFloor() error { return runCmd("unshare", "--pid", "--fork", "--mount-proc", "true") }

func trueFloor() error { return runCmd("/bin/true") }

// sandboxInner runs inside the systemd sandbox: the unshare floor,
// systemd-run --scope and /bin/true, interleaved; it prints their samples
// as JSON (nanoseconds).
func sandboxInner(n, warm int) int {
	cases := []bench.Case{
		{Name: "floor", Run: unshareFloor},
		{Name: "scope", Run: func() error { return runCmd("systemd-run", "--scope", "--quiet", "true") }},
		{Name: "true", Run: trueFloor},
	}
	if *flagSbxPorto {
		vl, err := client.New(client.WithTransport(client.TransportVarlink))
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		db, err := client.New(client.WithTransport(client.TransportDBus))
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		i := 0
		name := func() string { i++; return fmt.Sprintf("sbx-lc-%d", i) }
		cases = append(cases,
			bench.Case{Name: "porto-varlink", Run: func() error { return lifecycle(vl, name(), nil) }},
			bench.Case{Name: "porto-dbus", Run: func() error { return lifecycle(db, name(), nil) }},
			bench.Case{Name: "porto-ctl", Run: func() error {
				n := name()
				for _, args := range [][]string{{"portoctl", "run", n, "command=true"}, {"portoctl", "wait", n}, {"portoctl", "destroy", n}} {
					if err := runCmd(args...); err != nil {
						return err
					}
				}
				return nil
			}},
		)
	}
	res, err := bench.Interleave(n, warm, cases)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	json.NewEncoder(os.Stdout).Encode(res)
	return 0
}

// withTimeout is a context for one API call.
func withTimeout() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 30*time.Second)
}

// suiteHold starts an env, prints how to reach it and waits for SIGINT or
// SIGTERM: for probing by hand (strace, perf, portoctl) with full teardown.
func suiteHold() error {
	env, err := startEnv(options())
	if err != nil {
		return err
	}
	defer closeEnv(env)
	w, _ := env.WorkerPID()
	fmt.Fprintf(os.Stderr, "holding: master %d worker %d\nexport %s\n", env.MasterPID(), w, strings.Join(env.Environ()[1:3], " "))
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	<-sig
	return nil
}
