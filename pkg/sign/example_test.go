package sign_test

import (
	"fmt"
	"net/http"
	"time"

	"github.com/heraldhq/herald/pkg/sign"
)

// The sender sets webhook-id and webhook-timestamp itself; Sign adds the
// signature.
func ExampleSigner_Sign_standard() {
	s, err := sign.New(sign.Standard, "whsec_aGVyYWxkLWV4YW1wbGUta2V5LTI0Ynl0")
	if err != nil {
		panic(err)
	}
	msg := sign.Message{ID: "evt_1", Timestamp: time.Unix(1700000000, 0), Body: []byte(`{"n":1}`)}
	h := http.Header{}
	h.Set(sign.HeaderID, msg.ID)
	h.Set(sign.HeaderTimestamp, sign.FormatTimestamp(msg.Timestamp))
	if err := s.Sign(h, msg); err != nil {
		panic(err)
	}
	fmt.Println(sign.HeaderTimestamp+":", h.Get(sign.HeaderTimestamp))
	fmt.Println(sign.HeaderSignature+":", h.Get(sign.HeaderSignature))
	// Output:
	// webhook-timestamp: 1700000000
	// webhook-signature: v1,F7AAvNPi/niVn8RL2ehGr+NIxG64un/WoRM3ZvTgVro=
}

// During a rotation the endpoint has two live secrets, and the header carries
// one entry for each, oldest first.
func ExampleSigner_Sign_rotation() {
	s, err := sign.New(sign.Standard, "whsec_aGVyYWxkLWV4YW1wbGUta2V5LTI0Ynl0", "whsec_bmV3LWtleS1uZXcta2V5LW5ldy1rZXk=")
	if err != nil {
		panic(err)
	}
	h := http.Header{}
	_ = s.Sign(h, sign.Message{ID: "evt_1", Timestamp: time.Unix(1700000000, 0), Body: []byte(`{"n":1}`)})
	fmt.Println(h.Get(sign.HeaderSignature))
	// Output:
	// v1,F7AAvNPi/niVn8RL2ehGr+NIxG64un/WoRM3ZvTgVro= v1,RU7FVlx9dzR5KfnevSdp6Q9/c6xL8cwSIn6uuiiVOY8=
}

func ExampleSigner_Sign_github() {
	s, _ := sign.New(sign.GitHub, "It's a Secret to Everybody")
	h := http.Header{}
	_ = s.Sign(h, sign.Message{ID: "evt_1", Timestamp: time.Unix(1700000000, 0), Body: []byte("Hello, World!")})
	fmt.Println(sign.HeaderGitHub+":", h.Get(sign.HeaderGitHub))
	fmt.Println(sign.HeaderDelivery+":", h.Get(sign.HeaderDelivery))
	// Output:
	// X-Hub-Signature-256: sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17
	// X-Herald-Delivery: evt_1
}

func ExampleSigner_Sign_hex() {
	s, _ := sign.New(sign.Hex, "s3cret")
	h := http.Header{}
	_ = s.Sign(h, sign.Message{ID: "evt_1", Timestamp: time.Unix(1700000000, 0), Body: []byte(`{"n":1}`)})
	fmt.Println(sign.HeaderHex+":", h.Get(sign.HeaderHex))
	// Output:
	// X-Signature: 8f0119179f72a1ee1ddd6ea193d72c5430227f4ecb9255eaa54499b96559c4ad
}

func ExampleSigner_Sign_ed25519() {
	secret := "whsk_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8DoQe/884Qvh1w3RjnS8CZZ+TWMJulDV8d3IZkElUxuA=="
	s, _ := sign.New(sign.Ed25519, secret)
	h := http.Header{}
	_ = s.Sign(h, sign.Message{ID: "evt_1", Timestamp: time.Unix(1700000000, 0), Body: []byte(`{"n":1}`)})
	fmt.Println(sign.HeaderSignature+":", h.Get(sign.HeaderSignature))
	// Output:
	// webhook-signature: v1a,DB0xEqEpl7JKF1lqA7G7VuMrIUIUCszD7ywqZsf5aSR34b4BeWbCY+CU+bjyVPDk3E0nFPso2XtTL2LO2fylCQ==
}

// Receivers of the Ed25519 scheme are given the public key, not the secret.
func ExamplePublicKey() {
	pk, err := sign.PublicKey("whsk_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8DoQe/884Qvh1w3RjnS8CZZ+TWMJulDV8d3IZkElUxuA==")
	if err != nil {
		panic(err)
	}
	fmt.Println(pk)
	// Output:
	// whpk_A6EHv/POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg=
}

func ExampleParseScheme() {
	for _, name := range []string{"", "github", "md5"} {
		s, err := sign.ParseScheme(name)
		fmt.Printf("%q -> %q %v\n", name, s, err)
	}
	// Output:
	// "" -> "standard" <nil>
	// "github" -> "github" <nil>
	// "md5" -> "" sign: unknown scheme: "md5"
}
