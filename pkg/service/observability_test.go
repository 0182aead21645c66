package service_test

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/heraldhq/herald/internal/testenv"
	"github.com/heraldhq/herald/pkg/service"
)

// The dashboard and alert rules in deploy/observability.
const (
	dashboardFile = "deploy/observability/grafana-dashboard.json"
	alertsFile    = "deploy/observability/alerts.yaml"
)

// notHerald are the series the rules read that Prometheus makes itself.
var notHerald = []string{"up"}

// observabilityQueries returns every PromQL expression of the dashboard and
// the alert rules, by where it is.
func observabilityQueries(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	b, err := os.ReadFile(repoFile(t, dashboardFile))
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string
			Type    string
			Targets []struct{ Expr string }
		}
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	for _, p := range dash.Panels {
		if p.Type == "row" {
			continue
		}
		if len(p.Targets) == 0 {
			t.Errorf("%s: panel %q has no query", dashboardFile, p.Title)
		}
		for i, tg := range p.Targets {
			out[dashboardFile+": "+p.Title+" #"+string(rune('A'+i))] = tg.Expr
		}
	}
	b, err = os.ReadFile(repoFile(t, alertsFile))
	if err != nil {
		t.Fatal(err)
	}
	var rules struct {
		Groups []struct {
			Rules []struct {
				Alert string
				Expr  string
			}
		}
	}
	dec := yaml.NewDecoder(strings.NewReader(string(b)))
	dec.KnownFields(false)
	if err := dec.Decode(&rules); err != nil {
		t.Fatalf("%s: %v", alertsFile, err)
	}
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			out[alertsFile+": "+r.Alert] = r.Expr
		}
	}
	if len(out) < 20 {
		t.Fatalf("only %d queries in the dashboard and the rules", len(out))
	}
	return out
}

var (
	metricName = regexp.MustCompile(`\b[a-z_][a-z0-9_]*\b`)
	selector   = regexp.MustCompile(`\b(herald_[a-z0-9_]+)\{([^}]*)\}`)
	// exact matches a label matcher with =, the only kind whose value must
	// exist: !=, =~ and !~ may match nothing on purpose.
	exact = regexp.MustCompile(`(?:^|,)\s*([a-z_]+)="([^"]*)"`)
)

// Every metric the dashboard's queries and the alert rules name is on a
// running Herald's /metrics from its start, with every label value they
// match exactly: a renamed metric or label breaks this test, not an
// operator's pager. promtool, where installed, checks the rules' syntax.
func TestObservabilityMetricsExist(t *testing.T) {
	queries := observabilityQueries(t)
	natsURL := testenv.NATS(t)
	redisURL, prefix := testenv.Redis(t)
	info := runInfo(t, service.Config{
		Roles:   service.Roles{API: true, Router: true, Sender: true},
		NATSURL: natsURL, RedisURL: redisURL, RedisPrefix: prefix, HTTPAddr: "127.0.0.1:0",
		AdminToken: testAdmin, EncryptionKey: testEncryptionKey, LogLevel: "warn",
	})
	base := "http://" + info.HTTPAddr
	mustCall(t, 201, "POST", base+"/v1/tenants", testAdmin, map[string]any{"name": "observed"}) // an API request: its series

	// Which metrics and label values the queries need.
	need := map[string][]string{} // metric -> queries naming it
	values := map[string]string{} // `metric label="value"` -> a query
	for where, q := range queries {
		for _, name := range metricName.FindAllString(q, -1) {
			if strings.HasPrefix(name, "herald_") || slices.Contains(notHerald, name) {
				need[name] = append(need[name], where)
			}
		}
		for _, m := range selector.FindAllStringSubmatch(q, -1) {
			for _, lv := range exact.FindAllStringSubmatch(m[2], -1) {
				values[m[1]+" "+lv[1]+`="`+lv[2]+`"`] = where
			}
		}
	}
	for _, name := range notHerald {
		delete(need, name)
	}

	// The series appear as the roles start; wait for them, then name
	// what is still missing.
	var missing []string
	for deadline := time.Now().Add(20 * time.Second); ; {
		body := scrape(t, base)
		missing = missing[:0]
		for name, where := range need {
			if !hasSeries(body, name, "") {
				missing = append(missing, name+" (in "+where[0]+")")
			}
		}
		for key, where := range values {
			name, lv, _ := strings.Cut(key, " ")
			if !hasSeries(body, name, lv) {
				missing = append(missing, name+"{"+lv+"} (in "+where+")")
			}
		}
		if len(missing) == 0 || time.Now().After(deadline) {
			break
		}
		<-time.After(100 * time.Millisecond) // the next scrape
	}
	if len(missing) > 0 {
		slices.Sort(missing)
		t.Fatalf("not on /metrics:\n%s", strings.Join(missing, "\n"))
	}
	t.Logf("%d queries name %d metrics and %d exact label values, all on /metrics", len(queries), len(need), len(values))

	promtool, err := exec.LookPath("promtool")
	if err != nil {
		// An optional tool (the issue: "where promtool is installed"), so
		// its absence is said, not failed, under CI too.
		t.Logf("promtool not installed (Debian: apt-get install prometheus): %s not checked by it", alertsFile)
		return
	}
	out, err := exec.Command(promtool, "check", "rules", repoFile(t, alertsFile)).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool check rules %s: %v\n%s", alertsFile, err, out)
	}
	t.Logf("promtool check rules: %s", strings.TrimSpace(string(out)))
}

func scrape(t *testing.T, base string) string {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// hasSeries reports whether the exposition has a sample of name (a
// histogram's _bucket, _sum and _count are samples of their own) carrying
// the label matcher lv (`label="value"`), if any.
func hasSeries(body, name, lv string) bool {
	for _, line := range strings.Split(body, "\n") {
		rest, ok := strings.CutPrefix(line, name)
		if !ok || (!strings.HasPrefix(rest, "{") && !strings.HasPrefix(rest, " ")) {
			continue
		}
		if lv == "" || strings.Contains(rest, "{"+lv) || strings.Contains(rest, ","+lv) {
			return true
		}
	}
	return false
}
