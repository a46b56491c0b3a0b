package ctl

import (
	"bytes"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/porto-dev/porto/api"
)

// The seed (testdata/seed.txt, a copy of the project's spec) is replayed
// through CLI.Run against the fake daemon, and every portoctl line's output
// must be the seed's, byte for byte.
//
// What is not portoctl's to prove is stubbed, and said so here:
//   - the content of stdout and the root_pid a container reports come from
//     the daemon, so before "get X stdout" / "get X root_pid" the fake is
//     given the value the seed shows (what is tested is that portoctl
//     prints it unchanged, with exactly one final newline);
//   - the seed's sections are independent examples: the fake daemon is
//     fresh at each "# Section", and a container that an earlier example
//     left behind is removed before a "run"/"create" of the same name that
//     the seed shows succeeding;
//   - host commands are skipped (id, ls, mkdir, cat, echo) except
//     "bash /tmp/bringup /bin/X /tmp/porto/", which puts X in the fake's
//     chroot, and "kill -9 $(portoctl get C root_pid)", which runs the get
//     through portoctl and kills that pid in the fake;
//   - pipelines ("portoctl get ... | wc -l") are skipped;
//   - "portoctl top" runs against the two containers and the statistics
//     the Statistics example shows.

const seedCopy = "testdata/seed.txt"

// The project's copy of the seed, when this tree is in its usual place.
const seedOriginal = "../../shared/seed/000_eed16f4d936dbb3d.txt"

type seedStep struct {
	line     int
	section  string
	cmd      string
	expected []string
}

func parseSeed(t *testing.T, text string) []seedStep {
	t.Helper()
	var steps []seedStep
	section := ""
	fenced := false
	var cur *seedStep
	flush := func() {
		if cur != nil {
			for len(cur.expected) > 0 && cur.expected[len(cur.expected)-1] == "" {
				cur.expected = cur.expected[:len(cur.expected)-1]
			}
			steps = append(steps, *cur)
			cur = nil
		}
	}
	for i, line := range strings.Split(text, "\n") {
		var code string
		isCode := false
		switch {
		case strings.HasPrefix(line, "```"):
			flush()
			fenced = !fenced
			continue
		case fenced:
			code, isCode = line, true
		case strings.HasPrefix(line, "        "):
			code, isCode = line[8:], true
		case strings.HasPrefix(line, "# "):
			flush()
			section = line[2:]
			continue
		}
		if !isCode {
			if strings.TrimSpace(line) != "" {
				flush()
			}
			continue
		}
		switch {
		case strings.HasPrefix(code, "$ "):
			flush()
			cur = &seedStep{line: i + 1, section: section, cmd: code[2:]}
		case strings.HasPrefix(code, "# "):
			// a comment in the transcript
		case cur != nil:
			cur.expected = append(cur.expected, code)
		}
	}
	flush()
	return steps
}

func TestSeedCopyIsCurrent(t *testing.T) {
	orig, err := os.ReadFile(seedOriginal)
	if err != nil {
		t.Skipf("original seed not available: %v", err)
	}
	cp, err := os.ReadFile(seedCopy)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(orig, cp) {
		t.Fatalf("%s differs from %s: copy it again", seedCopy, seedOriginal)
	}
}

func TestSeedReplay(t *testing.T) {
	text, err := os.ReadFile(seedCopy)
	if err != nil {
		t.Fatal(err)
	}
	steps := parseSeed(t, string(text))
	if len(steps) < 50 {
		t.Fatalf("parsed only %d steps from the seed", len(steps))
	}
	var f *fake
	section := "\x00"
	var transcript strings.Builder
	ran := 0
	for _, st := range steps {
		if st.section != section {
			section = st.section
			f = newFake()
			transcript.WriteString("# " + section + "\n")
		}
		cmd := st.cmd
		caller := "stfomichev"
		if strings.HasPrefix(cmd, "sudo ") {
			caller, cmd = "root", strings.TrimPrefix(cmd, "sudo ")
		}
		cmd = strings.TrimPrefix(cmd, "./")
		f.caller = caller
		words := shellWords(cmd)

		switch {
		case strings.HasPrefix(cmd, "kill -9 $(portoctl get ") && strings.HasSuffix(cmd, " root_pid)"):
			name := strings.Fields(cmd)[4]
			r := runCLI(f, []string{"get", name, "root_pid"})
			if r.status != 0 || !f.killPid(strings.TrimSpace(r.stdout), 9) {
				t.Fatalf("seed line %d: %q: get root_pid gave %q, status %d", st.line, cmd, r.all, r.status)
			}
			transcript.WriteString("$ " + st.cmd + "\n")
			continue
		case len(words) == 4 && words[0] == "bash" && words[1] == "/tmp/bringup":
			f.chrootBin[words[2][strings.LastIndexByte(words[2], '/')+1:]] = true
			transcript.WriteString("$ " + st.cmd + "\n")
			continue
		case words[0] != "portoctl" || slices.Contains(words, "|"):
			continue // a host command or a pipeline
		}
		args := words[1:]
		prepareSeedStep(t, f, args, st.expected)

		r := runCLI(f, args)
		ran++
		transcript.WriteString("$ " + st.cmd + "\n" + r.all)
		if r.status != 0 {
			transcript.WriteString("[exit status " + strconv.Itoa(r.status) + "]\n")
		}
		want := ""
		if len(st.expected) > 0 {
			want = strings.Join(st.expected, "\n") + "\n"
		}
		if r.all != want {
			t.Errorf("seed line %d (%s): $ %s\nwant %q\ngot  %q", st.line, st.section, st.cmd, want, r.all)
		}
		// An error line is exactly what makes the exit status non-zero.
		if failed := r.stderr != ""; failed != (r.status != 0) {
			t.Errorf("seed line %d: $ %s: stderr %q but exit status %d", st.line, st.cmd, r.stderr, r.status)
		}
	}
	if ran < 60 {
		t.Errorf("replayed only %d portoctl lines", ran)
	}
	golden(t, "seed_replay.golden", transcript.String())
}

// prepareSeedStep stubs, in the fake, what the daemon itself would produce
// (see the comment at the top of this file).
func prepareSeedStep(t *testing.T, f *fake, args, expected []string) {
	if len(args) == 0 {
		return
	}
	switch {
	case (args[0] == "run" || args[0] == "create") && len(args) > 1 && len(expected) == 0:
		if ct, ok := f.cts[args[1]]; ok {
			for _, c := range f.children(ct.name) {
				delete(f.cts, c.name)
			}
			delete(f.cts, ct.name)
		}
	case args[0] == "get" && len(args) == 3 && args[2] == "stdout":
		if ct, ok := f.cts[args[1]]; ok {
			ct.data["stdout"] = strings.Join(expected, "\n") + "\n"
		}
	case args[0] == "get" && len(args) == 3 && args[2] == "root_pid" && len(expected) == 1:
		if ct, ok := f.cts[args[1]]; ok {
			ct.data["root_pid"] = expected[0]
		}
	case args[0] == "top":
		*f = *newFake()
		f.cts["meta"] = &fakeCt{name: "meta", state: api.StateMeta, owner: f.caller,
			props: map[string]string{}, data: map[string]string{"cpu_usage": "2467980", "memory_usage": "1048576"}}
		for name, stats := range map[string][2]string{
			"meta/child1": {"1417320", "225280"}, // 1.41732ms, 220K
			"meta/child2": {"1050660", "212992"}, // 1.05066ms, 208K
		} {
			f.cts[name] = &fakeCt{name: name, state: api.StateRunning, owner: f.caller,
				props: map[string]string{"command": "sleep 1000"},
				data: map[string]string{"cpu_usage": stats[0], "memory_usage": stats[1], "major_faults": "0",
					"minor_faults": map[string]string{"meta/child1": "82", "meta/child2": "83"}[name],
					"net_packets":  "em1: 0"}}
		}
	}
}
