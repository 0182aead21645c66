package deploy_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/heraldhq/herald/internal/testenv"
	"github.com/heraldhq/herald/pkg/natsauth"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testenv.RemoveHeraldBinaries()
	os.Exit(code)
}

// probe is one probe a manifest names.
type probe struct{ kind, path string }

// kubeProbes are the HTTP probes of each Herald binary's container in the
// production overlay, by binary. It also checks that each probe's port is
// the container's port where HERALD_HTTP_ADDR makes the role listen.
func kubeProbes(t *testing.T) map[string][]probe {
	t.Helper()
	ms := decodeAll(t, "production", render(t, renderings(t)["production"]))
	configMaps := map[string]map[string]string{}
	for _, m := range ms {
		if cm, ok := m.obj.(*corev1.ConfigMap); ok {
			configMaps[cm.Name] = cm.Data
		}
	}
	out := map[string][]probe{}
	for _, m := range ms {
		d, ok := m.obj.(*appsv1.Deployment)
		if !ok {
			continue
		}
		for _, c := range d.Spec.Template.Spec.Containers {
			if len(c.Command) == 0 || !strings.HasPrefix(path.Base(c.Command[0]), "herald-") {
				continue
			}
			bin := path.Base(c.Command[0])
			listen := ""
			for _, from := range c.EnvFrom {
				if from.ConfigMapRef != nil {
					if a, ok := configMaps[from.ConfigMapRef.Name]["HERALD_HTTP_ADDR"]; ok {
						listen = a
					}
				}
			}
			_, listenPort, err := net.SplitHostPort(listen)
			if err != nil {
				t.Fatalf("%s: HERALD_HTTP_ADDR %q: %v", d.Name, listen, err)
			}
			for kind, p := range map[string]*corev1.Probe{"startup": c.StartupProbe, "readiness": c.ReadinessProbe, "liveness": c.LivenessProbe} {
				if p == nil || p.HTTPGet == nil {
					t.Errorf("%s has no HTTP %s probe", d.Name, kind)
					continue
				}
				port := p.HTTPGet.Port.String()
				for _, cp := range c.Ports {
					if cp.Name == port {
						port = strconv.Itoa(int(cp.ContainerPort))
					}
				}
				if port != listenPort {
					t.Errorf("%s's %s probe asks port %s; the role listens on %s (HERALD_HTTP_ADDR)", d.Name, kind, port, listen)
				}
				out[bin] = append(out[bin], probe{kind, p.HTTPGet.Path})
			}
		}
	}
	if len(out) != 3 {
		t.Fatalf("probes of %d binaries, want herald-ingest, -router and -sender: %v", len(out), out)
	}
	return out
}

// natsProbes are the NATS StatefulSet's HTTP probes; each must ask the
// port where nats.conf serves monitoring (http_port).
func natsProbes(t *testing.T) []probe {
	t.Helper()
	seed, _ := natsauth.NewIssuer()
	kp, _ := natsauth.ParseIssuer(seed)
	issuer, _ := kp.PublicKey()
	o := natsOptions(t, kube+"/base/nats/nats.conf", issuer)
	var out []probe
	for _, m := range decodeAll(t, "production", render(t, renderings(t)["production"])) {
		ss, ok := m.obj.(*appsv1.StatefulSet)
		if !ok {
			continue
		}
		c := ss.Spec.Template.Spec.Containers[0]
		for kind, p := range map[string]*corev1.Probe{"startup": c.StartupProbe, "readiness": c.ReadinessProbe, "liveness": c.LivenessProbe} {
			if p == nil || p.HTTPGet == nil {
				t.Errorf("NATS has no HTTP %s probe", kind)
				continue
			}
			port := p.HTTPGet.Port.String()
			for _, cp := range c.Ports {
				if cp.Name == port {
					port = strconv.Itoa(int(cp.ContainerPort))
				}
			}
			if port != strconv.Itoa(o.HTTPPort) {
				t.Errorf("NATS's %s probe asks port %s; nats.conf serves monitoring on %d", kind, port, o.HTTPPort)
			}
			out = append(out, probe{kind, p.HTTPGet.Path})
		}
	}
	if len(out) != 3 {
		t.Fatalf("%d NATS probes, want 3", len(out))
	}
	return out
}

// Each role started as a process with compose's settings (hosts replaced
// by this machine's), against a nats-server on deploy/nats/nats.conf and a
// redis-server: every probe the Kubernetes manifests name answers 200 on
// that role, and compose's healthcheck command passes. With NATS stopped
// the healthcheck fails (readiness), while the process stays live.
func TestRolesServeTheirProbes(t *testing.T) {
	bins := testenv.HeraldBinaries(t, false)
	probes := kubeProbes(t)
	natsProbes := natsProbes(t)
	dotenv := composeEnv(t)
	for _, kv := range dotenv { // nats-server reads the credentials from its environment
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
	natsConf, err := filepath.Abs("nats/nats.conf")
	if err != nil {
		t.Fatal(err)
	}
	monitor := strconv.Itoa(testenv.FreePort(t))
	ns := testenv.NATSProcess(t, "-c", natsConf, "-m", monitor)
	for _, kv := range dotenv { // the roles get compose's environment, not .env's
		k, _, _ := strings.Cut(kv, "=")
		os.Unsetenv(k)
	}
	rp := testenv.RedisProcess(t)
	project := loadCompose(t, dotenv)

	type role struct {
		name string
		env  []string
		proc *testenv.Process
		hc   []string
	}
	var roles []role
	for _, name := range []string{"ingest", "router", "sender"} {
		svc := project.Services[name]
		e := env(svc)
		addr := "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))
		e["NATS_URL"], e["REDIS_URL"], e["HERALD_HTTP_ADDR"] = ns.URL(), rp.URL(), addr
		var kv []string
		for _, k := range keys(e) {
			kv = append(kv, k+"="+e[k])
		}
		bin := filepath.Join(bins, heraldServices[name])
		p := testenv.StartProcess(t, name, kv, bin)
		p.SetURL("http://" + addr)
		test := svc.HealthCheck.Test // ["CMD", "/usr/local/bin/herald-ingest", "healthcheck"]
		hc := append([]string{filepath.Join(bins, path.Base(test[1]))}, test[2:]...)
		roles = append(roles, role{name, kv, p, hc})
	}
	healthcheck := func(r role, args ...string) error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, r.hc[0], append(r.hc[1:], args...)...)
		cmd.Env = append(os.Environ(), r.env...)
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("%w: %s", err, out)
		}
		return nil
	}
	for _, r := range roles {
		r.proc.WaitHTTP(r.proc.URL()+"/readyz", 60*time.Second)
		bin := heraldServices[r.name]
		for _, pr := range probes[bin] {
			resp, err := http.Get(r.proc.URL() + pr.path)
			if err != nil {
				t.Fatalf("%s: %s probe %s: %v", bin, pr.kind, pr.path, err)
			}
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Errorf("%s: %s probe %s answered %d", bin, pr.kind, pr.path, resp.StatusCode)
			}
		}
		if err := healthcheck(r); err != nil {
			t.Errorf("%s: compose's healthcheck %v failed on a ready process: %v", r.name, r.hc, err)
		}
	}

	// NATS's own probes (the StatefulSet's) answer on its monitoring port.
	for _, pr := range natsProbes {
		resp, err := http.Get("http://127.0.0.1:" + monitor + pr.path)
		if err != nil {
			t.Fatalf("nats-server: %s probe %s: %v", pr.kind, pr.path, err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("nats-server: %s probe %s answered %d", pr.kind, pr.path, resp.StatusCode)
		}
	}

	ns.Stop()
	for _, r := range roles {
		testenv.Eventually(t, 15*time.Second, func() bool { return healthcheck(r) != nil },
			"%s: the healthcheck still passes with NATS stopped", r.name)
		if err := healthcheck(r, "--probe", "live"); err != nil {
			t.Errorf("%s: not live with NATS stopped: %v", r.name, err)
		}
	}
}
