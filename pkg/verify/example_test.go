package verify_test

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/heraldhq/herald/pkg/sign"
	"github.com/heraldhq/herald/pkg/verify"
)

// The clock the examples pretend it is, so their signatures stay valid.
var exampleNow = verify.WithNow(func() time.Time { return time.Unix(1700000060, 0) })

func ExampleVerify_standard() {
	h := http.Header{}
	h.Set("webhook-id", "evt_1")
	h.Set("webhook-timestamp", "1700000000")
	h.Set("webhook-signature", "v1,F7AAvNPi/niVn8RL2ehGr+NIxG64un/WoRM3ZvTgVro=")
	body := []byte(`{"n":1}`)
	secrets := []string{"whsec_aGVyYWxkLWV4YW1wbGUta2V5LTI0Ynl0"}

	fmt.Println(verify.Verify(sign.Standard, h, body, secrets, exampleNow))
	fmt.Println(verify.Verify(sign.Standard, h, []byte(`{"n":2}`), secrets, exampleNow))
	// Without WithNow, the real clock says the request is years old.
	err := verify.Verify(sign.Standard, h, body, secrets)
	fmt.Println(errors.Is(err, verify.ErrTimestampTooOld))
	// Output:
	// <nil>
	// verify: signature mismatch
	// true
}

// A receiver rotating its secret accepts both until the sender has moved.
func ExampleVerify_rotation() {
	h := http.Header{}
	h.Set("webhook-id", "evt_1")
	h.Set("webhook-timestamp", "1700000000")
	h.Set("webhook-signature", "v1,RU7FVlx9dzR5KfnevSdp6Q9/c6xL8cwSIn6uuiiVOY8=") // new secret only
	secrets := []string{"whsec_aGVyYWxkLWV4YW1wbGUta2V5LTI0Ynl0", "whsec_bmV3LWtleS1uZXcta2V5LW5ldy1rZXk="}
	fmt.Println(verify.Verify(sign.Standard, h, []byte(`{"n":1}`), secrets, exampleNow))
	// Output:
	// <nil>
}

func ExampleVerify_github() {
	h := http.Header{}
	h.Set("X-Hub-Signature-256", "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17")
	h.Set("X-Herald-Delivery", "evt_1")
	err := verify.Verify(sign.GitHub, h, []byte("Hello, World!"), []string{"It's a Secret to Everybody"})
	fmt.Println(err)
	// Output:
	// <nil>
}

func ExampleVerify_hex() {
	h := http.Header{}
	h.Set("X-Signature", "8f0119179f72a1ee1ddd6ea193d72c5430227f4ecb9255eaa54499b96559c4ad")
	fmt.Println(verify.Verify(sign.Hex, h, []byte(`{"n":1}`), []string{"s3cret"}))
	fmt.Println(verify.Verify(sign.Hex, h, []byte(`{"n":1}`), []string{"wrong"}))
	// Output:
	// <nil>
	// verify: signature mismatch
}

// Ed25519 receivers hold only the public key.
func ExampleVerify_ed25519() {
	h := http.Header{}
	h.Set("webhook-id", "evt_1")
	h.Set("webhook-timestamp", "1700000000")
	h.Set("webhook-signature", "v1a,DB0xEqEpl7JKF1lqA7G7VuMrIUIUCszD7ywqZsf5aSR34b4BeWbCY+CU+bjyVPDk3E0nFPso2XtTL2LO2fylCQ==")
	publicKeys := []string{"whpk_A6EHv/POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg="}
	fmt.Println(verify.Verify(sign.Ed25519, h, []byte(`{"n":1}`), publicKeys, exampleNow))
	h.Del("webhook-signature")
	fmt.Println(verify.Verify(sign.Ed25519, h, []byte(`{"n":1}`), publicKeys, exampleNow))
	// Output:
	// <nil>
	// verify: no signature: missing header webhook-signature
}

func ExampleMiddleware() {
	hook := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body) // the verified body, restored
		fmt.Printf("handled %s %s\n", r.Header.Get("webhook-id"), body)
	})
	handler := verify.Middleware(sign.Standard, []string{"whsec_aGVyYWxkLWV4YW1wbGUta2V5LTI0Ynl0"}, exampleNow)(hook)

	for _, sig := range []string{"v1,F7AAvNPi/niVn8RL2ehGr+NIxG64un/WoRM3ZvTgVro=", "v1,forged"} {
		r := httptest.NewRequest(http.MethodPost, "/webhooks", strings.NewReader(`{"n":1}`))
		r.Header.Set("webhook-id", "evt_1")
		r.Header.Set("webhook-timestamp", "1700000000")
		r.Header.Set("webhook-signature", sig)
		w := httptest.NewRecorder()
		handler.ServeHTTP(w, r)
		fmt.Println(w.Code)
	}
	// Output:
	// handled evt_1 {"n":1}
	// 200
	// 401
}
