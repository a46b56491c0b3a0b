package ctl

import (
	"fmt"
	"strings"

	"github.com/porto-dev/porto/api"
	"github.com/spf13/pflag"
)

var cmdRun = &command{
	mutating: true,
	name:     "run",
	synopsis: "NAME [KEY=VALUE...]",
	summary:  "create a container, set properties and start it",
	help: "Create container NAME, set each property in the order given, and start it.\n" +
		"On any failure the container is destroyed again and the exit status is the\n" +
		"failure's; a container that already existed is never touched.\n\n" +
		"Each property is KEY=VALUE in one word; \"KEY = VALUE\", \"KEY= VALUE\" and\n" +
		"\"KEY =VALUE\" spread over several words are accepted too. In the \"KEY= VALUE\"\n" +
		"form the next word is taken as the value unless it is itself a KEY=VALUE word\n" +
		"(a lower-case property name followed by '='), so a trailing \"KEY=\" or one\n" +
		"followed by another property sets an empty value.",
	minArgs: 1,
	maxArgs: -1,
	setup: func(*pflag.FlagSet) runFunc {
		return func(x *CLI, args []string) int {
			props, err := parseProperties(args[1:])
			if err != nil {
				return x.fail("set property", err)
			}
			return x.run(args[0], props)
		}
	},
}

// property is one KEY=VALUE argument of run.
type property struct {
	Key, Value string
}

// parseProperties parses run's property arguments. See cmdRun's help.
func parseProperties(args []string) ([]property, error) {
	var out []property
	for i := 0; i < len(args); i++ {
		a := args[i]
		eq := strings.IndexByte(a, '=')
		switch {
		case eq > 0 && eq < len(a)-1: // key=value
			out = append(out, property{a[:eq], a[eq+1:]})
		case eq > 0: // "key=" [value]
			p := property{Key: a[:eq]}
			if i+1 < len(args) && !looksLikeProperty(args[i+1]) {
				i++
				p.Value = args[i]
			}
			out = append(out, p)
		case eq < 0 && i+1 < len(args) && args[i+1] == "=": // key = [value]
			p := property{Key: a}
			i++
			if i+1 < len(args) {
				i++
				p.Value = args[i]
			}
			out = append(out, p)
		case eq < 0 && i+1 < len(args) && strings.HasPrefix(args[i+1], "="): // key =value
			out = append(out, property{a, args[i+1][1:]})
			i++
		default:
			return nil, api.Errorf(api.InvalidValue, "expected KEY=VALUE, got %q", a)
		}
	}
	return out, nil
}

// looksLikeProperty tells whether a is a key=value word for a property:
// a lower-case property name (letters, digits, '_', '.', '[', ']') before
// the first '='. Environment assignments (A=1) and text do not.
func looksLikeProperty(a string) bool {
	eq := strings.IndexByte(a, '=')
	if eq <= 0 {
		return false
	}
	for i := 0; i < eq; i++ {
		c := a[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '[' || c == ']') {
			return false
		}
	}
	return a[0] >= 'a' && a[0] <= 'z'
}

// run creates name, sets props in order and starts it; on any failure it
// destroys the container it created.
func (x *CLI) run(name string, props []property) int {
	c, st := x.conn()
	if c == nil {
		return st
	}
	if err := c.Create(x.ctx(), name); err != nil {
		return x.fail("create container", err)
	}
	status := ExitOK
	for _, p := range props {
		if err := c.SetProperty(x.ctx(), name, p.Key, p.Value); err != nil {
			status = x.fail("set property", err)
			break
		}
	}
	if status == ExitOK {
		if err := c.Start(x.ctx(), name); err != nil {
			// "start property" (sic): the seed's Isolation section shows
			// exactly this line for a run whose start fails, so run keeps
			// old Porto's wording; the start command says "start container".
			status = x.fail("start property", err)
		}
	}
	if status != ExitOK {
		if err := c.Destroy(x.ctx(), name); err != nil {
			x.fail("destroy container", err)
		}
	}
	return status
}

// String is "key=value".
func (p property) String() string { return fmt.Sprintf("%s=%s", p.Key, p.Value) }
