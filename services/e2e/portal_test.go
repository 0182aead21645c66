package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/heraldhq/herald/internal/testenv"
	"github.com/heraldhq/herald/pkg/bus"
	"github.com/heraldhq/herald/pkg/event"
	"github.com/heraldhq/herald/pkg/session"
	heraldv1 "github.com/heraldhq/herald/proto/herald/v1"
)

// pageBudget is the longest a portal page may take to show, API calls
// included, with historyLoad attempts in an endpoint's history.
const (
	pageBudget  = 200 * time.Millisecond
	historyLoad = 10_000
)

// chromium returns the path of a Chromium to drive, or ends the test
// (testenv.Unavailable: a failure under CI) when there is none.
func chromium(t testing.TB) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	testenv.Unavailable(t, "no chromium on the PATH (apt-get install chromium; make test-deps installs it)")
	return ""
}

// browser starts a headless Chromium with a fresh profile, closed at
// t.Cleanup, and returns its context; within bounds the whole test.
func browser(t testing.TB, within time.Duration) context.Context {
	t.Helper()
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromium(t)),
		chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun, chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
	}
	root, cancelRoot := context.WithTimeout(context.Background(), within)
	actx, cancelAlloc := chromedp.NewExecAllocator(root, opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); cancelAlloc(); cancelRoot() })
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

// do runs browser steps, failing the test with what on error.
func do(t testing.TB, ctx context.Context, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	if err := chromedp.Do(ctx, steps...); err != nil {
		page, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.querySelector('main').innerText`))
		t.Fatalf("%s: %v; the page shows:\n%s", what, err, page)
	}
}

// js evaluates a JavaScript expression in the page.
func js[T any](t testing.TB, ctx context.Context, expr string) T {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		t.Fatalf("%s: %v", expr, err)
	}
	return v
}

// until waits for a JavaScript condition in the page.
func until(expr string) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		_, err := chromedp.Poll[bool](expr, chromedp.WithPollingTimeout(15*time.Second), chromedp.WithPollingInterval(20*time.Millisecond))(ctx, t)
		return err
	})
}

// eval runs a JavaScript statement for its effect.
func eval(expr string) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		_, err := chromedp.Evaluate[bool]("("+expr+", true)")(ctx, t)
		return err
	})
}

// typeInto focuses a field and types text with key events, as a person at
// a keyboard does.
func typeInto(selector, text string) chromedp.Action[chromedp.Void] {
	q, _ := json.Marshal(selector)
	return chromedp.Steps(eval(`document.querySelector(`+string(q)+`).focus()`), chromedp.KeyEvent(text))
}

// click clicks the element a selector finds.
func click(selector string) chromedp.Action[chromedp.Void] {
	q, _ := json.Marshal(selector)
	return eval(`document.querySelector(` + string(q) + `).click()`)
}

// press focuses the button of main labelled label and presses Enter.
func press(label string) chromedp.Action[chromedp.Void] {
	q, _ := json.Marshal(label)
	return chromedp.Steps(eval(`[...document.querySelectorAll('main button')].find(b => b.textContent === `+string(q)+`).focus()`), chromedp.KeyEvent("\r"))
}

// show navigates the portal to a hash route and waits until it is drawn;
// it returns how long the page took (main's data-ms: its API calls and
// drawing).
func show(t testing.TB, ctx context.Context, hash string) time.Duration {
	t.Helper()
	q, _ := json.Marshal(strings.TrimPrefix(hash, "#"))
	do(t, ctx, "show "+hash, eval(`location.hash = `+string(q)), until(`document.querySelector('main').dataset.view === `+string(q)))
	ms := js[string](t, ctx, `document.querySelector('main').dataset.ms`)
	f, err := strconv.ParseFloat(ms, 64)
	if err != nil {
		t.Fatalf("page %s: data-ms %q", hash, ms)
	}
	return time.Duration(f * float64(time.Millisecond))
}

// screenshots saves the portal's pictures: into docs/portal when
// HERALD_UPDATE_SCREENSHOTS=1 (what the README shows), else into a
// temporary dir, so that a test run does not change the tree.
type screenshots struct {
	t   testing.TB
	dir string
}

func newScreenshots(t testing.TB) *screenshots {
	dir := t.TempDir()
	if os.Getenv("HERALD_UPDATE_SCREENSHOTS") == "1" {
		root, err := testenv.RepoRoot()
		if err != nil {
			t.Fatal(err)
		}
		dir = filepath.Join(root, "docs", "portal")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return &screenshots{t: t, dir: dir}
}

func (s *screenshots) take(ctx context.Context, name string) {
	s.t.Helper()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		s.t.Fatalf("screenshot %s: %v", name, err)
	}
	if err := os.WriteFile(filepath.Join(s.dir, name+".png"), png, 0o644); err != nil {
		s.t.Fatal(err)
	}
}

// openPortal opens a portal session for key and returns its URL.
func openPortal(t testing.TB, a *API, key string, body map[string]any) string {
	t.Helper()
	var s struct {
		URL       string    `json:"url"`
		ExpiresAt time.Time `json:"expires_at"`
	}
	a.Must(t, "POST", "/v1/portal/sessions", key, body, http.StatusCreated, &s)
	if !strings.Contains(s.URL, "/portal?session=hps_") || time.Until(s.ExpiresAt) < 50*time.Minute {
		t.Fatalf("session %+v", s)
	}
	return s.URL
}

// TestPortalInBrowser drives the webhooks portal in headless Chromium
// against the all-in-one binary with real NATS and Redis: an endpoint made
// through the form (its bad URL refused inline first), a test send, failed
// deliveries found with their detail, a dead letter replayed and
// delivered, pause and resume, delete with confirmation; refused tokens and
// framing; no secret in the page before "reveal"; every page within its
// time budget with 10,000 attempts in the history; screenshots of each.
func TestPortalInBrowser(t *testing.T) {
	ctx := browser(t, 3*time.Minute)
	data := t.TempDir()
	_, base, natsAddr := startAllInOneBinary(t, data, "HERALD_ADMIN_TOKEN="+adminToken)
	natsURL, admin := "nats://"+natsAddr, adminToken
	a := newAPI(t, base)
	tn := a.CreateTenant(t, admin, "Acme Blog")
	for _, et := range []map[string]any{
		{"name": "post.published", "description": "A post went live on the blog.", "example": map[string]any{"id": "42", "title": "Hello", "url": "https://blog.example/hello"}},
		{"name": "member.added", "description": "Someone joined the workspace.", "example": map[string]any{"member_id": "m_7", "role": "editor"}},
	} {
		a.Must(t, "POST", "/v1/event-types", tn.APIKey, et, http.StatusCreated, nil)
	}
	good := NewReceiver(t)
	failing := NewReceiver(t)
	failing.AlwaysFail(http.StatusInternalServerError)
	dead := a.CreateEndpoint(t, tn.APIKey, failing, []string{"post.*"}, map[string]any{"name": "Analytics (down)", "max_attempts": 2})
	portalURL := openPortal(t, a, tn.APIKey, map[string]any{"theme": map[string]any{"name": "Acme Blog", "primary_color": "#6d28d9"}})
	shots := newScreenshots(t)
	view := func() string { return js[string](t, ctx, `document.querySelector('main').dataset.view || ''`) }

	// --- create an endpoint through the form, the keyboard only: the bad URL first ---
	do(t, ctx, "open the portal", chromedp.Navigate(portalURL), until(`document.querySelector('main').dataset.view === '/endpoints'`))
	show(t, ctx, "#/endpoints/new")
	do(t, ctx, "fill the form with a bad URL",
		typeInto("#name", "Orders webhook"),
		typeInto("#url", "not a url"),
		eval(`document.getElementById('events').value = ''`),
		typeInto("#events", "post.*"),
		typeInto("#name", "\r"), // Enter submits
		until(`!document.getElementById('url-error').hidden`))
	if msg := js[string](t, ctx, `document.getElementById('url-error').textContent`); msg == "" ||
		js[string](t, ctx, `document.getElementById('url').getAttribute('aria-invalid')`) != "true" ||
		js[string](t, ctx, `document.activeElement.id`) != "url" {
		t.Fatalf("bad URL: inline error %q, not marked invalid or not focused", msg)
	}
	if !js[bool](t, ctx, `[...document.querySelectorAll('main input, main select, main textarea')].every(e => e.labels && e.labels.length > 0)`) {
		t.Fatal("a form field has no label")
	}
	shots.take(ctx, "endpoint-form")
	goodURL, _ := json.Marshal(good.URL())
	do(t, ctx, "fix the URL and save",
		eval(`document.getElementById('url').value = `+string(goodURL)),
		typeInto("#url", "\r"),
		until(`/^\/endpoints\/ep_[^/]+$/.test(document.querySelector('main').dataset.view || '')`))
	epID := strings.TrimPrefix(view(), "/endpoints/")

	// --- no secret until "reveal" ---
	var secret struct {
		Secret string `json:"secret"`
	}
	a.Must(t, "GET", "/v1/endpoints/"+epID+"/secret", tn.APIKey, nil, http.StatusOK, &secret)
	if html := js[string](t, ctx, `document.documentElement.outerHTML`); !strings.HasPrefix(secret.Secret, "whsec_") ||
		strings.Contains(html, secret.Secret) || strings.Contains(html, "whsec_") {
		t.Fatal("the endpoint page holds the signing secret before reveal")
	}
	good.SetSecret(secret.Secret)

	// --- test send ---
	do(t, ctx, "send a test", press("Send test event"), until(`document.getElementById('test-status') !== null`))
	if st := js[string](t, ctx, `document.getElementById('test-status').textContent`); st != "200" {
		t.Fatalf("test send shows status %q, want 200", st)
	}
	shots.take(ctx, "endpoint")
	do(t, ctx, "reveal the secret", press("Reveal secret"), until(`document.getElementById('secret') !== null`))
	if shown := js[string](t, ctx, `document.getElementById('secret').textContent`); shown != secret.Secret {
		t.Fatalf("revealed %q, the API holds another secret", shown)
	}

	// --- pause and resume ---
	status := func() string {
		var ep struct {
			Status string `json:"status"`
		}
		a.Must(t, "GET", "/v1/endpoints/"+epID, tn.APIKey, nil, http.StatusOK, &ep)
		return ep.Status
	}
	do(t, ctx, "pause", press("Pause"), until(`document.querySelector('main h1 .badge').textContent === 'paused'`))
	if st := status(); st != "paused" {
		t.Fatalf("after Pause the API says %q", st)
	}
	do(t, ctx, "resume", press("Resume"), until(`document.querySelector('main h1 .badge').textContent === 'active'`))
	if st := status(); st != "active" {
		t.Fatalf("after Resume the API says %q", st)
	}

	// --- failed deliveries and their detail ---
	for i := 1; i <= 3; i++ {
		a.PostEvent(t, tn.APIKey, fmt.Sprintf("order-%d", i), "post.published", `{"id":`+strconv.Itoa(i)+`}`)
	}
	good.WaitDelivered(t, 15*time.Second, "order-1", "order-2", "order-3")
	testenv.Eventually(t, 20*time.Second, func() bool { dl, ok := a.DLQ(tn.APIKey, dead.ID); return ok && len(dl) == 3 },
		"the failing endpoint's 3 events are not all dead-lettered")
	testenv.Eventually(t, 10*time.Second, func() bool { at, ok := a.AttemptHistory(tn.APIKey, dead.ID); return ok && len(at) == 6 },
		"the history lacks the failing endpoint's 6 attempts")
	show(t, ctx, "#/deliveries?endpoint="+dead.ID+"&status=failed")
	rows := js[int](t, ctx, `document.querySelectorAll('#attempts tbody tr').length`)
	do(t, ctx, "open an attempt's detail", click(`#attempts tbody tr:first-child details summary`))
	detail := js[string](t, ctx, `document.querySelector('#attempts tbody tr:first-child details').innerText`)
	if rows != 6 || !strings.Contains(detail, "server_error") || !strings.Contains(detail, "receiver says no") ||
		!strings.Contains(detail, "Webhook-Signature: v1,********") || !strings.Contains(detail, "Herald-Attempt: 2") {
		t.Fatalf("failed attempts: %d rows (want 6); first detail:\n%s", rows, detail)
	}
	shots.take(ctx, "deliveries")
	do(t, ctx, "go to the event's state", click(`#attempts tbody tr:first-child details a`),
		until(`(document.querySelector('main').dataset.view || '').startsWith('/events/')`))
	if states := js[string](t, ctx, `document.getElementById('event-deliveries').innerText`); !strings.Contains(states, "dead") || !strings.Contains(states, "delivered") {
		t.Fatalf("event state per endpoint:\n%s", states)
	}
	shots.take(ctx, "event")

	// --- replay the filtered set (still failing: back to the DLQ), then one, then recover the rest ---
	show(t, ctx, "#/dead-letters?endpoint="+dead.ID)
	shots.take(ctx, "dead-letters")
	do(t, ctx, "replay every dead letter of the endpoint", click(`#replay-filter`),
		until(`/Replay done: 3 of 3/.test((document.getElementById('replay-progress') || {}).textContent || '')`))
	testenv.Eventually(t, 20*time.Second, func() bool {
		at, ok := a.AttemptHistory(tn.APIKey, dead.ID)
		dl, ok2 := a.DLQ(tn.APIKey, dead.ID)
		return ok && ok2 && len(at) == 12 && len(dl) == 3
	}, "the 3 replayed deliveries did not fail twice each and return to the DLQ")
	show(t, ctx, "#/dead-letters?endpoint="+dead.ID+"&again=1")
	first := js[string](t, ctx, `document.querySelector('#dead-letters tbody tr td:nth-child(2) a').textContent`)
	failing.Heal()
	do(t, ctx, "replay one", click(`#dead-letters tbody tr:first-child .replay-one`),
		until(`/Replay done: 1 of 1/.test((document.getElementById('replay-progress') || {}).textContent || '')`))
	failing.WaitDelivered(t, 15*time.Second, first)
	do(t, ctx, "the list shows the 2 others", until(`document.querySelectorAll('#dead-letters tbody tr').length === 2`))
	show(t, ctx, "#/endpoints/"+dead.ID)
	do(t, ctx, "recover since yesterday", press("Recover"),
		until(`/Replay done: 2 of 2/.test((document.getElementById('replay-progress') || {}).textContent || '')`))
	failing.WaitDelivered(t, 15*time.Second, "order-1", "order-2", "order-3")
	for _, id := range []string{"order-1", "order-2", "order-3"} {
		if n := failing.Delivered(id); n != 1 {
			t.Errorf("%s was delivered %d times to the healed endpoint", id, n)
		}
	}

	// --- delete with confirmation ---
	spare := a.CreateEndpointAt(t, tn.APIKey, good.URL(), []string{"member.*"}, map[string]any{"name": "Spare"})
	show(t, ctx, "#/endpoints/"+spare.ID)
	do(t, ctx, "delete it", press("Delete…"), until(`document.querySelector('dialog').open`),
		eval(`document.activeElement.textContent === 'Cancel' || (() => { throw new Error('Cancel is not focused') })()`),
		click(`dialog button.danger`), until(`document.querySelector('main').dataset.view === '/endpoints'`))
	if st, _, _ := a.Call(context.Background(), "GET", "/v1/endpoints/"+spare.ID, tn.APIKey, nil); st != http.StatusNotFound {
		t.Fatalf("deleted endpoint answers %d", st)
	}

	// --- 10,000 attempts, then every page within its budget ---
	busy := a.CreateEndpointAt(t, tn.APIKey, good.URL(), []string{"*"}, map[string]any{"name": "Busy"})
	seedAttempts(t, connectBus(t, natsURL, heraldNATS(t, data)...), tn.ID, busy.ID, historyLoad)
	testenv.Eventually(t, 30*time.Second, func() bool {
		var e struct {
			Recent struct{ Succeeded, Failed int }
		}
		st, b, err := a.Call(context.Background(), "GET", "/v1/endpoints/"+busy.ID, tn.APIKey, nil)
		return err == nil && st == 200 && json.Unmarshal(b, &e) == nil && e.Recent.Succeeded+e.Recent.Failed == historyLoad
	}, "the history does not show the %d seeded attempts", historyLoad)
	pages := []string{
		"/endpoints", "/endpoints/" + busy.ID, "/endpoints/" + busy.ID + "/edit",
		"/deliveries?endpoint=" + busy.ID, "/deliveries?endpoint=" + busy.ID + "&status=failed",
		"/deliveries?endpoint=" + busy.ID + "&event_type=member.added",
		"/deliveries?endpoint=" + busy.ID + "&since=" + url.QueryEscape(time.Now().Add(-20*time.Minute).UTC().Format(time.RFC3339)),
		"/events/load-9999", "/dead-letters", "/event-types",
	}
	// Each page is drawn 5 times; the median is held to the budget (a
	// test suite running beside this one on 2 cores can stall one
	// drawing), the slowest drawing is reported with it.
	slowest, slowestPage, worstSeen := time.Duration(0), "", time.Duration(0)
	for _, p := range pages {
		var runs []time.Duration
		for i := range 5 {
			sep := "?"
			if strings.Contains(p, "?") {
				sep = "&"
			}
			runs = append(runs, show(t, ctx, "#"+p+sep+"run="+strconv.Itoa(i)))
		}
		slices.Sort(runs)
		median := runs[len(runs)/2]
		t.Logf("page %-80s median %6.1f ms, slowest %6.1f ms (5 drawings, %d attempts in the history)", p,
			float64(median)/1e6, float64(runs[len(runs)-1])/1e6, historyLoad)
		if median > slowest {
			slowest, slowestPage = median, p
		}
		worstSeen = max(worstSeen, runs[len(runs)-1])
	}
	t.Logf("slowest page: %s, median %.1f ms; slowest single drawing of any page %.1f ms", slowestPage, float64(slowest)/1e6, float64(worstSeen)/1e6)
	if slowest > pageBudget {
		t.Errorf("page %s took %s (median) with %d attempts in the history; the budget is %s", slowestPage, slowest, historyLoad, pageBudget)
	}
	show(t, ctx, "#/endpoints")
	shots.take(ctx, "endpoints")
	show(t, ctx, "#/event-types")
	do(t, ctx, "open an example", click(`.event-type details summary`))
	shots.take(ctx, "event-types")
	do(t, ctx, "a phone's width", chromedp.EmulateViewport(360, 740))
	show(t, ctx, "#/endpoints?narrow=1")
	if js[bool](t, ctx, `document.documentElement.scrollWidth > 360`) {
		t.Error("the endpoints page is wider than 360 px")
	}
	shots.take(ctx, "endpoints-360")
	do(t, ctx, "back to desktop", chromedp.EmulateViewport(1280, 900))

	// --- refused: forged, expired, another tenant's, a stranger framing ---
	t.Run("refused", func(t *testing.T) {
		u, _ := url.Parse(portalURL)
		signed, sig, _ := strings.Cut(u.Query().Get("session"), ".")
		forged := signed[:len(signed)-2] + "AA." + sig
		key, err := os.ReadFile(filepath.Join(data, "portal-key"))
		if err != nil {
			t.Fatal(err)
		}
		signer, err := session.Parse(string(key))
		if err != nil {
			t.Fatal(err)
		}
		expired, _, _ := signer.Sign(session.Claims{Tenant: tn.ID}, time.Now().Add(-2*time.Hour), time.Hour)
		for name, tok := range map[string]string{"forged": forged, "expired": expired} {
			resp, err := chromedp.Run(ctx, chromedp.NavigateResponse(base+"/portal?session="+url.QueryEscape(tok)))
			if err != nil {
				t.Fatal(err)
			}
			if text := js[string](t, ctx, `document.querySelector('main').innerText`); resp.Status != http.StatusUnauthorized || !strings.Contains(text, "not valid or has expired") {
				t.Errorf("%s link: %d, shows %q", name, resp.Status, text)
			}
			if st, _, _ := a.Call(context.Background(), "GET", "/v1/endpoints", tok, nil); st != http.StatusUnauthorized {
				t.Errorf("%s token: the API answers %d", name, st)
			}
		}
		// Another tenant's session sees its own endpoints only, and not
		// this tenant's by id.
		other := a.CreateTenant(t, admin, "Other")
		do(t, ctx, "open the other tenant's portal", chromedp.Navigate(openPortal(t, a, other.APIKey, map[string]any{})),
			until(`document.querySelector('main').dataset.view === '/endpoints'`))
		listed := js[int](t, ctx, `document.querySelectorAll('main table tbody tr').length`)
		show(t, ctx, "#/endpoints/"+epID)
		if h1 := js[string](t, ctx, `document.querySelector('main h1').textContent`); listed != 0 || h1 != "Not found" {
			t.Errorf("another tenant's portal lists %d endpoints and shows %q for this tenant's endpoint", listed, h1)
		}
		framing(t, ctx, a, tn.APIKey)
	})
}

// framing frames the portal from a page on another origin: refused when
// the session lists no origin or another one, shown when it lists that
// one.
func framing(t *testing.T, ctx context.Context, a *API, key string) {
	var mu sync.Mutex
	got := map[string]int{} // session token -> status of the framed page
	if err := chromedp.Listen(ctx, func(ev any) {
		if e, ok := ev.(*network.EventResponseReceived); ok && e.Type == network.ResourceTypeDocument && strings.Contains(e.Response.URL, "/portal?session=") {
			u, _ := url.Parse(e.Response.URL)
			mu.Lock()
			got[u.Query().Get("session")] = int(e.Response.Status)
			mu.Unlock()
		}
	}); err != nil {
		t.Fatal(err)
	}
	parent := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		fmt.Fprintf(w, `<!doctype html><title>platform</title><iframe id="f" src="%s" width="800" height="600"></iframe>`, r.URL.Query().Get("src"))
	}))
	defer parent.Close()
	// The parent's origin differs from the portal's by its port.
	for _, c := range []struct {
		name      string
		ancestors []string
		want      int
	}{
		{"no origin listed", nil, http.StatusForbidden},
		{"another origin listed", []string{"https://app.example.com"}, http.StatusForbidden},
		{"this origin listed", []string{parent.URL}, http.StatusOK},
	} {
		body := map[string]any{}
		if c.ancestors != nil {
			body["frame_ancestors"] = c.ancestors
		}
		src := openPortal(t, a, key, body)
		u, _ := url.Parse(src)
		tok := u.Query().Get("session")
		do(t, ctx, "frame the portal: "+c.name, chromedp.Navigate(parent.URL+"/?src="+url.QueryEscape(src)))
		testenv.Eventually(t, 10*time.Second, func() bool { mu.Lock(); defer mu.Unlock(); return got[tok] != 0 },
			"%s: the framed portal page did not answer", c.name)
		mu.Lock()
		status := got[tok]
		mu.Unlock()
		if status != c.want {
			t.Errorf("%s: the framed portal answered %d, want %d", c.name, status, c.want)
		}
	}
}

// seedAttempts publishes n attempt records of endpoint to ATTEMPTS, as
// senders do, spread over the last 50 minutes: one failed in 7, one in
// 1000 of type member.added (a rare filter), for the history projection
// to index.
func seedAttempts(t *testing.T, b *Bus, tenant, endpoint string, n int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	start := time.Now().Add(-50 * time.Minute)
	var futures []jetstream.PubAckFuture
	for i := range n {
		ev := fmt.Sprintf("load-%d", i)
		typ, status := "post.published", int32(200)
		if i%1000 == 0 {
			typ = "member.added"
		}
		if i%7 == 0 {
			status = 500
		}
		rec := &heraldv1.Attempt{
			JobId: event.JobID(tenant, ev, endpoint), EventId: ev, TenantId: tenant, EndpointId: endpoint, Number: 1,
			AtUnixMs: start.Add(time.Duration(i) * 300 * time.Millisecond).UnixMilli(), StatusCode: status, LatencyUs: 12_345,
			EventType: typ, State: "delivered", ResponseBody: []byte(`{"ok":true}`),
			RequestHeaders: map[string]string{"Content-Type": "application/json", "Webhook-Id": ev, "Webhook-Signature": "v1,********", "Herald-Attempt": "1"},
		}
		if status != 200 {
			rec.ErrorClass, rec.Error, rec.State = "server_error", "status 500", "dead"
		}
		msg, _ := proto.Marshal(rec)
		f, err := b.js.PublishAsync(bus.AttemptSubject(tenant, endpoint), msg)
		if err != nil {
			t.Fatal(err)
		}
		futures = append(futures, f)
	}
	select {
	case <-b.js.PublishAsyncComplete():
	case <-ctx.Done():
		t.Fatal("attempts not stored within 60s")
	}
	for i, f := range futures {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			t.Fatalf("attempt %d not stored: %v", i, err)
		}
	}
}
