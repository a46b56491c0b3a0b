package main

import (
	"fmt"
	"time"

	"github.com/porto-dev/porto/api/client"
	"github.com/porto-dev/porto/bench"
)

// steps records the time of each step of the Go client's lifecycle.
type steps map[string]bench.Sample

// lifecycle runs create, set command=true, start, wait, destroy of name
// through c, recording each step in st when st is not nil.
func lifecycle(c *client.Client, name string, st steps) error {
	ctx, cancel := withTimeout()
	defer cancel()
	t := time.Now()
	lap := func(step string) {
		if st != nil {
			now := time.Now()
			st[step] = append(st[step], now.Sub(t))
			t = now
		}
	}
	if err := c.Create(ctx, name); err != nil {
		return err
	}
	lap("create")
	if err := c.SetProperty(ctx, name, "command", "true"); err != nil {
		return err
	}
	lap("set command")
	if err := c.Start(ctx, name); err != nil {
		return err
	}
	lap("start")
	got, err := c.Wait(ctx, []string{name}, 20*time.Second)
	if err != nil {
		return err
	}
	if got != name {
		return fmt.Errorf("wait %s: got %q", name, got)
	}
	lap("wait")
	if err := c.Destroy(ctx, name); err != nil {
		return err
	}
	lap("destroy")
	return nil
}

func suiteLifecycle() error {
	env, err := startEnv(options())
	if err != nil {
		return err
	}
	defer closeEnv(env)
	dbusC, err := env.Client(client.TransportDBus)
	if err != nil {
		return err
	}
	vlC, err := env.Client(client.TransportVarlink)
	if err != nil {
		return err
	}
	defer vlC.Close()
	i := 0
	name := func(p string) string { i++; return fmt.Sprintf("lc-%s-%d", p, i) }
	st := steps{}
	ctl := func(transport string) func() error {
		return func() error {
			n := name("ctl")
			for _, args := range [][]string{{"run", n, "command=true"}, {"wait", n}, {"destroy", n}} {
				if err := env.RunCtl(append([]string{"--transport=" + transport}, args...)...); err != nil {
					return err
				}
			}
			return nil
		}
	}
	const (
		floor = "floor: `unshare --pid --fork --mount-proc true`"
		goVL  = "Go client over Varlink: create, set command, start, wait, destroy"
	)
	cases := []bench.Case{
		{Name: floor, Run: unshareFloor},
		{Name: "fork+exec `/bin/true`", Run: trueFloor},
		{Name: "Go client over D-Bus: create, set command, start, wait, destroy", Run: func() error { return lifecycle(dbusC, name("dbus"), nil) }},
		{Name: goVL, Run: func() error { return lifecycle(vlC, name("vl"), st) }},
		{Name: "portoctl over Varlink: `run x command=true; wait x; destroy x`", Run: ctl(client.TransportVarlink)},
		{Name: "portoctl over D-Bus: same", Run: ctl(client.TransportDBus)},
	}
	if *flagBinB != "" || *flagConfB != "" {
		// A second build (or configuration), interleaved with the first:
		// before/after figures of a change from one run.
		ob := options()
		ob.Pprof, ob.Conf = "", append(ob.Conf, confB()...)
		if *flagBinB != "" {
			ob.Bin = *flagBinB
		}
		envB, err := startEnv(ob)
		if err != nil {
			return fmt.Errorf("-bin-b: %w", err)
		}
		defer closeEnv(envB)
		vlB, err := envB.Client(client.TransportVarlink)
		if err != nil {
			return err
		}
		defer vlB.Close()
		label := "B build (" + *flagBinB + ")"
		if *flagBinB == "" {
			label = "B (" + *flagConfB + ")"
		} else if *flagConfB != "" {
			label += " with " + *flagConfB
		}
		cases = append(cases, bench.Case{Name: label + ": Go client over Varlink", Run: func() error { return lifecycle(vlB, name("vlb"), nil) }})
	}
	if *flagPprof != "" {
		if _, err := env.Profile(*flagPprof, false); err != nil {
			return err
		}
	}
	progress("lifecycle: %d x %d contenders", *flagN, len(cases))
	res, err := bench.Interleave(*flagN, *flagWarm, cases)
	if err != nil {
		return err
	}
	prof := ""
	if *flagPprof != "" {
		if prof, err = env.Profile(*flagPprof, true); err != nil {
			return err
		}
	}
	base := res[floor].Median()
	say("\n## Lifecycle of `true`\n\n%d interleaved iterations of each contender after %d warm-ups; whole commands for the floors and portoctl, API calls on an open connection for the Go client. cgroupfs driver, isolate=true (a pid namespace, like the floor).\n\n", *flagN, *flagWarm)
	tableHead("the unshare floor")
	for _, c := range cases {
		row(c.Name, res[c.Name], base)
	}
	say("\nSteps of the Go client over Varlink (medians, ms):")
	for _, s := range []string{"create", "set command", "start", "wait", "destroy"} {
		say(" %s %s (p90 %s);", s, bench.Ms(st[s].Median()), bench.Ms(st[s].P90()))
	}
	say("\n")
	if prof != "" {
		say("\nWorker CPU profile of this suite: `%s` (`go tool pprof -top bin/portod %s`).\n", prof, prof)
	}
	return nil
}

// closeEnv tears env down and reports what was left behind.
func closeEnv(env *bench.Env) {
	progress("teardown")
	liveMu.Lock()
	defer liveMu.Unlock()
	delete(live, env)
	if err := env.Close(); err != nil {
		say("\n**teardown: %v**\n", err)
	}
}
