package service_test

import (
	"slices"
	"testing"

	"github.com/heraldhq/herald/pkg/service"
)

// Variables names what each kind of process reads: the all-in-one every
// setting, a role its own and the shared ones, not another role's.
func TestVariables(t *testing.T) {
	all := service.Variables(service.Config{Roles: service.Roles{API: true, Router: true, Sender: true}, Embedded: true})
	for _, tc := range []struct {
		name     string
		roles    service.Roles
		has, not []string
	}{
		{"ingest", service.Roles{API: true}, []string{"NATS_URL", "HERALD_ADMIN_TOKEN", "HERALD_NATS_CALLOUT_SEED", "HERALD_ENCRYPTION_KEY", "HERALD_EGRESS_PROXY"},
			[]string{"HERALD_SENDER_WORKERS", "HERALD_ROUTER_WORKERS", "HERALD_DATA_DIR", "HERALD_ACK_WAIT"}},
		{"router", service.Roles{Router: true}, []string{"NATS_URL", "HERALD_ROUTER_WORKERS", "HERALD_ACK_WAIT", "HERALD_STREAM_REPLICAS"},
			[]string{"HERALD_ADMIN_TOKEN", "HERALD_SENDER_WORKERS", "HERALD_EGRESS_PROXY", "HERALD_NATS_LISTEN"}},
		{"sender", service.Roles{Sender: true}, []string{"REDIS_URL", "HERALD_SENDER_WORKERS", "HERALD_RETRY_SCHEDULE", "HERALD_EGRESS_ALLOW_CIDRS"},
			[]string{"HERALD_ADMIN_TOKEN", "HERALD_TENANT_EVENTS_PER_SECOND", "HERALD_NATS_SYSTEM_PASSWORD", "HERALD_EMBEDDED_NATS"}},
	} {
		vs := service.Variables(service.Config{Roles: tc.roles})
		for _, v := range tc.has {
			if !slices.Contains(vs, v) {
				t.Errorf("%s does not read %s", tc.name, v)
			}
		}
		for _, v := range tc.not {
			if slices.Contains(vs, v) {
				t.Errorf("%s reads %s", tc.name, v)
			}
		}
		for _, v := range vs {
			if !slices.Contains(all, v) {
				t.Errorf("%s reads %s, which the all-in-one does not", tc.name, v)
			}
		}
	}
	if len(all) < 50 || !slices.Contains(all, "HERALD_DATA_DIR") {
		t.Fatalf("the all-in-one reads %d variables: %v", len(all), all)
	}
}
