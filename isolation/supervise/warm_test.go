package supervise

import (
	"os"
	"testing"
	"time"
)

// A warm stage asked for before a mount change (an older epoch) is closed
// on arrival, never kept: it may have been cloned before the mount.
func TestWarmedEpoch(t *testing.T) {
	c := &Client{pool: &warmPool{
		size:    1,
		ready:   map[uintptr][]warmStage{},
		asked:   map[uintptr]int{5: 2},
		askedAt: map[uintptr]time.Time{},
		recent:  []uintptr{5},
		epoch:   3,
	}}
	old, _ := os.Open(os.DevNull)
	c.warmed(&message{Op: opWarmed, Pid: 100, Flags: 5, Epoch: 2}, []*os.File{old})
	if n := len(c.pool.ready[5]); n != 0 {
		t.Fatalf("a stage of epoch 2 was kept in epoch 3")
	}
	if _, err := old.Stat(); err == nil {
		t.Error("its socket was not closed")
	}
	cur, _ := os.Open(os.DevNull)
	defer cur.Close()
	c.warmed(&message{Op: opWarmed, Pid: 101, Flags: 5, Epoch: 3}, []*os.File{cur})
	if r := c.pool.ready[5]; len(r) != 1 || r[0].pid != 101 {
		t.Fatalf("ready = %+v, want the stage of the current epoch", r)
	}
	if c.pool.asked[5] != 0 {
		t.Errorf("asked = %d after two arrivals, want 0", c.pool.asked[5])
	}
	// A kind no longer wanted is not kept either.
	other, _ := os.Open(os.DevNull)
	c.warmed(&message{Op: opWarmed, Pid: 102, Flags: 9, Epoch: 3}, []*os.File{other})
	if len(c.pool.ready[9]) != 0 {
		t.Error("a stage of flags not in use was kept")
	}
}
