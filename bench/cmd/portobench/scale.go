package main

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/porto-dev/porto/api/client"
	"github.com/porto-dev/porto/bench"
)

// tasks is the number of tasks (threads included, as pid_max counts them)
// on the machine, from /proc/loadavg.
func tasks() int {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) < 4 {
		return 0
	}
	_, total, _ := strings.Cut(f[3], "/")
	n, _ := strconv.Atoi(total)
	return n
}

func pidMax() int {
	b, _ := os.ReadFile("/proc/sys/kernel/pid_max")
	n, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return n
}

// memAvailableMB is MemAvailable of /proc/meminfo in MiB.
func memAvailableMB() int64 {
	b, _ := os.ReadFile("/proc/meminfo")
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "MemAvailable:"); ok {
			kb, _ := strconv.ParseInt(strings.Fields(v)[0], 10, 64)
			return kb / 1024
		}
	}
	return 0
}

func suiteScale(n int) error {
	// Budget: one task per container (sleep; no helper process in app
	// containers), plus a margin for the rest of the machine.
	envs := 1
	if *flagBinB != "" {
		envs = 2
	}
	if free := pidMax() - tasks(); free < envs*n+2000 {
		return fmt.Errorf("%d containers: only %d free pids of pid_max %d (need %d + a margin of 2000)", n, free, pidMax(), envs*n)
	}
	if mb := memAvailableMB(); mb < int64(n)*2+1024 {
		return fmt.Errorf("%d containers: only %d MiB available", n, mb)
	}
	env, err := startEnv(options())
	if err != nil {
		return err
	}
	defer closeEnv(env)
	c, err := env.Client(client.TransportVarlink)
	if err != nil {
		return err
	}
	defer c.Close()
	dc, err := env.Client(client.TransportDBus)
	if err != nil {
		return err
	}
	ctx := context.Background()

	// Warm up (pools, caches, first cgroups), then the baseline.
	for i := range 20 {
		if err := lifecycle(c, fmt.Sprintf("warm-%d", i), nil); err != nil {
			return err
		}
	}
	m0, w0, err := env.DaemonRSS()
	if err != nil {
		return err
	}
	tasks0, _ := env.Tasks()

	prof := func(stop bool) string {
		if *flagPprof == "" {
			return ""
		}
		p, err := env.Profile(*flagPprof, stop)
		if err != nil {
			say("\n(profile: %v)\n", err)
		}
		return p
	}

	cpu := func() [2]time.Duration {
		m, w, _ := env.DaemonCPU()
		return [2]time.Duration{m, w}
	}
	var cpuRows []string
	cpuRow := func(phase string, a, b [2]time.Duration) {
		per := func(d time.Duration) string { return bench.Ms(d / time.Duration(n)) }
		cpuRows = append(cpuRows, fmt.Sprintf("| %s | %s | %s | %s | %s |", phase, bench.Ms(b[0]-a[0]), bench.Ms(b[1]-a[1]), per(b[0]-a[0]), per(b[1]-a[1])))
	}

	// -bin-b: a second build starts its own N containers, alternating
	// with this one (A B A B ...), both on the same kernel (the same
	// total number of cgroups).
	var cB *client.Client
	var startsB bench.Sample
	if *flagBinB != "" {
		ob := options()
		ob.Bin, ob.Pprof = *flagBinB, ""
		envB, err := startEnv(ob)
		if err != nil {
			return fmt.Errorf("-bin-b: %w", err)
		}
		defer closeEnv(envB)
		if cB, err = envB.Client(client.TransportVarlink); err != nil {
			return err
		}
		defer cB.Close()
	}

	// Start N containers, one at a time; every 10th, one floor run.
	progress("scale %d: starting", n)
	prof(false)
	cpu0 := cpu()
	names := make([]string, n)
	starts := make(bench.Sample, n)
	st := steps{}
	var floor bench.Sample
	t0 := time.Now()
	for i := range n {
		names[i] = fmt.Sprintf("s%d", i)
		t := time.Now()
		err := c.Create(ctx, names[i])
		st["create"] = append(st["create"], time.Since(t))
		if err == nil {
			t1 := time.Now()
			err = c.SetProperty(ctx, names[i], "command", "sleep 1000")
			st["set command"] = append(st["set command"], time.Since(t1))
		}
		if err == nil {
			t1 := time.Now()
			err = c.Start(ctx, names[i])
			st["start"] = append(st["start"], time.Since(t1))
		}
		starts[i] = time.Since(t)
		if err != nil {
			return fmt.Errorf("container %d: %w", i, err)
		}
		if cB != nil {
			t := time.Now()
			err := cB.Create(ctx, names[i])
			if err == nil {
				err = cB.SetProperty(ctx, names[i], "command", "sleep 1000")
			}
			if err == nil {
				err = cB.Start(ctx, names[i])
			}
			if err != nil {
				return fmt.Errorf("B container %d: %w", i, err)
			}
			startsB = append(startsB, time.Since(t))
		}
		if i%10 == 0 {
			t := time.Now()
			if err := unshareFloor(); err != nil {
				return err
			}
			floor = append(floor, time.Since(t))
		}
		if (i+1)%500 == 0 {
			progress("scale %d: %d started", n, i+1)
		}
	}
	startAll := time.Since(t0)
	cpuRow("start all", cpu0, cpu())
	m1, w1, err := env.DaemonRSS() // before the profile's stop forces a GC
	if err != nil {
		return err
	}
	startProf := prof(true)
	tasks1, _ := env.Tasks()
	// Every container must be running.
	res, err := c.Get(ctx, names, []string{"state"})
	if err != nil {
		return err
	}
	for _, r := range res {
		if r.Err != nil || r.Value != "running" {
			return fmt.Errorf("%s: state %q %v", r.Container, r.Value, r.Err)
		}
	}

	say("\n## %d running containers (`sleep 1000`)\n\n", n)
	say("Each container: Create, SetProperty(command), Start through the Go client over Varlink, one at a time; the unshare floor ran after every 10th start (%d runs, median %s ms, p90 %s ms).\n\n", len(floor), bench.Ms(floor.Median()), bench.Ms(floor.P90()))
	say("All %d started in %s (%s ms per container on average); median %s ms, p90 %s ms, %s the floor. Steps (medians): create %s, set command %s, start %s ms.\n\n",
		n, startAll.Round(time.Millisecond), bench.Ms(startAll/time.Duration(n)), bench.Ms(starts.Median()), bench.Ms(starts.P90()), bench.Ratio(starts.Median(), floor.Median()),
		bench.Ms(st["create"].Median()), bench.Ms(st["set command"].Median()), bench.Ms(st["start"].Median()))
	if cB == nil {
		say("| containers already running | median ms per start | p90 ms |\n|---|---|---|\n")
	} else {
		say("With -bin-b: build B (%s) started its own %d containers alternating with these (A B A B ...; the figures above include B's starts in the total time): median %s ms, p90 %s ms.\n\n", *flagBinB, n, bench.Ms(startsB.Median()), bench.Ms(startsB.P90()))
		say("| containers already running (each build) | A median ms per start | A p90 ms | B median ms | B p90 ms |\n|---|---|---|---|---|\n")
	}
	for b := 0; b < n; b += 100 {
		s := starts[b:min(b+100, n)]
		if cB == nil {
			say("| %d–%d | %s | %s |\n", b, b+len(s)-1, bench.Ms(s.Median()), bench.Ms(s.P90()))
			continue
		}
		sb := startsB[b:min(b+100, n)]
		say("| %d–%d | %s | %s | %s | %s |\n", b, b+len(s)-1, bench.Ms(s.Median()), bench.Ms(s.P90()), bench.Ms(sb.Median()), bench.Ms(sb.P90()))
	}

	// List and get-all.
	type q struct {
		name string
		reps int
		f    func() error
	}
	qs := []q{
		{"List, Go client over Varlink", 20, func() error { _, err := c.List(ctx); return err }},
		{"List, Go client over D-Bus", 20, func() error { _, err := dc.List(ctx); return err }},
		{"Get(all names, [state]), Go client over Varlink", 20, func() error { _, err := c.Get(ctx, names, []string{"state"}); return err }},
		{"Get(all names, [state]), Go client over D-Bus", 20, func() error { _, err := dc.Get(ctx, names, []string{"state"}); return err }},
		{"`portoctl list` (Varlink, whole process)", 10, func() error { return env.RunCtl("list") }},
	}
	say("\n| query with %d containers | median ms | p90 ms | n |\n|---|---|---|---|\n", n)
	prof(false)
	for _, x := range qs {
		var s bench.Sample
		for range x.reps {
			t := time.Now()
			if err := x.f(); err != nil {
				return fmt.Errorf("%s: %w", x.name, err)
			}
			s = append(s, time.Since(t))
		}
		say("| %s | %s | %s | %d |\n", x.name, bench.Ms(s.Median()), bench.Ms(s.P90()), len(s))
	}

	queryProf := prof(true)

	// Destroy all.
	progress("scale %d: destroying", n)
	prof(false)
	var destroys bench.Sample
	cpu0 = cpu()
	t0 = time.Now()
	var destroysB bench.Sample
	for _, name := range names {
		t := time.Now()
		if err := c.Destroy(ctx, name); err != nil {
			return fmt.Errorf("destroy %s: %w", name, err)
		}
		destroys = append(destroys, time.Since(t))
		if cB != nil {
			t := time.Now()
			if err := cB.Destroy(ctx, name); err != nil {
				return fmt.Errorf("B destroy %s: %w", name, err)
			}
			destroysB = append(destroysB, time.Since(t))
		}
	}
	destroyAll := time.Since(t0)
	cpuRow("destroy all", cpu0, cpu())
	destroyProf := prof(true)
	m2, w2, err := env.DaemonRSS()
	if err != nil {
		return err
	}
	say("\nDestroy all, one at a time: %s in all; per container median %s ms, p90 %s ms.\n\n", destroyAll.Round(time.Millisecond), bench.Ms(destroys.Median()), bench.Ms(destroys.P90()))
	if cB != nil {
		say("Build B's destroys, alternating with these: median %s ms, p90 %s ms (the total above includes them).\n\n", bench.Ms(destroysB.Median()), bench.Ms(destroysB.P90()))
	}
	perC := func(a, b int64) string { return fmt.Sprintf("%.1f", float64(b-a)/float64(n)) }
	say("| daemon VmRSS kB | master | worker | master + worker |\n|---|---|---|---|\n")
	say("| after 20 warm-up lifecycles, no container | %d | %d | %d |\n", m0, w0, m0+w0)
	say("| with %d running | %d | %d | %d |\n", n, m1, w1, m1+w1)
	say("| per container | %s | %s | **%s** |\n", perC(m0, m1), perC(w0, w1), perC(m0+w0, m1+w1))
	say("| after destroying all | %d | %d | %d |\n", m2, w2, m2+w2)
	say("\n| daemon CPU time (user+system) | master ms | worker ms | master ms per container | worker ms per container |\n|---|---|---|---|---|\n%s\n", strings.Join(cpuRows, "\n"))
	say("\nTasks (threads included) in porto's cgroups (pids.current of its root): %d with %d running, %.2f per container: no helper process beside each container's command.\n", tasks1-tasks0, n, float64(tasks1-tasks0)/float64(n))
	if startProf != "" {
		say("\nWorker CPU profiles: start phase `%s`, queries `%s`, destroy phase `%s`.\n", startProf, queryProf, destroyProf)
	}
	return nil
}
