package api

import (
	"encoding/base64"
	"net/http"
	"strconv"

	"github.com/heraldhq/herald/pkg/valid"
)

// Listing limits: ?limit= takes 1 to maxLimit items, defaultLimit when
// absent.
const (
	defaultLimit = 50
	maxLimit     = 100
)

// page is how every listing answers: the items, and the cursor of the next
// page, null on the last one.
type page[T any] struct {
	Data       []T     `json:"data"`
	NextCursor *string `json:"next_cursor"`
}

func newPage[T any](items []T, next string) page[T] {
	if items == nil {
		items = []T{}
	}
	p := page[T]{Data: items}
	if next != "" {
		p.NextCursor = &next
	}
	return p
}

// listParams reads ?limit= and ?cursor=; bad values answer 422 with the
// fields named. The cursor is returned as given (opaque).
func listParams(w http.ResponseWriter, r *http.Request, errs *valid.Errors) (limit int, cursor string) {
	limit = defaultLimit
	q := r.URL.Query()
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxLimit {
			errs.Add("limit", "must be a whole number from 1 to %d", maxLimit)
		} else {
			limit = n
		}
	}
	return limit, q.Get("cursor")
}

// idCursor is the cursor of listings in id order: the last id shown.
func idCursor(id string) string { return base64.RawURLEncoding.EncodeToString([]byte("id:" + id)) }

func parseIDCursor(c string, errs *valid.Errors) string {
	if c == "" {
		return ""
	}
	b, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil || len(b) < 4 || string(b[:3]) != "id:" {
		errs.Add("cursor", "is not a cursor from a previous page's next_cursor")
		return ""
	}
	return string(b[3:])
}

// listQuery reads the parameters of a listing in id order; false means a
// 422 was sent.
func listQuery(w http.ResponseWriter, r *http.Request) (limit int, after string, ok bool) {
	var errs valid.Errors
	limit, c := listParams(w, r, &errs)
	after = parseIDCursor(c, &errs)
	if invalid(w, r, errs.Err()) {
		return 0, "", false
	}
	return limit, after, true
}
