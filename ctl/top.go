package ctl

import (
	"fmt"
	"os"
	"os/signal"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/porto-dev/porto/api"
	"github.com/spf13/pflag"
)

// topColumns are top's data columns, in order (the seed's).
var topColumns = []string{"cpu_usage", "memory_usage", "major_faults", "minor_faults", "net_packets"}

var cmdTop = &command{
	name:     "top",
	synopsis: "[-b] [-d SECONDS]",
	summary:  "show container statistics",
	help: "Show cpu_usage, memory_usage, major_faults, minor_faults and net_packets of the\n" +
		"running, paused and dead containers, sorted by a column (highest first; cpu_usage\n" +
		"by default).\n\n" +
		"When stdin and stdout are a terminal, the table is redrawn in place every\n" +
		"SECONDS; keys: 1-5 sort by that column, 0 sort by name, q quit. Otherwise (or\n" +
		"with -b) one table is printed and portoctl exits.",
	minArgs:      0,
	maxArgs:      0,
	interspersed: true,
	setup: func(fs *pflag.FlagSet) runFunc {
		batch := fs.BoolP("batch", "b", false, "print one table and exit, even on a terminal")
		delay := fs.Float64P("delay", "d", 1, "redraw every `SECONDS` on a terminal (default 1)")
		return func(x *CLI, args []string) int {
			c, st := x.conn()
			if c == nil {
				return st
			}
			if !x.Terminal || *batch {
				out, err := topTable(x, c, 0)
				if err != nil {
					return x.fail("list containers", err)
				}
				fmt.Fprint(x.Stdout, out)
				return ExitOK
			}
			interval := x.RefreshInterval
			if fs.Changed("delay") || interval <= 0 {
				interval = seconds(*delay)
			}
			if interval <= 0 {
				interval = time.Second
			}
			return x.topLoop(c, interval)
		}
	},
}

// topTable renders one table sorted by column sortBy (an index in
// topColumns, highest first) or by name (sortBy < 0). Layout as in the
// seed: a left-aligned container column as wide as the longest name (at
// least "container") plus one, then each column right-aligned in the width
// of its longest cell plus one.
func topTable(x *CLI, c Client, sortBy int) (string, error) {
	all, err := c.List(x.ctx())
	if err != nil {
		return "", err
	}
	var names []string
	for _, n := range all {
		if n != api.RootName && n != "" {
			names = append(names, n)
		}
	}
	type row struct {
		name  string
		raw   []string
		human []string
	}
	var rows []row
	if len(names) > 0 {
		res, err := c.Get(x.ctx(), names, append([]string{"state"}, topColumns...))
		if err != nil {
			return "", err
		}
		cells := index(res)
		for _, n := range names {
			st := cells[cell{n, "state"}]
			if st.Err != nil {
				continue
			}
			switch api.State(st.Value) {
			case api.StateRunning, api.StatePaused, api.StateDead:
			default:
				continue
			}
			r := row{name: n}
			for _, k := range topColumns {
				// A datum the daemon cannot give is "-" (net_packets
				// where porto.conf turns traffic control off).
				v := cells[cell{n, k}]
				h := HumanValue(k, v.Value)
				if v.Err != nil {
					v.Value, h = "", "-"
				}
				r.raw = append(r.raw, v.Value)
				r.human = append(r.human, h)
			}
			rows = append(rows, r)
		}
	}
	sort.SliceStable(rows, func(i, j int) bool {
		if sortBy < 0 || sortBy >= len(topColumns) || rows[i].raw[sortBy] == rows[j].raw[sortBy] {
			return rows[i].name < rows[j].name
		}
		a, b := rows[i].raw[sortBy], rows[j].raw[sortBy]
		an, aerr := strconv.ParseInt(a, 10, 64)
		bn, berr := strconv.ParseInt(b, 10, 64)
		if aerr != nil || berr != nil {
			return a > b
		}
		return an > bn
	})

	col := []string{}
	for _, r := range rows {
		col = append(col, r.name)
	}
	nameW := fieldWidth(col, len("container"))
	widths := make([]int, len(topColumns))
	for i, k := range topColumns {
		vals := []string{k}
		for _, r := range rows {
			vals = append(vals, r.human[i])
		}
		widths[i] = fieldWidth(vals, 0)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%-*s", nameW, "container")
	for i, k := range topColumns {
		fmt.Fprintf(&b, "%*s", widths[i], k)
	}
	b.WriteString("\n")
	for _, r := range rows {
		fmt.Fprintf(&b, "%-*s", nameW, r.name)
		for i := range topColumns {
			fmt.Fprintf(&b, "%*s", widths[i], r.human[i])
		}
		b.WriteString("\n")
	}
	return b.String(), nil
}

const (
	clearScreen = "\033[H\033[2J"
	topKeysHelp = "keys: 1-5 sort by column, 0 sort by name, q quit"
)

// topLoop redraws the table every interval until q, EOF on stdin, SIGINT
// or SIGTERM. The terminal is put in non-canonical no-echo mode (through
// termios ioctls of package syscall; ctl does not link x/sys) so that keys
// arrive one by one, and restored on the way out.
func (x *CLI) topLoop(c Client, interval time.Duration) int {
	if f, ok := x.Stdin.(*os.File); ok {
		if restore, err := rawMode(f); err == nil {
			defer restore()
		}
	}
	keys := make(chan byte)
	go func() {
		defer close(keys)
		buf := make([]byte, 1)
		for {
			n, err := x.Stdin.Read(buf)
			if n == 1 {
				keys <- buf[0]
			}
			if err != nil {
				return
			}
		}
	}()
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	tick := time.NewTicker(interval)
	defer tick.Stop()

	sortBy := 0
	for {
		out, err := topTable(x, c, sortBy)
		if err != nil {
			e := api.AsError(err)
			out = fmt.Sprintf("Can't list containers: %s (%s)\n", e.Code, e.Message())
		}
		by := "name"
		if sortBy >= 0 {
			by = topColumns[sortBy]
		}
		fmt.Fprintf(x.Stdout, "%s%s\nsorted by %s; %s\n", clearScreen, out, by, topKeysHelp)
		for redraw := false; !redraw; {
			select {
			case k, ok := <-keys:
				redraw = true
				switch {
				case !ok || k == 'q' || k == 'Q' || k == 3 /* ^C */ || k == 4 /* ^D */ :
					return ExitOK
				case k == '0':
					sortBy = -1
				case k >= '1' && int(k-'1') < len(topColumns):
					sortBy = int(k - '1')
				case k == ' ' || k == '\n' || k == '\r':
					// redraw now
				default:
					redraw = false
				}
			case <-tick.C:
				redraw = true
			case <-sigs:
				return ExitOK
			}
		}
	}
}
