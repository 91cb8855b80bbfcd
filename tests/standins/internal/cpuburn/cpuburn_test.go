package cpuburn

import (
	"context"
	"runtime"
	"syscall"
	"testing"
	"time"
)

func processCPU(t *testing.T) time.Duration {
	t.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatalf("getrusage: %v", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func TestBurnUsesCPU(t *testing.T) {
	const d = 60 * time.Millisecond
	cpu0, wall0 := processCPU(t), time.Now()
	Burn(context.Background(), d)
	cpu, wall := processCPU(t)-cpu0, time.Since(wall0)
	if wall < d {
		t.Errorf("Burn(%v) returned after %v of wall time", d, wall)
	}
	if runtime.GOOS == "linux" && cpu < d*8/10 {
		t.Errorf("Burn(%v) used only %v of CPU", d, cpu)
	}
}

func TestBurnZeroAndCancelled(t *testing.T) {
	start := time.Now()
	Burn(context.Background(), 0)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	Burn(ctx, time.Hour)
	if el := time.Since(start); el > 200*time.Millisecond {
		t.Errorf("zero or cancelled burn took %v", el)
	}
}
