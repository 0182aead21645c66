//go:build unix

package testenv

import (
	"syscall"
	"testing"
)

// ClosedPort returns a TCP port on 127.0.0.1 where a connection is refused
// for the rest of the test. FreePort is not that: once it has closed its
// listener, the kernel may hand the port to the next server any parallel test
// starts, and a request meant to be refused gets an answer. ClosedPort keeps
// the port bound, without listening and without SO_REUSEADDR, so nothing else
// can bind it and a connection to it is reset.
func ClosedPort(t testing.TB) int {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatalf("testenv: closed port: socket: %v", err)
	}
	syscall.CloseOnExec(fd)
	t.Cleanup(func() { _ = syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatalf("testenv: closed port: bind: %v", err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatalf("testenv: closed port: getsockname: %v", err)
	}
	return sa.(*syscall.SockaddrInet4).Port
}
