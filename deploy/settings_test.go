package deploy_test

import (
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/heraldhq/herald/pkg/cli"
	"github.com/heraldhq/herald/pkg/service"
)

// ours are the variables a deployment must not set in vain: Herald's
// settings, the NATS and Redis addresses, OpenTelemetry's.
var ours = regexp.MustCompile(`^(HERALD|NATS|REDIS|OTEL)_`)

// reads is what the binary named bin (herald-ingest, ...) reads.
func reads(t *testing.T, bin string) []string {
	t.Helper()
	for _, b := range cli.ServiceBinaries {
		if b.Name == bin {
			return service.Variables(b.Defaults)
		}
	}
	t.Fatalf("no service binary %s", bin)
	return nil
}

// checkRead fails for each variable of vars that bin does not read.
func checkRead(t *testing.T, where, bin string, vars []string) {
	t.Helper()
	known := reads(t, bin)
	for _, v := range vars {
		if ours.MatchString(v) && !slices.Contains(known, v) {
			t.Errorf("%s sets %s, which %s does not read (service.Variables)", where, v, bin)
		}
	}
}

// natsConfVars are the $VARIABLES a NATS configuration file (and the
// files it includes) reads from the environment.
func natsConfVars(t *testing.T, file string) []string {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var vs []string
	for _, m := range regexp.MustCompile(`\$([A-Z][A-Z0-9_]*)`).FindAllStringSubmatch(string(b), -1) {
		vs = append(vs, m[1])
	}
	for _, m := range regexp.MustCompile(`(?m)^include\s+(\S+)`).FindAllStringSubmatch(string(b), -1) {
		vs = append(vs, natsConfVars(t, filepath.Join(filepath.Dir(file), m[1]))...)
	}
	return vs
}

// Every HERALD_*, NATS_*, REDIS_* or OTEL_* variable compose gives a Herald
// service is one its binary reads, and NATS gets only what its
// configuration reads: a misspelt or misplaced variable would be ignored
// without a word.
func TestComposeSettingsAreRead(t *testing.T) {
	for _, profile := range [][]string{nil, {"cluster"}} {
		p := loadCompose(t, composeEnv(t, "HERALD_NATS_CONF=cluster.conf", "HERALD_STREAM_REPLICAS=3"), profile...)
		for name, svc := range p.Services {
			vars := keys(env(svc))
			if bin, ok := heraldServices[name]; ok {
				checkRead(t, "docker-compose.yml "+name, bin, vars)
				continue
			}
			if !strings.HasPrefix(name, "nats") {
				continue
			}
			conf := "nats/nats.conf"
			if slices.Contains(svc.Command, "/etc/nats/cluster.conf") {
				conf = "nats/cluster.conf"
			}
			known := natsConfVars(t, conf)
			if name == "nats" { // its file is chosen by HERALD_NATS_CONF: either
				known = append(known, natsConfVars(t, "nats/cluster.conf")...)
			}
			for _, v := range vars {
				if !slices.Contains(known, v) {
					t.Errorf("docker-compose.yml %s sets %s, which %s does not read", name, v, conf)
				}
			}
		}
	}
}

// The same for the Kubernetes manifests, each overlay rendered: a Herald
// container's env and the ConfigMaps it takes whole; NATS's env against
// its configuration.
func TestKubernetesSettingsAreRead(t *testing.T) {
	for name, dir := range renderings(t) {
		ms := decodeAll(t, name, render(t, dir))
		configMaps := map[string]map[string]string{}
		for _, m := range ms {
			if cm, ok := m.obj.(*corev1.ConfigMap); ok {
				configMaps[cm.Name] = cm.Data
			}
		}
		for _, m := range ms {
			var spec corev1.PodSpec
			switch o := m.obj.(type) {
			case *appsv1.Deployment:
				spec = o.Spec.Template.Spec
			case *appsv1.StatefulSet:
				spec = o.Spec.Template.Spec
			default:
				continue
			}
			for _, c := range spec.Containers {
				vars := containerVars(t, c, configMaps)
				where := name + ": " + m.kind + " " + m.name
				switch {
				case len(c.Command) > 0 && strings.HasPrefix(path.Base(c.Command[0]), "herald-"):
					checkRead(t, where, path.Base(c.Command[0]), vars)
				case c.Name == "nats":
					known := natsConfVars(t, filepath.Join(kube, "base/nats/nats.conf"))
					for _, v := range vars {
						if ours.MatchString(v) && !slices.Contains(known, v) {
							t.Errorf("%s sets %s, which its nats.conf does not read", where, v)
						}
					}
				case c.Name == "herald":
					t.Errorf("%s runs %v: no Herald service binary", where, c.Command)
				}
			}
		}
	}
}

// containerVars are the variables c gets: its env, and every key of the
// ConfigMaps it takes whole (Secrets are taken key by key, in env).
func containerVars(t *testing.T, c corev1.Container, configMaps map[string]map[string]string) []string {
	t.Helper()
	var vs []string
	for _, e := range c.Env {
		vs = append(vs, e.Name)
	}
	for _, from := range c.EnvFrom {
		switch {
		case from.ConfigMapRef != nil:
			data, ok := configMaps[from.ConfigMapRef.Name]
			if !ok {
				t.Errorf("container %s takes ConfigMap %s, which is not in the manifests", c.Name, from.ConfigMapRef.Name)
			}
			vs = append(vs, keys(data)...)
		case from.SecretRef != nil:
			t.Errorf("container %s takes Secret %s whole: name each key in env, so that what it sets can be checked", c.Name, from.SecretRef.Name)
		}
	}
	return vs
}

func keys(m map[string]string) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}
