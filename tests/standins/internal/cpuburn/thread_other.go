//go:build !linux

package cpuburn

import "time"

// threadCPU is not available here; Burn falls back to wall time.
func threadCPU() (time.Duration, bool) { return 0, false }
