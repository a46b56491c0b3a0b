package supervise

import (
	"github.com/porto-dev/porto/isolation"
)

// Warm isolation stages, the master's side (the worker's is warm.go).
//
// Starting a container used to begin with fork+exec of "portod __isolate"
// into new namespaces: the clone of the namespaces, the exec and the start
// of a Go runtime, about 2.5 ms, all on the path of the caller's Start.
// Now the worker asks ahead of time (opWarm) for stages of the clone flags
// it uses; the master starts them (isolation.LaunchWarm: the stage waits
// for its files on a socket) and sends each to the worker with its socket
// (opWarmed). The stage is the master's child like every container
// process; the worker hands it the files of a start itself.
//
// A warm stage is launched like any spawn (tracker.beginSpawn/endSpawn),
// so its pid is known before the worker can see it, and its exit is
// reported to the worker like any other: the container's first process if
// it was used, else a pid the worker does not know and acknowledges.

const (
	maxWarmPerRequest = 8  // stages one opWarm may ask for
	maxWarmInflight   = 16 // warm launches at once
)

// askWarm starts the warm stages worker generation gen asked for.
func (m *master) askWarm(gen int, flags uintptr, n int, epoch uint64) {
	if m.stopping || m.upgrading || m.opts.StagePool <= 0 {
		m.reply(gen, &message{Op: opWarmed, Flags: flags, Epoch: epoch, Error: "warm stages are off"})
		return
	}
	n = min(n, maxWarmPerRequest, maxWarmInflight-m.warmInflight)
	for i := 0; i < n; i++ {
		m.warmInflight++
		seq := m.t.beginSpawn()
		go func() {
			ev := event{kind: evWarm, gen: gen, seq: seq, flags: flags, epoch: epoch}
			ev.pid, ev.ctl, ev.err = isolation.LaunchWarm(m.opts.Stage, flags)
			m.events <- ev
		}()
	}
}

// warmLaunched sends a finished warm launch to the worker that asked.
func (m *master) warmLaunched(ev event) {
	m.warmInflight--
	if ev.err != nil {
		m.deliver(m.t.endSpawn(ev.seq, 0))
		m.log.Warn("supervisor: cannot start a warm isolation stage", "err", ev.err)
		m.reply(ev.gen, &message{Op: opWarmed, Flags: ev.flags, Epoch: ev.epoch, Error: ev.err.Error()})
		return
	}
	released := m.t.endSpawn(ev.seq, ev.pid)
	if w := m.current(ev.gen); w != nil && w.up && !m.stopping {
		// The queue owns the socket now; if it is never sent it is closed
		// and the stage exits.
		w.q.pushFile(encode(&message{Op: opWarmed, Pid: ev.pid, Flags: ev.flags, Epoch: ev.epoch}), ev.ctl)
	} else {
		ev.ctl.Close() // the stage exits; the next worker acknowledges it
	}
	m.deliver(released)
}

// deliver sends exits to the worker.
func (m *master) deliver(exits []isolation.Exit) {
	for _, e := range exits {
		m.sendExit(e)
	}
}
