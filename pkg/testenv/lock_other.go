//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package testenv

// lockFile is a no-op here; NATSBinary still renames atomically.
func lockFile(string) (func(), error) { return func() {}, nil }
