// Package cpuburn does real CPU work for a given amount of CPU time, so that a
// load test against a stand-in raises its CPU use like the real service would
// (and moves a CPU-based HorizontalPodAutoscaler).
package cpuburn

import (
	"context"
	"crypto/sha256"
	"runtime"
	"time"
)

// Burn hashes (SHA-256, repeatedly) until d of CPU time has been used by the
// calling thread. Where thread CPU time cannot be read, it burns for d of wall
// time instead. It also stops when ctx is done, or after max(10*d, 1s) of wall
// time, so a CPU-throttled container cannot keep a request forever.
func Burn(ctx context.Context, d time.Duration) {
	if d <= 0 {
		return
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()

	wallStart := time.Now()
	wallCap := max(10*d, time.Second)
	cpuStart, haveCPU := threadCPU()

	sum := sha256.Sum256([]byte("stand-in"))
	for {
		for range 256 {
			sum = sha256.Sum256(sum[:])
		}
		wall := time.Since(wallStart)
		if haveCPU {
			if now, ok := threadCPU(); ok && now-cpuStart >= d {
				break
			}
		} else if wall >= d {
			break
		}
		if wall >= wallCap || ctx.Err() != nil {
			break
		}
	}
	runtime.KeepAlive(sum)
}
