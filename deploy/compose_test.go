package deploy_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"

	"github.com/heraldhq/herald/pkg/natsauth"
)

// composeFile is the repository's docker-compose.yml.
const composeFile = "../docker-compose.yml"

// composeEnv is a .env an operator would write: the secrets compose
// refuses to start without, and extra for a profile.
func composeEnv(t *testing.T, extra ...string) []string {
	t.Helper()
	seed, err := natsauth.NewIssuer()
	if err != nil {
		t.Fatal(err)
	}
	kp, _ := natsauth.ParseIssuer(seed)
	issuer, _ := kp.PublicKey()
	return append([]string{
		"HERALD_ADMIN_TOKEN=adm_compose_test_0123456789",
		"HERALD_ENCRYPTION_KEY=a2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2s=",
		"HERALD_NATS_PASSWORD=nats-compose-test",
		"HERALD_NATS_SYSTEM_PASSWORD=nats-system-compose-test",
		"HERALD_NATS_CALLOUT_SEED=" + seed,
		"HERALD_NATS_CALLOUT_ISSUER=" + issuer,
	}, extra...)
}

// loadCompose loads docker-compose.yml as docker compose does (schema,
// interpolation, merge keys, profiles), with env as the environment.
func loadCompose(t *testing.T, env []string, profiles ...string) *types.Project {
	t.Helper()
	abs, err := filepath.Abs(composeFile)
	if err != nil {
		t.Fatal(err)
	}
	opts, err := cli.NewProjectOptions([]string{abs}, cli.WithEnv(env), cli.WithProfiles(profiles),
		cli.WithWorkingDirectory(filepath.Dir(abs)))
	if err != nil {
		t.Fatal(err)
	}
	p, err := opts.LoadProject(context.Background())
	if err != nil {
		t.Fatalf("docker-compose.yml (profiles %v): %v", profiles, err)
	}
	return p
}

// heraldServices are compose's Herald services and their binaries.
var heraldServices = map[string]string{"ingest": "herald-ingest", "router": "herald-router", "sender": "herald-sender"}

// docker-compose.yml loads as Docker Compose loads it, with and without the
// cluster profile, and holds what the README promises: healthchecks that
// run each binary's healthcheck command, start order on health, NATS not
// published on the host, senders that scale, a locked-down container.
func TestComposeFile(t *testing.T) {
	p := loadCompose(t, composeEnv(t))
	if _, ok := p.Services["nats-2"]; ok {
		t.Errorf("the cluster's nodes run without the cluster profile")
	}
	for name, svc := range p.Services {
		for _, port := range svc.Ports {
			if port.Target == 4222 || port.Published == "4222" {
				t.Errorf("%s publishes NATS's client port on the host: %+v", name, port)
			}
		}
		if svc.HealthCheck == nil || len(svc.HealthCheck.Test) < 2 {
			t.Errorf("%s has no healthcheck", name)
		}
	}
	for name, bin := range heraldServices {
		svc := p.Services[name]
		if got := strings.Join(svc.Entrypoint, " "); got != "/usr/local/bin/"+bin {
			t.Errorf("%s runs %q, want %s", name, got, bin)
		}
		if got := strings.Join(svc.HealthCheck.Test, " "); got != "CMD /usr/local/bin/"+bin+" healthcheck" {
			t.Errorf("%s's healthcheck is %q, want its own binary's healthcheck command", name, got)
		}
		for _, dep := range []string{"nats", "redis"} {
			if d, ok := svc.DependsOn[dep]; !ok || d.Condition != types.ServiceConditionHealthy {
				t.Errorf("%s does not wait for %s to be healthy: %+v", name, dep, svc.DependsOn)
			}
		}
		if !svc.ReadOnly || !slices.Contains(svc.CapDrop, "ALL") || svc.User == "" || strings.HasPrefix(svc.User, "0") {
			t.Errorf("%s: read_only %v, cap_drop %v, user %q; want a read-only, capability-less, non-root container", name, svc.ReadOnly, svc.CapDrop, svc.User)
		}
		if addr := env(svc)["HERALD_HTTP_ADDR"]; !strings.HasPrefix(addr, "0.0.0.0:") {
			t.Errorf("%s listens on %q, want 0.0.0.0 in a container", name, addr)
		}
	}
	s := p.Services["sender"]
	if s.ContainerName != "" || len(s.Ports) > 0 {
		t.Errorf("sender has a container name or published ports: docker compose up --scale sender=N could not start N")
	}
	if s.StopGracePeriod == nil || *s.StopGracePeriod < types.Duration(31e9) {
		t.Errorf("sender's stop_grace_period %v: under the longest request (30 s), a stop would cut requests off", s.StopGracePeriod)
	}
	in := p.Services["ingest"]
	if len(in.Ports) != 1 || in.Ports[0].Target != 8080 || in.Ports[0].HostIP != "127.0.0.1" {
		t.Errorf("ingest publishes %+v, want the API's 8080 on 127.0.0.1", in.Ports)
	}

	// The cluster profile: three NATS nodes on cluster.conf, streams with
	// three replicas.
	c := loadCompose(t, composeEnv(t, "HERALD_NATS_CONF=cluster.conf", "HERALD_STREAM_REPLICAS=3"), "cluster")
	for _, n := range []string{"nats", "nats-2", "nats-3"} {
		svc, ok := c.Services[n]
		if !ok {
			t.Fatalf("the cluster profile lacks %s", n)
		}
		if got := strings.Join(svc.Command, " "); !strings.Contains(got, "/etc/nats/cluster.conf") {
			t.Errorf("%s runs %q, want cluster.conf", n, got)
		}
		if name := env(svc)["NATS_SERVER_NAME"]; name != n {
			t.Errorf("%s is named %q", n, name)
		}
	}
	for name := range heraldServices {
		if r := env(c.Services[name])["HERALD_STREAM_REPLICAS"]; r != "3" {
			t.Errorf("cluster profile: %s has HERALD_STREAM_REPLICAS=%q, want 3", name, r)
		}
	}

	// Where Docker Compose is installed, it agrees.
	for _, cmd := range [][]string{{"docker", "compose"}, {"docker-compose"}} {
		bin, err := exec.LookPath(cmd[0])
		if err != nil || exec.Command(bin, append(cmd[1:], "version")...).Run() != nil {
			continue // not installed, or docker without the compose plugin
		}
		x := exec.Command(bin, append(cmd[1:], "-f", composeFile, "config", "--quiet")...)
		x.Env = append(os.Environ(), composeEnv(t)...)
		if out, err := x.CombinedOutput(); err != nil {
			t.Errorf("%s config: %v\n%s", strings.Join(cmd, " "), err, out)
		}
		t.Logf("%s config passed", strings.Join(cmd, " "))
		return
	}
	t.Log("neither docker compose nor docker-compose is installed: compose-go's load is the check")
}

// env is a service's environment, resolved.
func env(s types.ServiceConfig) map[string]string {
	m := map[string]string{}
	for k, v := range s.Environment {
		if v != nil {
			m[k] = *v
		}
	}
	return m
}
