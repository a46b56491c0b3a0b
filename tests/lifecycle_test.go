package tests

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Concurrent clients, leaks after destroy / failed start / portod exit, and
// stop/destroy killing every process of a container.

func TestConcurrentClients(t *testing.T) { forEachTransport(t, testConcurrentClients) }

func testConcurrentClients(t *testing.T, e *Env) {
	e.CleanupContainers(t)
	const workers, rounds = 8, 50
	a := alice(t)
	var wg sync.WaitGroup
	errs := make(chan string, workers*rounds)
	start := time.Now()
	for w := range workers {
		u := rootUser
		if w%2 == 1 {
			u = a
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range rounds {
				name := fmt.Sprintf("conc-%d-%d", w, i)
				steps := [][]string{
					{"create", name},
					{"set", name, "command", "bash -c 'exit " + strconv.Itoa(i%3) + "'"},
					{"start", name},
					{"wait", name, "-t", "60"},
				}
				failed := false
				for _, s := range steps {
					if r := e.Ctl(u, s...); r.Code != 0 {
						errs <- fmt.Sprintf("as %s: %s", u.Name, r)
						failed = true
						break
					}
				}
				if !failed {
					if r := e.Ctl(u, "dget", name, "exit_status"); r.Code != 0 || strings.TrimSpace(r.Stdout) != strconv.Itoa((i%3)<<8) {
						errs <- fmt.Sprintf("as %s: exit_status of %s: want %d, got %s", u.Name, name, (i%3)<<8, r)
					}
				}
				if r := e.Ctl(u, "destroy", name); r.Code != 0 {
					errs <- fmt.Sprintf("as %s: %s", u.Name, r)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	n := 0
	for msg := range errs {
		if n++; n <= 20 {
			t.Error(msg)
		}
	}
	if n > 20 {
		t.Errorf("... and %d more errors", n-20)
	}
	t.Logf("%d clients x %d create/set/start/wait/dget/destroy rounds in %v", workers, rounds, time.Since(start))
	if !e.PortodAlive() {
		t.Fatalf("portod died\n%s", e.LogTail())
	}

	// Races on one name: exactly one create and one destroy win.
	for round := range 5 {
		name := fmt.Sprintf("race-%d", round)
		var mu sync.Mutex
		codes := map[string]int{}
		race := func(args ...string) {
			var wg sync.WaitGroup
			for range workers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					r := e.Ctl(rootUser, args...)
					key := "ok"
					if r.Code != 0 {
						key = strings.TrimSpace(r.Stderr)
					}
					mu.Lock()
					codes[args[0]+": "+key]++
					mu.Unlock()
				}()
			}
			wg.Wait()
		}
		race("create", name)
		race("destroy", name)
		if codes["create: ok"] != 1 || codes["destroy: ok"] != 1 {
			t.Errorf("racing create/destroy of %s: %v", name, codes)
		}
		for k := range codes {
			if strings.HasPrefix(k, "create: ") && k != "create: ok" && !strings.Contains(k, "ContainerAlreadyExists") ||
				strings.HasPrefix(k, "destroy: ") && k != "destroy: ok" && !strings.Contains(k, "ContainerDoesNotExist") {
				t.Errorf("racing %s: unexpected %q", name, k)
			}
		}
	}
}

// waitGone waits until no live process has exactly this command line.
func waitGone(t *testing.T, cmdline string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		procs := ProcsByCmdline(cmdline)
		if len(procs) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("%q still running (pid %d)", cmdline, procs[0].pid)
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitRunning waits until a process with exactly this command line runs.
func waitRunning(t *testing.T, cmdline string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for len(ProcsByCmdline(cmdline)) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%q did not start", cmdline)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Stop and destroy kill every process of the container, daemonized ones
// (reparented, new session) included.
func TestKillsDaemonized(t *testing.T) {
	e := NewEnv(t)
	for _, u := range users(t) {
		for _, isolate := range []string{"false", "true"} {
			t.Run(u.Name+"/isolate="+isolate, func(t *testing.T) {
				e.CleanupContainers(t)
				base := 70000 + 1000*len(u.Name) + 100*len(isolate) + os.Getpid()%97
				s1, s2, s3 := fmt.Sprintf("sleep %d", base+1), fmt.Sprintf("sleep %d", base+2), fmt.Sprintf("sleep %d", base+3)
				// Stop a running container whose children daemonized.
				e.OK(t, u, "run", "d", "isolate="+isolate,
					fmt.Sprintf("command=bash -c '%s & disown; setsid %s & disown; exec %s'", s1, s2, s3))
				for _, c := range []string{s1, s2, s3} {
					waitRunning(t, c)
				}
				e.Expect(t, u, "running", "get", "d", "state")
				e.OK(t, u, "stop", "d")
				e.Expect(t, u, "stopped", "get", "d", "state")
				for _, c := range []string{s1, s2, s3} {
					waitGone(t, c, 5*time.Second)
				}

				// The main process exits and leaves a daemon behind: dead,
				// and destroy kills the daemon.
				s4 := fmt.Sprintf("sleep %d", base+4)
				e.OK(t, u, "set", "d", "command", fmt.Sprintf("bash -c 'setsid %s & disown; exit 3'", s4))
				e.OK(t, u, "start", "d")
				e.WaitState(t, u, "d", "dead")
				e.Expect(t, u, "Container exited with 3", "get", "d", "exit_status")
				e.OK(t, u, "destroy", "d")
				waitGone(t, s4, 5*time.Second)
			})
		}
	}
	t.Run("isolate=false/ps", func(t *testing.T) {
		// The seed's Isolation example: without pid isolation the container
		// sees the host's processes.
		//   $ portoctl run ps command="bash -c 'ps aux | wc -l'" isolate=false
		e.CleanupContainers(t)
		e.OK(t, rootUser, "run", "ps", "command=bash -c 'ps aux | wc -l'", "isolate=false")
		e.WaitState(t, rootUser, "ps", "dead")
		n, err := strconv.Atoi(e.Out(t, rootUser, "get", "ps", "stdout"))
		if err != nil || n < 10 {
			t.Errorf("ps aux | wc -l in a non-isolated container = %d (%v), want the host's count", n, err)
		}
		e.OK(t, rootUser, "destroy", "ps")
	})
}

// No stray process, cgroup or file after destroy and after a failed start.
func TestNoLeaks(t *testing.T) {
	e := NewEnv(t)
	for _, u := range users(t) {
		t.Run(u.Name, func(t *testing.T) {
			e.CleanupContainers(t)
			// A running container, destroyed while running.
			e.OK(t, u, "run", "leak", "command=sleep 1000")
			pid, _ := strconv.Atoi(e.Out(t, u, "get", "leak", "root_pid"))
			cgs := ContainerCgroups(pid)
			if len(e.Cgroups()) == 0 {
				t.Errorf("no cgroup under %s while a container runs", e.CgroupRoot)
			}
			e.OK(t, u, "destroy", "leak")
			if p, ok := readProc(pid); ok && p.state != "Z" && p.cmdline == "sleep 1000" {
				t.Errorf("root_pid %d alive after destroy", pid)
			}
			for h, path := range cgs {
				if !e.inRoot(path) {
					continue
				}
				dir := filepath.Join("/sys/fs/cgroup", hierDir(h), path)
				if _, err := os.Stat(dir); err == nil {
					t.Errorf("cgroup %s left after destroy", dir)
				}
			}
			e.assertCleanT(t)

			// A failed start: nothing runs, no cgroup, the container stays.
			e.OK(t, u, "create", "bad")
			e.OK(t, u, "set", "bad", "command", "/nonexistent/binary")
			if r := e.Ctl(u, "start", "bad"); r.Code == 0 {
				t.Fatalf("start of a missing binary succeeded: %s", r)
			}
			e.Expect(t, u, "stopped", "get", "bad", "state")
			if procs := e.ProcsInCgroups(); len(procs) > 0 {
				t.Errorf("processes after a failed start: %v", procs)
			}
			if cgs := e.Cgroups(); len(cgs) > 0 {
				t.Errorf("cgroups after a failed start: %v", cgs)
			}
			// It can still be fixed and started.
			e.OK(t, u, "set", "bad", "command", "true")
			e.OK(t, u, "start", "bad")
			e.WaitState(t, u, "bad", "dead")
			e.OK(t, u, "destroy", "bad")

			// A failed run leaves no container at all.
			if r := e.Ctl(u, "run", "bad2", "command=/nonexistent/binary"); r.Code == 0 {
				t.Errorf("run of a missing binary succeeded: %s", r)
			}
			e.FailWith(t, u, "ContainerDoesNotExist", "get", "bad2", "state")
		})
	}
}

// hierDir maps a controller name from /proc/PID/cgroup to its directory.
func hierDir(c string) string {
	switch c {
	case "name=systemd":
		return "systemd"
	case "unified", "":
		return "unified"
	}
	return c
}

// portod exits with containers running: it must not take them down nor leave
// anything of its own. Then a new portod takes over, and after destroy and
// exit nothing is left (checked by the env's teardown).
func TestPortodExit(t *testing.T) {
	e := NewEnv(t)
	e.OK(t, rootUser, "run", "survivor", "command=sleep 1000")
	pid := e.Out(t, rootUser, "get", "survivor", "root_pid")
	e.OK(t, rootUser, "run", "gone", "command=true")
	e.WaitState(t, rootUser, "gone", "dead")
	if err := e.StopPortod(); err != nil {
		t.Fatalf("%v\n%s", err, e.LogTail())
	}
	if p, ok := readProc(atoi(pid)); !ok || p.state == "Z" {
		t.Errorf("container process %s did not survive portod's exit", pid)
	}
	e.StartPortod()
	e.Expect(t, rootUser, "running", "get", "survivor", "state")
	e.Expect(t, rootUser, pid, "get", "survivor", "root_pid")
	e.Expect(t, rootUser, "Container exited with 0", "get", "gone", "exit_status")
	e.OK(t, rootUser, "destroy", "survivor")
	e.OK(t, rootUser, "destroy", "gone")
	deadline := time.Now().Add(5 * time.Second)
	for {
		p, ok := readProc(atoi(pid))
		if !ok || p.state == "Z" || p.cmdline != "sleep 1000" {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("root_pid %s alive after destroy", pid)
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func atoi(s string) int { n, _ := strconv.Atoi(s); return n }
