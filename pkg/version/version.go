// Package version names the running build; `make build` sets Version with
// -ldflags "-X github.com/heraldhq/herald/pkg/version.Version=...".
package version

// Version is the release or commit this binary was built from.
var Version = "dev"

// UserAgent is sent on every webhook request.
func UserAgent() string { return "Herald/" + Version }
