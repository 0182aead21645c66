package api

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"time"
)

// streamHeartbeat is how often an idle event stream sends a comment, so
// that proxies do not close it and a client gone away is noticed.
const streamHeartbeat = 15 * time.Second

// serveEvents answers with a stream of server-sent events (the attempt
// stream of `herald tail`, the request stream of `herald listen`). produce
// runs beside a heartbeat and calls send for each event, its data v as
// JSON; it must return once its ctx ends. The stream ends when the client
// goes or produce returns; when produce fails, with an "error" event whose
// data is lost (a JSON string) telling the client what to do.
func (s *Server) serveEvents(w http.ResponseWriter, r *http.Request, lost string, produce func(ctx context.Context, send func(event, id string, v any)) error) {
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Accel-Buffering", "no") // nginx: do not buffer the stream
	w.WriteHeader(http.StatusOK)
	_ = rc.Flush()
	var mu sync.Mutex // send and the heartbeat write in turn, and never after the handler returns
	write := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		if ctx.Err() == nil {
			fmt.Fprintf(w, format, args...)
			_ = rc.Flush()
		}
	}
	done := make(chan error, 1)
	go func() {
		done <- produce(ctx, func(event, id string, v any) {
			if b, err := json.Marshal(v); err == nil {
				write("event: %s\nid: %s\ndata: %s\n\n", event, id, b)
			}
		})
	}()
	beat := time.NewTicker(streamHeartbeat)
	defer beat.Stop()
	for {
		select {
		case <-ctx.Done():
			<-done
			return
		case err := <-done:
			if err != nil && ctx.Err() == nil {
				s.log.Warn().Err(err).Str("tenant_id", tenantOf(r)).Str("path", r.URL.Path).Msg("event stream ended")
				write("event: error\ndata: %q\n\n", lost)
			}
			mu.Lock()
			cancel()
			mu.Unlock()
			return
		case <-beat.C:
			write(": still here\n\n")
		}
	}
}
