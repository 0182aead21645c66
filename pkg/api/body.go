package api

import (
	"bytes"
	"net/http"

	"github.com/heraldhq/herald/pkg/strictjson"
)

// decodeOptional is decode for routes whose body may be left out: an empty
// body leaves v as it is; anything else is decoded as strictly as decode.
func decodeOptional(w http.ResponseWriter, r *http.Request, v any) bool {
	b, ok := readBody(w, r, maxManagementBytes)
	if !ok {
		return false
	}
	if len(bytes.TrimSpace(b)) == 0 {
		return true
	}
	if err := strictjson.Decode(b, v); err != nil {
		badRequest(w, r, err.Error())
		return false
	}
	return true
}
