package main

import (
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"
)

// startProfile writes pprof profiles for performance work when asked through
// the environment: HAUL_CPUPROFILE=FILE (CPU) and HAUL_MEMPROFILE=FILE (allocations,
// written at exit). It returns the function that finishes them.
func startProfile() (stop func()) {
	var cpu *os.File
	if name := os.Getenv("HAUL_CPUPROFILE"); name != "" {
		f, err := os.Create(name)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "haul: HAUL_CPUPROFILE:", err)
		} else {
			cpu = f
		}
	}
	return func() {
		if cpu != nil {
			pprof.StopCPUProfile()
			cpu.Close()
		}
		if name := os.Getenv("HAUL_MEMPROFILE"); name != "" {
			f, err := os.Create(name)
			if err == nil {
				runtime.GC()
				err = pprof.Lookup("allocs").WriteTo(f, 0)
				f.Close()
			}
			if err != nil {
				fmt.Fprintln(os.Stderr, "haul: HAUL_MEMPROFILE:", err)
			}
		}
	}
}
