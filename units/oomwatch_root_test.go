package units

import (
	"testing"
	"time"
)

// The OOM watch counts OOMs across the removal of the memory cgroup, and
// the removal itself is not an OOM.
func TestOOMWatchSurvivesRemoval(t *testing.T) {
	v := newTestV1(t)
	for _, n := range []string{"oom", "quiet"} {
		if err := v.Create(n); err != nil {
			t.Fatal(err)
		}
	}
	if err := v.Apply("oom", Limits{MemoryLimit: 32 << 20}); err != nil {
		t.Fatal(err)
	}
	wOOM, err := newOOMWatch(v.Path("oom", "memory"))
	if err != nil {
		t.Fatal(err)
	}
	defer wOOM.close()
	wQuiet, err := newOOMWatch(v.Path("quiet", "memory"))
	if err != nil {
		t.Fatal(err)
	}
	defer wQuiet.close()

	cmd := startIn(t, v, "oom", "head -c 512M /dev/zero | tail")
	cmd.Wait()
	st, err := v.Stats("oom")
	if err != nil {
		t.Fatal(err)
	}
	if st.OOMKills < 1 {
		t.Fatalf("memory.oom_control oom_kill = %d, want >= 1 (%v)", st.OOMKills, cmd.ProcessState)
	}
	if k, err := v.OOMKills("oom"); err != nil || k != st.OOMKills {
		t.Errorf("OOMKills = %d, %v; Stats says %d", k, err, st.OOMKills)
	}
	if got := wOOM.count(0); got < 1 {
		t.Errorf("watch before removal: %d OOMs, want >= 1", got)
	}
	for _, n := range []string{"oom", "quiet"} {
		if err := v.Remove(n); err != nil {
			t.Fatal(err)
		}
	}
	// One kill may take more than one OOM of the cgroup (allocations
	// that fail again before the victim is gone): the watch counts OOMs.
	t0 := time.Now()
	defer func() { t.Logf("removal seen after %v", time.Since(t0)) }()
	if got := wOOM.count(5 * time.Second); got < 1 || !wOOM.removed {
		t.Errorf("watch after removal: %d OOMs (removed %v), want >= 1 (removed)", got, wOOM.removed)
	}
	if got := wQuiet.count(5 * time.Second); got != 0 {
		t.Errorf("quiet watch after removal: %d OOMs, want 0", got)
	}
}
