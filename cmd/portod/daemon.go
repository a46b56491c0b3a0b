package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	"github.com/coreos/go-systemd/v22/journal"
	"github.com/spf13/pflag"

	"github.com/porto-dev/porto/api"
	"github.com/porto-dev/porto/dbusapi"
	"github.com/porto-dev/porto/isolation/supervise"
	"github.com/porto-dev/porto/service"
	"github.com/porto-dev/porto/units"
	"github.com/porto-dev/porto/units/netsched"
	"github.com/porto-dev/porto/varlinkapi"
)

const (
	workerArg         = "__worker"
	defaultConfigPath = "/etc/porto.conf"
)

type flags struct {
	config       string
	noSupervisor bool
	supervisorFd int
	takeover     string
	version      bool
}

func parseFlags(name string, args []string, worker bool) (*flags, error) {
	f := &flags{}
	fs := pflag.NewFlagSet(name, pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&f.config, "config", defaultConfigPath, "porto.conf to read")
	fs.BoolVar(&f.noSupervisor, "no-supervisor", false, "serve without the supervisor master (exit statuses do not survive a crash)")
	fs.BoolVar(&f.version, "version", false, "print the version and exit")
	fs.StringVar(&f.takeover, "takeover", "", "internal: state handed over by an upgrading master")
	fs.MarkHidden("takeover")
	if worker {
		fs.IntVar(&f.supervisorFd, "supervisor-fd", -1, "internal: the supervisor socket")
	}
	fs.Usage = func() {}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			fmt.Printf("Usage: portod [--config FILE] [--no-supervisor]\n\nThe porto daemon: serves %s on the system bus ($DBUS_SYSTEM_BUS_ADDRESS).\n\n%s", api.BusName, fs.FlagUsages())
			os.Exit(0)
		}
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	return f, nil
}

func newLogger(level string) *slog.Logger {
	var l slog.Level
	l.UnmarshalText([]byte(level))
	// Under systemd, log natively to the journal with fields (CONTAINER=...).
	if ok, _ := journal.StderrIsJournalStream(); ok && journal.Enabled() {
		return slog.New(newJournalHandler(l))
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: l}))
}

func loadConfig(f *flags) (service.Config, error) {
	cfg, err := service.LoadConfig(f.config, f.config == defaultConfigPath)
	if err != nil {
		return cfg, err
	}
	if _, err := os.Stat(cfg.InitPath); err != nil {
		// A build tree: porto-init sits beside portod.
		if self, err := os.Executable(); err == nil {
			if p := filepath.Join(filepath.Dir(self), "porto-init"); fileExists(p) {
				cfg.InitPath = p
			}
		}
	}
	if !fileExists(cfg.StagePath) {
		// A build tree has porto-stage beside portod; without it portod is
		// its own stage ("portod __isolate"), only slower to start.
		cfg.StagePath = ""
		if self, err := os.Executable(); err == nil {
			if p := filepath.Join(filepath.Dir(self), "porto-stage"); fileExists(p) {
				cfg.StagePath = p
			}
		}
	}
	return cfg, nil
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

func runMaster(args []string) int {
	f, err := parseFlags("portod", args, false)
	if err != nil {
		return fatalf("%v (see portod --help)", err)
	}
	if f.version {
		fmt.Println("portod", api.Version)
		return 0
	}
	cfg, err := loadConfig(f)
	if err != nil {
		return fatalf("%s", api.AsError(err).Message())
	}
	log := newLogger(cfg.LogLevel)
	if f.noSupervisor {
		return serve(cfg, log, -1)
	}
	// --- Varlink (issue 10): the master does not serve; it hands a
	// socket-activated varlink socket down to its workers.
	if ok, err := varlinkapi.PassActivated(); err != nil {
		log.Error("socket-activated varlink socket unusable", "err", err)
	} else if ok {
		log.Info("varlink socket passed by systemd; handing it to the worker")
	}
	err = supervise.RunMaster(supervise.MasterOptions{
		WorkerArgs: []string{"--config", f.config},
		Takeover:   f.takeover,
		Log:        log.With("proc", "master"),
		StagePool:  cfg.StagePool,
		Stage:      cfg.StagePath,
	})
	if err != nil {
		return fatalf("%v", err)
	}
	return 0
}

func runWorker(args []string) int {
	f, err := parseFlags("portod "+workerArg, args, true)
	if err != nil {
		return fatalf("worker: %v", err)
	}
	cfg, err := loadConfig(f)
	if err != nil {
		return fatalf("%s", api.AsError(err).Message())
	}
	log := newLogger(cfg.LogLevel).With("proc", "worker")
	startProfiling(log)
	return serve(cfg, log, f.supervisorFd)
}

// serve runs the D-Bus service until SIGTERM/SIGINT, or until the
// supervisor connection is lost. supFd < 0 runs without a supervisor.
func serve(cfg service.Config, log *slog.Logger, supFd int) int {
	var sp interface {
		service.Spawner
		Close() error
	}
	var err error
	if supFd >= 0 {
		var c *supervise.Client
		if c, err = supervise.Dial(supFd); err == nil {
			if werr := c.EnableWarmStages(cfg.StagePool); werr != nil {
				log.Warn("no warm isolation stages", "err", werr)
			}
			sp = c
		}
	} else {
		self, _ := os.Executable()
		if cfg.StagePath != "" {
			self = cfg.StagePath
		}
		sp, err = supervise.NewLocal(self)
		log.Warn("running without the supervisor master: exit statuses do not survive a crash of this process")
	}
	if err != nil {
		return fatalf("supervisor: %v", err)
	}
	defer sp.Close()

	netcls := ""
	if cfg.Network {
		// Before the cgroup driver, which finds the hierarchy.
		if netcls, err = units.EnsureNetCls("", filepath.Join(cfg.StateDir, "net_cls")); err != nil {
			log.Error("no net_cls hierarchy: traffic is not counted or shaped per container", "err", err)
		}
	}
	cg, err := newCgroups(cfg, netcls, log)
	if err != nil {
		return fatalf("cgroups: %v", err)
	}

	m, err := service.New(cfg, sp, cg, log)
	if err != nil {
		return fatalf("%v", err)
	}
	defer m.Close()
	if netcls != "" {
		if n, err := newNetwork(cfg, log); err != nil {
			log.Error("traffic control unavailable: traffic is not counted or shaped per container", "err", err)
			m.SetNetworkOff("traffic control failed when porto started: " + err.Error())
		} else {
			m.SetNetwork(n)
		}
	} else if cfg.Network {
		m.SetNetworkOff("there is no net_cls cgroup hierarchy (see porto's log)")
	}

	conn, err := dbusapi.ConnectSystemBus()
	if err != nil {
		return fatalf("system bus: %v", err)
	}
	defer conn.Close()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := m.Restore(ctx); err != nil {
		return fatalf("restore: %v", err)
	}
	m.Run()
	srv := dbusapi.New(m, dbusapi.Options{Logger: log})
	if err := srv.Export(conn); err != nil {
		return fatalf("%v", err)
	}
	busLost := make(chan error, 1)
	go func() { busLost <- srv.Serve(ctx) }()
	// --- Varlink endpoint (issue 10): the same API on a unix socket, from
	// the same layer; polkit is asked over the bus connection above. Not
	// fatal: clients fall back to D-Bus.
	vsrv := varlinkapi.New(m, varlinkapi.Options{Logger: log.With("api", "varlink"), Authorizer: dbusapi.NewPolkit(conn)})
	defer vsrv.Close()
	if l, err := varlinkapi.Listen(cfg.VarlinkSocket); err != nil {
		log.Error("not serving the varlink socket", "path", cfg.VarlinkSocket, "err", err)
	} else {
		log.Info("serving varlink", "socket", l.Addr().String(), "interface", varlinkapi.Interface)
		go func() {
			if err := vsrv.Serve(l); err != nil && !errors.Is(err, varlinkapi.ErrServerClosed) {
				log.Error("varlink socket failed", "err", err)
			}
		}()
	}
	// --- end Varlink
	if err := srv.RequestName(); err != nil {
		return fatalf("%v", err)
	}
	log.Info("serving", "bus_name", api.BusName, "version", api.Version)
	daemon.SdNotify(false, daemon.SdNotifyReady)
	go reportStatus(ctx, m)
	go watchdog(ctx, m)

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	lost := m.Lost()
	select {
	case s := <-sig:
		log.Info("stopping; containers keep running", "signal", s.String())
	case <-lost:
		log.Error("supervisor connection lost; exiting")
	case err := <-busLost:
		// Off the bus (dbus-daemon restarted, or it dropped us): exit so the
		// master starts a fresh worker that reconnects.
		log.Error("lost the system bus; exiting to be restarted", "err", err)
		srv.Close()
		return 1
	}
	if supFd < 0 {
		// Only the main process may say STOPPING=1: from a supervised
		// worker (which the master restarts) it would put porto.service
		// into "deactivating" and have systemd kill the master.
		daemon.SdNotify(false, daemon.SdNotifyStopping)
	}
	srv.Close()
	return 0
}

// reportStatus keeps systemd's STATUS= line current.
func reportStatus(ctx context.Context, m *service.Manager) {
	last := ""
	t := time.NewTicker(2 * time.Second)
	defer t.Stop()
	for {
		names, _ := m.List(ctx, service.Root)
		running := 0
		for _, n := range names {
			if v, _ := m.Get(ctx, service.Root, n, "state"); v == string(api.StateRunning) {
				running++
			}
		}
		s := fmt.Sprintf("STATUS=%d containers, %d running", len(names), running)
		if s != last {
			daemon.SdNotify(false, s)
			last = s
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// newCgroups picks the cgroup driver: systemd's transient scopes when
// systemd is on the bus (cgroup_driver = auto or systemd), else porto's
// own cgroupfs subtree.
func newCgroups(cfg service.Config, netcls string, log *slog.Logger) (service.Cgroups, error) {
	opts := units.Options{Root: cfg.CgroupRoot, Log: log, NetCls: netcls}
	useSystemd := false
	switch cfg.CgroupDriver {
	case "systemd":
		useSystemd = true
	case "auto":
		useSystemd = units.SystemdAvailable()
	}
	if useSystemd {
		d, err := units.NewSystemd(units.SystemdOptions{Options: opts})
		if err == nil {
			log.Info("delegating cgroups through systemd transient scopes")
			return d, nil
		}
		if cfg.CgroupDriver == "systemd" {
			return nil, err
		}
		log.Warn("systemd is on the bus but its driver cannot start; managing cgroups directly", "err", err)
	} else if cfg.CgroupDriver == "auto" {
		log.Info("systemd is not on the bus: managing cgroups directly (cgroupfs driver)", "root", cfg.CgroupRoot)
	}
	return units.NewCgroupfs(opts)
}

// newNetwork makes the managed devices' root qdiscs porto's HTB (in the
// worker's network namespace, the host's).
func newNetwork(cfg service.Config, log *slog.Logger) (service.Network, error) {
	tc, err := netsched.Open()
	if err != nil {
		return nil, err
	}
	n, err := units.NewNetwork(tc, units.NetworkOptions{Devices: cfg.NetDevices, Log: log})
	if err != nil {
		tc.Close()
		return nil, err
	}
	return n, nil
}

// watchdogInterval is WatchdogSec when systemd asks for pings. systemd
// sets WATCHDOG_PID to the unit's main process, the master; the worker,
// its child, pings for it (NotifyAccess=all). (daemon.SdWatchdogEnabled
// would say "not for this pid" to the worker, and systemd would kill the
// service every WatchdogSec: seen in the tests/sandbox systemd.)
func watchdogInterval() time.Duration {
	usec, err := strconv.ParseUint(os.Getenv("WATCHDOG_USEC"), 10, 64)
	if err != nil || usec == 0 {
		return 0
	}
	if p := os.Getenv("WATCHDOG_PID"); p != "" {
		pid, err := strconv.Atoi(p)
		if err != nil || (pid != os.Getpid() && pid != os.Getppid()) {
			return 0
		}
	}
	return time.Duration(usec) * time.Microsecond
}

// watchdog pings systemd at half of WatchdogSec while the manager answers.
func watchdog(ctx context.Context, m *service.Manager) {
	every := watchdogInterval()
	if every == 0 {
		return
	}
	t := time.NewTicker(every / 2)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			// A manager that cannot list its containers is wedged: stop pinging.
			if _, err := m.List(ctx, service.Root); err == nil {
				daemon.SdNotify(false, daemon.SdNotifyWatchdog)
			}
		}
	}
}
