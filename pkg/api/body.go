package api

import (
	"bytes"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"

	"github.com/heraldhq/herald/pkg/strictjson"
)

// decodeOptional is decode for routes whose body may be left out: an empty
// body leaves v as it is (whatever its Content-Type); anything else is
// decoded as strictly as decode.
func decodeOptional(w http.ResponseWriter, r *http.Request, v any) bool {
	b, ok := readBody(w, r, maxManagementBytes)
	if !ok {
		return false
	}
	if len(bytes.TrimSpace(b)) == 0 {
		return true
	}
	if !jsonContent(w, r) {
		return false
	}
	if err := strictjson.Decode(b, v); err != nil {
		badRequest(w, r, err.Error())
		return false
	}
	return true
}

// jsonContent reports whether r's body may be read as JSON: its
// Content-Type is application/json or a +json type, whatever its
// parameters, or there is none (a client that names no type is taken at
// its word that the body is the JSON the API takes). Otherwise it reads
// what is left of the body and discards it (bounded by the route's limit),
// so that the client, still writing, reads the answer rather than a broken
// pipe, answers 415 naming the header and what to send instead, and
// reports false. curl -d sends application/x-www-form-urlencoded unless
// told otherwise; the detail says how to tell it.
func jsonContent(w http.ResponseWriter, r *http.Request) bool {
	ct := r.Header.Get("Content-Type")
	if ct == "" {
		return true
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err == nil && (mt == "application/json" || strings.HasSuffix(mt, "+json")) {
		return true
	}
	_, _ = io.Copy(io.Discard, r.Body)
	switch r.Method {
	case http.MethodPost:
		w.Header().Set("Accept-Post", "application/json")
	case http.MethodPatch:
		w.Header().Set("Accept-Patch", "application/json")
	}
	writeProblem(w, r, Problem{Type: problemBase + "unsupported-media-type", Title: "Unsupported media type", Status: http.StatusUnsupportedMediaType,
		Detail: fmt.Sprintf("Content-Type %q is not accepted: the body must be JSON, sent as Content-Type: application/json (curl: --json, or -H 'Content-Type: application/json' with -d)", ct)})
	return false
}
