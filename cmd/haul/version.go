package main

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// version is the module version the binary was built at (go install
// module@v1.2.0, or go build's pseudo-version from the VCS since Go 1.24), or
// "dev" when the build recorded none.
func version() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}

// versionLine is what --version prints: the version, the VCS revision the
// build recorded (and whether the tree had uncommitted changes), and the Go
// that built it; "revision unknown" where the build recorded none (a
// tarball, -buildvcs=false).
func versionLine() string {
	rev, modified := "unknown", ""
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			switch {
			case s.Key == "vcs.revision":
				rev = s.Value
			case s.Key == "vcs.modified" && s.Value == "true":
				modified = ", modified"
			}
		}
	}
	return fmt.Sprintf("haul %s (revision %s%s; %s %s/%s)", version(), rev, modified,
		runtime.Version(), runtime.GOOS, runtime.GOARCH)
}
