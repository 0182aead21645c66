package deploy_test

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/heraldhq/herald/pkg/bus"
	"github.com/heraldhq/herald/pkg/natsauth"
)

// natsOptions reads a NATS configuration file as nats-server does, with
// the variables it reads set.
func natsOptions(t *testing.T, file, issuer string) *server.Options {
	t.Helper()
	for k, v := range map[string]string{
		"HERALD_NATS_PASSWORD": "p1", "HERALD_NATS_SYSTEM_PASSWORD": "p2", "HERALD_NATS_CALLOUT_ISSUER": issuer,
		"NATS_SERVER_NAME": "nats-2", "POD_NAME": "nats-1",
	} {
		t.Setenv(k, v)
	}
	o, err := server.ProcessConfigFile(file)
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	return o
}

// Compose's NATS (alone and as a cluster node) and the Kubernetes one let
// in the same users and send everyone else to the same callout, so a
// producer's credentials work the same on both; the cluster configurations
// make 3-node clusters with JetStream.
func TestNATSConfigurationsAgree(t *testing.T) {
	seed, _ := natsauth.NewIssuer()
	kp, _ := natsauth.ParseIssuer(seed)
	issuer, _ := kp.PublicKey()
	single := natsOptions(t, "nats/nats.conf", issuer)
	for _, file := range []string{"nats/cluster.conf", kube + "/base/nats/nats.conf"} {
		o := natsOptions(t, file, issuer)
		var users, want []string
		for _, u := range o.Users {
			users = append(users, u.Username)
		}
		for _, u := range single.Users {
			want = append(want, u.Username)
		}
		slices.Sort(users)
		slices.Sort(want)
		if !slices.Equal(users, want) || o.SystemAccount != single.SystemAccount || o.AuthCallout == nil ||
			o.AuthCallout.Issuer != issuer || !slices.Equal(o.AuthCallout.AuthUsers, single.AuthCallout.AuthUsers) ||
			o.AuthCallout.Account != natsauth.GlobalAccount {
			t.Errorf("%s: users %v, system account %q, callout %+v; want those of nats/nats.conf: %v, %q, %+v",
				file, users, o.SystemAccount, o.AuthCallout, want, single.SystemAccount, single.AuthCallout)
		}
		if o.Cluster.Name != "herald" || len(o.Routes) != 3 {
			t.Errorf("%s: cluster %q with %d routes, want herald with 3", file, o.Cluster.Name, len(o.Routes))
		}
		if o.ServerName == "" {
			t.Errorf("%s: no server name: KEDA finds the consumer's leader by it", file)
		}
	}
}

// The ScaledObject asks for the lag of the consumer senders really share
// (pkg/bus), in the account Herald's streams are in, on the NATS
// monitoring port of the nodes' headless Service in the overlay's
// namespace, and scales the sender Deployment.
func TestScaledObjectWatchesTheSenderConsumer(t *testing.T) {
	for name, dir := range renderings(t) {
		for _, m := range decodeAll(t, name, render(t, dir)) {
			if m.kind != "ScaledObject" {
				continue
			}
			spec := m.raw["spec"].(map[string]any)
			if ref := spec["scaleTargetRef"].(map[string]any)["name"]; ref != "herald-sender" {
				t.Errorf("%s: the ScaledObject scales %v", name, ref)
			}
			ns, _ := m.raw["metadata"].(map[string]any)["namespace"].(string)
			for _, tr := range spec["triggers"].([]any) {
				tr := tr.(map[string]any)
				md := tr["metadata"].(map[string]any)
				if tr["type"] != "nats-jetstream" || md["stream"] != bus.StreamDeliveries || md["consumer"] != bus.ConsumerSender ||
					md["account"] != natsauth.GlobalAccount {
					t.Errorf("%s: trigger %v: want nats-jetstream on %s/%s in %s", name, tr, bus.StreamDeliveries, bus.ConsumerSender, natsauth.GlobalAccount)
				}
				ep, _ := md["natsServerMonitoringEndpoint"].(string)
				want := "nats-headless." + ns + ".svc.cluster.local:8222"
				if ns == "" {
					want = "nats-headless.herald.svc.cluster.local:8222" // the base, applied as is
				}
				if ep != want {
					t.Errorf("%s: natsServerMonitoringEndpoint %q, want %q", name, ep, want)
				}
			}
		}
	}
}

// The image: a build context without ./data (the admin token and the
// encryption key of make run) or .git, modules downloaded before the
// source is copied, base images pinned by digest, a numeric non-root user,
// listening on all interfaces.
func TestDockerfile(t *testing.T) {
	ignore, err := os.ReadFile("../.dockerignore")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Fields(string(ignore))
	for _, want := range []string{".git", "data", "bin", ".env"} {
		if !slices.Contains(lines, want) {
			t.Errorf(".dockerignore does not exclude %s", want)
		}
	}
	b, err := os.ReadFile("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	df := string(b)
	for _, from := range regexp.MustCompile(`(?m)^FROM\s+(\S+)`).FindAllStringSubmatch(df, -1) {
		if !regexp.MustCompile(`@sha256:[0-9a-f]{64}$`).MatchString(from[1]) {
			t.Errorf("base image %s is not pinned by digest", from[1])
		}
	}
	download, copyAll := strings.Index(df, "go mod download"), strings.Index(df, "COPY . .")
	if download < 0 || copyAll < 0 || download > copyAll {
		t.Errorf("the module download (at %d) does not come before COPY . . (at %d)", download, copyAll)
	}
	if !regexp.MustCompile(`(?m)^USER 65532:65532$`).MatchString(df) {
		t.Errorf("the image does not run as the numeric non-root user 65532")
	}
	if !strings.Contains(df, "HERALD_HTTP_ADDR=0.0.0.0:8080") || !strings.Contains(df, `HEALTHCHECK`) {
		t.Errorf("the image does not listen on 0.0.0.0 or has no HEALTHCHECK")
	}
}
