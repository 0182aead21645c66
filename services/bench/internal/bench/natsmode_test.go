package bench

import (
	"context"
	"testing"
	"time"
)

// ModeNATS publishes as producers do on an all-in-one whose NATS requires
// credentials: each tenant's connection uses its API key as the token, and
// the DLQ reader uses Herald's own credentials. Another tenant's key gets
// nothing in.
func TestGenerateNATSAsProducers(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	st, err := inProcess{t: t}.Start(ctx, DeployOptions{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Stop()
	nc, err := ConnectNATS(st.NATSURL, st.NATSOptions...)
	if err != nil {
		t.Fatalf("Herald's own credentials: %v", err)
	}
	defer nc.Close()
	if _, err := WatchDLQ(ctx, nc); err != nil {
		t.Fatalf("the DLQ reader: %v", err)
	}
	api := &API{Base: st.APIURL, Admin: st.AdminToken}
	var targets []Target
	for _, name := range []string{"a", "b"} {
		tn, err := api.CreateTenant(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		targets = append(targets, Target{Tenant: tn.ID, APIKey: tn.APIKey, Type: "bench.nats"})
	}
	sum, err := Generate(ctx, GenConfig{Mode: ModeNATS, NATSURL: st.NATSURL, Targets: targets, Concurrency: 4, Count: 40, IDPrefix: "n"})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Sent != 40 || sum.Accepted != 40 {
		t.Fatalf("summary %+v: want 40 sent and accepted", sum)
	}
	wrong := []Target{{Tenant: targets[0].Tenant, APIKey: targets[1].APIKey, Type: "bench.nats"}}
	sum, err = Generate(ctx, GenConfig{Mode: ModeNATS, NATSURL: st.NATSURL, Targets: wrong, Concurrency: 5, Count: 5, IDPrefix: "w",
		Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Sent != 5 || sum.Accepted != 0 {
		t.Fatalf("with another tenant's key: %+v, want 5 sent and none accepted", sum)
	}
}
