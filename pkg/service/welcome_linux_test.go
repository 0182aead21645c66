package service_test

import (
	"bytes"
	"io"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/heraldhq/herald/internal/testenv"
	"github.com/heraldhq/herald/pkg/service"
)

// printAtTerminal prints the welcome text to a pseudo-terminal, as a
// person's shell would show it, and returns what the terminal received.
func printAtTerminal(t *testing.T, info service.Info) string {
	t.Helper()
	return atTerminal(t, func(tty io.Writer) { service.PrintWelcome(tty, info) })
}

// atTerminal calls write with a pseudo-terminal and returns what the
// terminal received.
func atTerminal(t *testing.T, write func(tty io.Writer)) string {
	t.Helper()
	ptmx, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		testenv.Unavailable(t, "no pseudo-terminals here: %v", err)
	}
	defer ptmx.Close()
	var n, unlock uint32
	if err := ioctl(ptmx, syscall.TIOCSPTLCK, unsafe.Pointer(&unlock)); err != nil {
		t.Fatalf("unlock pty: %v", err)
	}
	if err := ioctl(ptmx, syscall.TIOCGPTN, unsafe.Pointer(&n)); err != nil {
		t.Fatalf("pty number: %v", err)
	}
	tty, err := os.OpenFile("/dev/pts/"+strconv.Itoa(int(n)), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	// Raw output: the text arrives as written (no \n to \r\n).
	var tio syscall.Termios
	if err := ioctl(tty, syscall.TCGETS, unsafe.Pointer(&tio)); err != nil {
		t.Fatal(err)
	}
	tio.Oflag &^= syscall.OPOST
	if err := ioctl(tty, syscall.TCSETS, unsafe.Pointer(&tio)); err != nil {
		t.Fatal(err)
	}
	out := make(chan string, 1)
	go func() { b, _ := io.ReadAll(ptmx); out <- string(b) }()
	write(tty)
	tty.Close() // the reader sees EOF (EIO) once the terminal's last end closes
	return <-out
}

func ioctl(f *os.File, req uintptr, arg unsafe.Pointer) error {
	if _, _, errno := syscall.Syscall(syscall.SYS_IOCTL, f.Fd(), req, uintptr(arg)); errno != 0 {
		return errno
	}
	return nil
}

// The welcome text links to the walk-through tenant's portal at a terminal
// only: the link carries a session token, a credential like the admin
// token.
func TestWelcomePortalLink(t *testing.T) {
	info := service.Info{HTTPAddr: "127.0.0.1:8080", PortalLinks: []service.PortalLink{{
		TenantID: "tn_1", TenantName: service.WalkthroughTenant, Token: "hps_payload.signature", ExpiresAt: time.Now().Add(time.Hour)}}}
	if got := printAtTerminal(t, info); !strings.Contains(got, "portal       http://127.0.0.1:8080/portal?session=hps_payload.signature") {
		t.Errorf("at a terminal the welcome text has no portal link:\n%s", got)
	}
	var buf bytes.Buffer
	service.PrintWelcome(&buf, info)
	if strings.Contains(buf.String(), "hps_payload") || !strings.Contains(buf.String(), `for tenant "my blog": POST /v1/portal/sessions`) {
		t.Errorf("off a terminal the welcome text shows the session or does not say how to get one:\n%s", buf.String())
	}
}
