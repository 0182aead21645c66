//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package natsbin

// lockFile is a no-op here; Build still renames atomically.
func lockFile(string) (func(), error) { return func() {}, nil }
