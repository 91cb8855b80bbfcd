package cpuburn

import (
	"syscall"
	"time"
)

const rusageThread = 1 // RUSAGE_THREAD, not exported by package syscall

// threadCPU returns the user+system CPU time used so far by the calling thread.
func threadCPU() (time.Duration, bool) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(rusageThread, &ru); err != nil {
		return 0, false
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), true
}
