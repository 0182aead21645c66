// Package version names the running build; `make build` sets Version with
// -ldflags "-X github.com/heraldhq/herald/pkg/version.Version=...".
package version

import "runtime/debug"

// Version is the release or commit this binary was built from.
var Version = "dev"

// A binary built without the flag by `go install module@version` still
// knows its version: the go command records it in the build information.
func init() {
	if Version != "dev" {
		return
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		Version = bi.Main.Version
	}
}

// UserAgent is sent on every webhook request.
func UserAgent() string { return "Herald/" + Version }
