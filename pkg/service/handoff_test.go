package service

import (
	"strings"
	"testing"
	"time"

	"github.com/heraldhq/herald/pkg/sender"
)

// The sender's in-process handoff is bounded by HERALD_* settings whose
// defaults are the sender's own; bad values, and a wait that would outlast
// AckWait, are refused with the variable's name.
func TestHandoffConfig(t *testing.T) {
	for _, env := range []string{"HERALD_ENDPOINT_HANDOFF_WAIT", "HERALD_ENDPOINT_HANDOFF_JOBS", "HERALD_SENDER_HANDOFF_JOBS", "HERALD_SENDER_HANDOFF_BYTES", "HERALD_ACK_WAIT"} {
		t.Setenv(env, "")
	}
	c, err := FromEnv(Config{})
	if err != nil {
		t.Fatal(err)
	}
	if c.EndpointHandoffWait != 2*time.Second || c.EndpointHandoffJobs != 4096 || c.SenderHandoffJobs != 4096 || c.SenderHandoffBytes != 64<<20 {
		t.Fatalf("defaults: wait %v, %d jobs per endpoint, %d jobs and %d bytes per process; want 2s, 4096, 4096, 64 MiB",
			c.EndpointHandoffWait, c.EndpointHandoffJobs, c.SenderHandoffJobs, c.SenderHandoffBytes)
	}
	if c.EndpointHandoffWait != sender.DefaultHandoffWait || c.SenderHandoffBytes != sender.DefaultHandoffBytes {
		t.Fatal("the configuration's defaults differ from the sender's")
	}

	t.Setenv("HERALD_ENDPOINT_HANDOFF_WAIT", "50ms")
	t.Setenv("HERALD_ENDPOINT_HANDOFF_JOBS", "64")
	t.Setenv("HERALD_SENDER_HANDOFF_JOBS", "512")
	t.Setenv("HERALD_SENDER_HANDOFF_BYTES", "8388608")
	c, err = FromEnv(Config{})
	if err != nil {
		t.Fatal(err)
	}
	if c.EndpointHandoffWait != 50*time.Millisecond || c.EndpointHandoffJobs != 64 || c.SenderHandoffJobs != 512 || c.SenderHandoffBytes != 8<<20 {
		t.Fatalf("settings not read: wait %v, %d, %d, %d bytes", c.EndpointHandoffWait, c.EndpointHandoffJobs, c.SenderHandoffJobs, c.SenderHandoffBytes)
	}

	for env, bad := range map[string]string{
		"HERALD_ENDPOINT_HANDOFF_WAIT": "0s",
		"HERALD_ENDPOINT_HANDOFF_JOBS": "-1",
		"HERALD_SENDER_HANDOFF_JOBS":   "many",
		"HERALD_SENDER_HANDOFF_BYTES":  "64MiB",
	} {
		t.Run(env, func(t *testing.T) {
			t.Setenv(env, bad)
			if _, err := FromEnv(Config{}); err == nil || !strings.Contains(err.Error(), env) {
				t.Errorf("%s=%s: %v, want an error naming it", env, bad, err)
			}
		})
	}
	t.Run("longer than AckWait", func(t *testing.T) {
		t.Setenv("HERALD_ENDPOINT_HANDOFF_WAIT", "2s")
		t.Setenv("HERALD_ACK_WAIT", "2s")
		if _, err := FromEnv(Config{}); err == nil || !strings.Contains(err.Error(), "HERALD_ENDPOINT_HANDOFF_WAIT") {
			t.Errorf("a handoff wait as long as AckWait: %v, want an error naming HERALD_ENDPOINT_HANDOFF_WAIT", err)
		}
		t.Setenv("HERALD_ACK_WAIT", "3s")
		if _, err := FromEnv(Config{}); err != nil {
			t.Errorf("a handoff wait shorter than AckWait: %v", err)
		}
	})
	t.Run("unset under a short AckWait", func(t *testing.T) {
		t.Setenv("HERALD_ENDPOINT_HANDOFF_WAIT", "")
		t.Setenv("HERALD_ACK_WAIT", "2s")
		c, err := FromEnv(Config{})
		if err != nil || c.EndpointHandoffWait != 500*time.Millisecond {
			t.Errorf("handoff wait unset, AckWait 2s: %v (%v), want a quarter of AckWait, 500ms", c.EndpointHandoffWait, err)
		}
	})
}
