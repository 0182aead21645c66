package bench

import (
	"context"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/testenv"
)

// TestPprofOptIn checks the hook the bench profiles Herald through
// (pkg/service/pprof.go): with HERALD_PPROF_ADDR set, a Herald process
// serves net/http/pprof there, on its own listener, and stops with it.
func TestPprofOptIn(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Herald")
	}
	addr := "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))
	t.Setenv("HERALD_PPROF_ADDR", addr)
	st, err := inProcess{t: t}.Start(context.Background(), DeployOptions{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Stop()
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + addr + "/debug/pprof/cmdline")
	if err != nil {
		t.Fatalf("pprof not served on HERALD_PPROF_ADDR: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || len(b) == 0 {
		t.Fatalf("cmdline: %s %q", resp.Status, b)
	}
	// Not on the API's address.
	resp, err = c.Get(st.APIURL + "/debug/pprof/cmdline")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		t.Fatal("the API serves pprof")
	}
	st.Stop()
	if _, err := c.Get("http://" + addr + "/debug/pprof/"); err == nil || !strings.Contains(err.Error(), "refused") {
		t.Fatalf("pprof still served after the process stopped: %v", err)
	}
}
