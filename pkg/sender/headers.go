package sender

import (
	"net/http"
	"strings"
	"unicode/utf8"

	"github.com/heraldhq/herald/pkg/sign"
)

// Masks of header values that may be credentials. A history shows the
// headers an attempt sent; the values that would let someone forge a
// request or call the receiver (signatures, custom headers such as an
// Authorization token) are shown masked.
const (
	MaskedShort  = "********"
	MaskedSuffix = "…(masked)"
	// maskKeepFrom: values at least this long keep their first four
	// characters, which tell what kind of value it is ("Bear…") and give
	// little of it away.
	maskKeepFrom = 16
)

// Mask returns v masked: its first four characters and MaskedSuffix when
// it is long enough for those to give little away, else MaskedShort.
func Mask(v string) string {
	if utf8.RuneCountInString(v) >= maskKeepFrom {
		return string([]rune(v)[:4]) + MaskedSuffix
	}
	return MaskedShort
}

// shownHeaders are the headers Herald sets whose values are no secret.
var shownHeaders = map[string]bool{
	"Content-Type": true, http.CanonicalHeaderKey(sign.HeaderID): true, http.CanonicalHeaderKey(sign.HeaderTimestamp): true,
	http.CanonicalHeaderKey(HeaderAttempt): true, http.CanonicalHeaderKey(sign.HeaderDelivery): true, "User-Agent": true,
}

// SentHeaders is what an attempt's record keeps of the headers it sent:
// Herald's own as sent, signatures with their scheme tags only ("v1,…"),
// every other value (the endpoint's custom headers) masked.
// userAgent is the client's, which it adds when h has none.
func SentHeaders(h http.Header, userAgent string) map[string]string {
	out := make(map[string]string, len(h)+1)
	if userAgent != "" {
		out["User-Agent"] = userAgent
	}
	for k, vs := range h {
		if len(vs) == 0 {
			continue
		}
		v := strings.Join(vs, ", ")
		switch {
		case shownHeaders[k]:
			out[k] = v
		case k == http.CanonicalHeaderKey(sign.HeaderSignature):
			sigs := strings.Fields(v)
			for i, s := range sigs {
				tag, _, _ := strings.Cut(s, ",")
				sigs[i] = tag + "," + MaskedShort
			}
			out[k] = strings.Join(sigs, " ")
		default:
			out[k] = Mask(v)
		}
	}
	return out
}
