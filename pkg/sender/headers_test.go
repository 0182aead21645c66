package sender

import (
	"strings"
	"testing"
	"time"

	"github.com/heraldhq/herald/pkg/sign"
	"github.com/heraldhq/herald/pkg/store"
	heraldv1 "github.com/heraldhq/herald/proto/herald/v1"
)

// TestSentHeadersMaskSecrets: the record of an attempt keeps Herald's own
// headers, the signature's scheme tag and masks for everything else, so no
// secret a request carried can be read back from the history.
func TestSentHeadersMaskSecrets(t *testing.T) {
	secret, err := sign.GenerateSecret(sign.Standard)
	if err != nil {
		t.Fatal(err)
	}
	ep := &store.Endpoint{URL: "https://example.com/hook", Signature: sign.Standard, Secret: secret, ContentType: "application/json",
		Headers: map[string]string{"Authorization": "Bearer live-token-0123456789", "X-Short": "abc"}}
	now := time.Unix(1_800_000_000, 0)
	req, err := Build(ep, &heraldv1.Event{Id: "ev-1", Type: "post.published", AcceptedAtUnixMs: now.UnixMilli()}, []byte(`{}`), 2, now)
	if err != nil {
		t.Fatal(err)
	}
	got := SentHeaders(req.Header, "Herald/test")
	want := map[string]string{
		"Content-Type": "application/json", "Webhook-Id": "ev-1", "Webhook-Timestamp": "1800000000", "Herald-Attempt": "2",
		"User-Agent": "Herald/test", "Webhook-Signature": "v1," + MaskedShort,
		"Authorization": "Bear" + MaskedSuffix, "X-Short": MaskedShort,
	}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: got %q, want %q", k, got[k], v)
		}
	}
	for k, v := range got {
		if strings.Contains(v, "live-token") || strings.Contains(v, req.Header.Get(sign.HeaderSignature)[3:]) {
			t.Errorf("%s shows a secret: %q", k, v)
		}
	}
}
