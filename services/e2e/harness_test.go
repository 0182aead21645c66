package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/heraldhq/herald/internal/testenv"
	"github.com/heraldhq/herald/pkg/api"
	"github.com/heraldhq/herald/pkg/natsauth"
	"github.com/heraldhq/herald/pkg/service"
	heraldv1 "github.com/heraldhq/herald/proto/herald/v1"
	"github.com/heraldhq/herald/services/internal/apitest"
)

// quick bounds one call made inside testenv.Eventually.
func quick() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), time.Second)
}

// API is the shared client of Herald's HTTP API (apitest) with this
// suite's helpers on top: creating tenants and endpoints, posting events.
type API struct {
	*apitest.Client
}

// newAPI returns a client of the API at base. The load tests post from
// many goroutines at once: the transport keeps up to 64 connections to
// reuse (http.DefaultTransport keeps 2 per host) and opens no more than
// that. Every exchange is checked against the OpenAPI description
// (checked).
func newAPI(t testing.TB, base string) *API {
	return &API{apitest.New(base, &http.Client{
		Timeout:   10 * time.Second,
		Transport: checked(t, &http.Transport{MaxIdleConnsPerHost: 64, MaxConnsPerHost: 64}),
	})}
}

// openAPI is the validator of pkg/api's OpenAPI description, loaded once.
var openAPI = sync.OnceValues(func() (*apitest.Validator, error) { return apitest.NewValidator(api.OpenAPI) })

// checked wraps next so that every request this suite sends to the API,
// and every answer, is checked against the OpenAPI description: a route
// it lacks, a request it refuses that the API accepted, an answer whose
// status or body it does not describe fails t (and the test goes on).
// Fix the description where it is wrong, the API where the API is.
func checked(t testing.TB, next http.RoundTripper) http.RoundTripper {
	t.Helper()
	v, err := openAPI()
	if err != nil {
		t.Fatal(err)
	}
	return v.Transport(next, func(err error) { t.Errorf("OpenAPI: %v", err) })
}

// Tenant as POST /v1/tenants answers.
type Tenant struct {
	ID     string `json:"id"`
	Name   string `json:"name"`
	APIKey string `json:"api_key"`
}

// Endpoint as the API shows it.
type Endpoint struct {
	ID          string   `json:"id"`
	URL         string   `json:"url"`
	Events      []string `json:"events"`
	Secret      string   `json:"secret"`
	Enabled     bool     `json:"enabled"`
	MaxAttempts int      `json:"max_attempts"`
}

// Accepted is the answer to POST /v1/events.
type Accepted struct {
	ID        string `json:"id"`
	Duplicate bool   `json:"duplicate"`
}

func (a *API) CreateTenant(t testing.TB, admin, name string) Tenant {
	t.Helper()
	var tn Tenant
	a.Must(t, "POST", "/v1/tenants", admin, map[string]string{"name": name}, http.StatusCreated, &tn)
	if tn.ID == "" || !strings.HasPrefix(tn.APIKey, "hk_") {
		t.Fatalf("tenant %+v: want an id and an hk_ API key", tn)
	}
	return tn
}

// CreateEndpoint registers rcv for events and points rcv at the endpoint's
// secret as Herald generated it. extra adds fields (max_attempts...).
func (a *API) CreateEndpoint(t testing.TB, key string, rcv *Receiver, events []string, extra map[string]any) Endpoint {
	t.Helper()
	in := map[string]any{"name": "e2e " + t.Name(), "url": rcv.URL(), "events": events}
	for k, v := range extra {
		in[k] = v
	}
	var ep Endpoint
	a.Must(t, "POST", "/v1/endpoints", key, in, http.StatusCreated, &ep)
	if ep.ID == "" || !ep.Enabled {
		t.Fatalf("endpoint %+v: want an id, enabled", ep)
	}
	rcv.SetSecret(ep.Secret)
	return ep
}

// Post sends an event body as given (a JSON string) and expects 202.
func (a *API) Post(t testing.TB, key, body string) Accepted {
	t.Helper()
	var acc Accepted
	a.Must(t, "POST", "/v1/events", key, json.RawMessage(body), http.StatusAccepted, &acc)
	return acc
}

// PostEvent sends {"id","type","data"} and expects 202 with that id.
func (a *API) PostEvent(t testing.TB, key, id, typ, data string) Accepted {
	t.Helper()
	acc := a.Post(t, key, eventJSON(id, typ, data, ""))
	if acc.ID != id {
		t.Fatalf("POST /v1/events id %q: answered id %q", id, acc.ID)
	}
	return acc
}

// eventJSON builds an event body by hand, so data travels byte for byte.
func eventJSON(id, typ, data, endpointID string) string {
	var b strings.Builder
	b.WriteString(`{"type":`)
	q, _ := json.Marshal(typ)
	b.Write(q)
	if id != "" {
		q, _ = json.Marshal(id)
		b.WriteString(`,"id":`)
		b.Write(q)
	}
	if endpointID != "" {
		q, _ = json.Marshal(endpointID)
		b.WriteString(`,"endpoint_id":`)
		b.Write(q)
	}
	b.WriteString(`,"data":`)
	b.WriteString(data)
	b.WriteString(`}`)
	return b.String()
}

// Bus is a client of the NATS server a Herald deployment uses: a producer
// publishing straight to subjects, and an inspector of streams.
type Bus struct {
	nc *nats.Conn
	js jetstream.JetStream
}

// connectBus connects to url with opts: Herald's own credentials for an
// all-in-one (heraldNATS), none for the stacks' nats-server.
func connectBus(t testing.TB, url string, opts ...nats.Option) *Bus {
	t.Helper()
	nc, err := nats.Connect(url, append([]nats.Option{nats.Name("e2e"), nats.MaxReconnects(-1), nats.ReconnectWait(100 * time.Millisecond)}, opts...)...)
	if err != nil {
		t.Fatalf("connect %s: %v", url, err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return &Bus{nc: nc, js: js}
}

// heraldNATS are the options of Herald's own NATS user of the all-in-one
// with data dir dir (generated at its first start).
func heraldNATS(t testing.TB, dir string) []nats.Option {
	t.Helper()
	own, err := service.ReadEmbeddedNATSAuth(dir)
	if err != nil {
		t.Fatal(err)
	}
	return own.Options()
}

// Producer connects to the deployment's NATS as a producer of tn does: with
// its API key as the token and its inbox prefix.
func (d *Deployment) Producer(t testing.TB, tn Tenant) *Bus {
	t.Helper()
	return connectBus(t, d.NATSURL, nats.Token(tn.APIKey), nats.CustomInboxPrefix(natsauth.InboxPrefix(tn.ID)))
}

// Publish publishes a producer's JSON to herald.events.<tenant>.<type> with
// Nats-Msg-Id msgID and waits for JetStream to store it.
func (b *Bus) Publish(t testing.TB, tenant, typ, msgID, body string) *jetstream.PubAck {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ack, err := b.js.Publish(ctx, "herald.events."+tenant+"."+typ, []byte(body), jetstream.WithMsgID(msgID))
	if err != nil {
		t.Fatalf("publish %s: %v", typ, err)
	}
	if ack.Stream != "EVENTS" {
		t.Fatalf("event stored in stream %q, want EVENTS", ack.Stream)
	}
	return ack
}

// WaitQuiet waits until every event stored so far has been routed (the
// router consumer's ack floor passed the last EVENTS sequence) and no job of
// tenant is left in DELIVERIES (every job was delivered, or dead-lettered).
// After it, nothing more can arrive for what was sent before: it is the
// condition to assert "received nothing" on, instead of sleeping.
func (b *Bus) WaitQuiet(t testing.TB, tenant string, within time.Duration) {
	t.Helper()
	ctx, cancel := quick()
	st, err := b.js.Stream(ctx, "EVENTS")
	cancel()
	if err != nil {
		t.Fatalf("EVENTS stream: %v", err)
	}
	last := st.CachedInfo().State.LastSeq
	var floor uint64
	var pending int
	testenv.Eventually(t, within, func() bool {
		ctx, cancel := quick()
		defer cancel()
		c, err := b.js.Consumer(ctx, "EVENTS", "router")
		if err != nil {
			return false
		}
		floor = c.CachedInfo().AckFloor.Stream
		if floor < last {
			return false
		}
		pending, err = b.Jobs(ctx, tenant)
		return err == nil && pending == 0
	}, "%s", testenv.Lazy(func() string {
		return fmt.Sprintf("not quiet: router ack floor %d (want >= %d), %d job(s) of tenant %s in DELIVERIES", floor, last, pending, tenant)
	}))
}

// Jobs is how many jobs of tenant are in DELIVERIES.
func (b *Bus) Jobs(ctx context.Context, tenant string) (int, error) {
	return b.count(ctx, "DELIVERIES", "herald.deliveries."+tenant+".>")
}

func (b *Bus) count(ctx context.Context, stream, subject string) (int, error) {
	st, err := b.js.Stream(ctx, stream)
	if err != nil {
		return 0, err
	}
	info, err := st.Info(ctx, jetstream.WithSubjectFilter(subject))
	if err != nil {
		return 0, err
	}
	n := 0
	for _, c := range info.State.Subjects {
		n += int(c)
	}
	return n, nil
}

// DeadLetters returns the dead letters stored for one endpoint.
func (b *Bus) DeadLetters(t testing.TB, tenant, endpoint string) []*heraldv1.DeadLetter {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	subj := "herald.dlq." + tenant + "." + endpoint
	c, err := b.js.OrderedConsumer(ctx, "DLQ", jetstream.OrderedConsumerConfig{FilterSubjects: []string{subj}})
	if err != nil {
		t.Fatalf("DLQ consumer: %v", err)
	}
	n, err := b.count(ctx, "DLQ", subj)
	if err != nil {
		t.Fatalf("DLQ count: %v", err)
	}
	var out []*heraldv1.DeadLetter
	for len(out) < n {
		msg, err := c.Next(jetstream.FetchMaxWait(5 * time.Second))
		if err != nil {
			t.Fatalf("DLQ read %d of %d: %v", len(out)+1, n, err)
		}
		dl := &heraldv1.DeadLetter{}
		if err := proto.Unmarshal(msg.Data(), dl); err != nil {
			t.Fatalf("DLQ message on %s is not a heraldv1.DeadLetter: %v", msg.Subject(), err)
		}
		out = append(out, dl)
	}
	return out
}

// DLQCount is how many dead letters one endpoint has.
func (b *Bus) DLQCount(tenant, endpoint string) int {
	ctx, cancel := quick()
	defer cancel()
	n, err := b.count(ctx, "DLQ", "herald.dlq."+tenant+"."+endpoint)
	if err != nil {
		return -1
	}
	return n
}
