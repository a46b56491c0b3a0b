package service

import (
	"context"
	"strconv"
	"strings"
	"testing"

	"github.com/porto-dev/porto/api"
)

// Issue 5: the service's own limit rules (the cgroup side is units').

func TestMemoryLimitHierarchy(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	set := func(name, key, v string) error { return e.m.Set(ctx, root, name, key, v) }
	for _, n := range []string{"h", "h/a", "h/a/x", "h/b"} {
		e.must(e.m.Create(ctx, root, n))
	}
	e.must(set("h", "memory_limit", "100M"))
	for _, c := range []struct {
		name, val string
		ok        bool
	}{
		{"h/a", "200M", false},   // above the parent
		{"h/a/x", "101M", false}, // above the grandparent
		{"h/a", "60M", true},
		{"h/b", "50M", false}, // 60M + 50M > 100M
		{"h/b", "40M", true},
		{"h", "90M", false},     // below its children's 100M
		{"h/a/x", "61M", false}, // above h/a
		{"h/a/x", "60M", true},
		{"h/a", "50M", false}, // below h/a/x
		{"h/a", "0", true},    // unlimited is never refused
		{"h", "0", true},
		{"h/b", "1G", true},
	} {
		err := set(c.name, "memory_limit", c.val)
		if c.ok && err != nil {
			t.Errorf("set %s memory_limit %s: %v", c.name, c.val, err)
		}
		if !c.ok && api.CodeOf(err) != api.InvalidValue {
			t.Errorf("set %s memory_limit %s: %v, want InvalidValue", c.name, c.val, err)
		}
	}
	if got := e.get("h/a/x", "memory_limit"); got != strconv.Itoa(60<<20) {
		t.Errorf("h/a/x memory_limit = %s", got)
	}
	// With h/a unlimited, h/a/x's 60M counts for it in h's sum.
	e.must(set("h", "memory_limit", "2G"))
	if err := set("h", "memory_limit", "1G"); api.CodeOf(err) != api.InvalidValue || !strings.Contains(err.Error(), "child") {
		t.Errorf("h below 1G + 60M: %v", err)
	}
}

func TestMemoryGuaranteeOvercommit(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	total := memTotal()
	if total < 4<<30 {
		t.Skipf("RAM %d: too small for this test", total)
	}
	e.must(e.m.Create(ctx, root, "g"))
	e.must(e.m.Create(ctx, root, "g/c"))
	e.must(e.m.Create(ctx, root, "o"))
	half := strconv.FormatUint((total-memoryGuaranteeReserve)/2, 10)
	e.must(e.m.Set(ctx, root, "g", "memory_guarantee", half))
	// A child's guarantee is inside its parent's, not added to it.
	e.must(e.m.Set(ctx, root, "g/c", "memory_guarantee", half))
	e.must(e.m.Set(ctx, root, "o", "memory_guarantee", half))
	err := e.m.Set(ctx, root, "o", "memory_guarantee", strconv.FormatUint(total-memoryGuaranteeReserve, 10))
	if api.CodeOf(err) != api.ResourceNotAvailable {
		t.Errorf("overcommitting guarantee: %v, want ResourceNotAvailable", err)
	}
	if api.CodeOf(e.m.Set(ctx, root, "g/c", "memory_guarantee", strconv.FormatUint(total, 10))) != api.InvalidValue {
		t.Errorf("child guarantee above the parent's is not InvalidValue")
	}
}
