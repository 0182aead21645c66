package service_test

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nats-io/nats-server/v2/server"
	"go.yaml.in/yaml/v3"

	"github.com/heraldhq/herald/internal/testenv"
	"github.com/heraldhq/herald/pkg/natsauth"
)

func repoFile(t *testing.T, rel string) string {
	t.Helper()
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(root, rel)
}

// deploy/nats/nats.conf (docker-compose's NATS) requires credentials:
// Herald's user and the system user bypass the callout, everyone else is
// sent to it. (TestExternalNATSWithCallout runs a server on it.)
func TestDeployNATSConfigRequiresAuth(t *testing.T) {
	seed, _ := natsauth.NewIssuer()
	kp, _ := natsauth.ParseIssuer(seed)
	issuer, _ := kp.PublicKey()
	t.Setenv("HERALD_NATS_PASSWORD", "p1")
	t.Setenv("HERALD_NATS_SYSTEM_PASSWORD", "p2")
	t.Setenv("HERALD_NATS_CALLOUT_ISSUER", issuer)
	opts, err := server.ProcessConfigFile(repoFile(t, "deploy/nats/nats.conf"))
	if err != nil {
		t.Fatal(err)
	}
	if opts.NoAuthUser != "" || opts.Authorization != "" || opts.Username != "" {
		t.Fatalf("a way in without credentials: no_auth_user %q, token set %v, single user %q", opts.NoAuthUser, opts.Authorization != "", opts.Username)
	}
	ac := opts.AuthCallout
	if ac == nil || ac.Issuer != issuer || strings.Join(ac.AuthUsers, ",") != "herald,herald-system" {
		t.Fatalf("auth callout %+v, want issuer %s and auth users herald, herald-system", ac, issuer)
	}
	if ac.Account != natsauth.GlobalAccount {
		t.Fatalf("callout account %q: Herald places producers in %s, where its streams are", ac.Account, natsauth.GlobalAccount)
	}
	if len(opts.Users) != 2 || opts.SystemAccount != "SYS" {
		t.Fatalf("%d users, system account %q; want herald and herald-system, SYS", len(opts.Users), opts.SystemAccount)
	}
	for _, u := range opts.Users {
		if u.Permissions != nil {
			t.Errorf("user %s has permissions set: Herald's services need the whole account", u.Username)
		}
	}
}

// docker-compose.yml publishes NATS on loopback only, runs it on the
// config above, and gives every Herald service its credentials; the
// ingest role answers the callout.
func TestDockerComposeNATSIsClosed(t *testing.T) {
	b, err := os.ReadFile(repoFile(t, "docker-compose.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var c struct {
		Services map[string]struct {
			Command     []string          `yaml:"command"`
			Ports       []string          `yaml:"ports"`
			Volumes     []string          `yaml:"volumes"`
			Environment map[string]string `yaml:"environment"`
		} `yaml:"services"`
	}
	if err := yaml.Unmarshal(b, &c); err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	nats := c.Services["nats"]
	for _, p := range nats.Ports {
		if !strings.HasPrefix(p, "127.0.0.1:") {
			t.Errorf("nats publishes %q: on every interface", p)
		}
	}
	if !strings.Contains(strings.Join(nats.Command, " "), "-c /etc/nats/nats.conf") ||
		!strings.Contains(strings.Join(nats.Volumes, " "), "./deploy/nats/nats.conf:/etc/nats/nats.conf") {
		t.Errorf("nats does not run on deploy/nats/nats.conf: command %v, volumes %v", nats.Command, nats.Volumes)
	}
	for _, v := range []string{"HERALD_NATS_PASSWORD", "HERALD_NATS_SYSTEM_PASSWORD", "HERALD_NATS_CALLOUT_ISSUER"} {
		if nats.Environment[v] == "" {
			t.Errorf("nats lacks %s, which its config reads", v)
		}
	}
	for _, name := range []string{"ingest", "router", "sender"} {
		env := c.Services[name].Environment
		if env["HERALD_NATS_USER"] != "herald" || env["HERALD_NATS_PASSWORD"] == "" {
			t.Errorf("%s has no NATS credentials: %v", name, env)
		}
	}
	ingest := c.Services["ingest"].Environment
	if ingest["HERALD_NATS_CALLOUT_SEED"] == "" || ingest["HERALD_NATS_SYSTEM_USER"] != "herald-system" || ingest["HERALD_NATS_SYSTEM_PASSWORD"] == "" {
		t.Errorf("ingest does not run the auth callout with the system user: %v", ingest)
	}
}

// The Kubernetes example parses, and every role gets its NATS credentials.
func TestKubernetesExampleHasNATSCredentials(t *testing.T) {
	b, err := os.ReadFile(repoFile(t, "deploy/kubernetes/herald.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	type envFrom struct {
		ConfigMapRef *struct{ Name string } `yaml:"configMapRef"`
		SecretRef    *struct{ Name string } `yaml:"secretRef"`
	}
	var deployments int
	dec := yaml.NewDecoder(bytes.NewReader(b))
	for {
		var doc struct {
			Kind     string `yaml:"kind"`
			Metadata struct{ Name string }
			Data     map[string]string `yaml:"data"`
			Spec     struct {
				Template struct {
					Spec struct {
						Containers []struct {
							EnvFrom []envFrom `yaml:"envFrom"`
							Env     []struct{ Name, Value string }
						} `yaml:"containers"`
					} `yaml:"spec"`
				} `yaml:"template"`
			} `yaml:"spec"`
		}
		if err := dec.Decode(&doc); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("deploy/kubernetes/herald.yaml: %v", err)
		}
		switch doc.Kind {
		case "ConfigMap":
			if doc.Data["HERALD_NATS_USER"] != "herald" {
				t.Errorf("ConfigMap %s: HERALD_NATS_USER %q, want herald", doc.Metadata.Name, doc.Data["HERALD_NATS_USER"])
			}
		case "Deployment":
			deployments++
			secrets := map[string]bool{}
			for _, c := range doc.Spec.Template.Spec.Containers {
				for _, e := range c.EnvFrom {
					if e.SecretRef != nil {
						secrets[e.SecretRef.Name] = true
					}
				}
			}
			if !secrets["herald-nats"] {
				t.Errorf("Deployment %s has no herald-nats secret (HERALD_NATS_PASSWORD)", doc.Metadata.Name)
			}
			if doc.Metadata.Name == "herald-ingest" && !secrets["herald-nats-callout"] {
				t.Errorf("herald-ingest has no herald-nats-callout secret: producers could not connect")
			}
		}
	}
	if deployments != 3 {
		t.Fatalf("%d Deployments, want ingest, router and sender", deployments)
	}
}
