package service

import (
	"context"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/rs/zerolog"
)

// startPprof serves Go's profiler (net/http/pprof) on addr
// (HERALD_PPROF_ADDR, Config.PprofAddr), e.g. 127.0.0.1:6060: opt-in, off
// when addr is "", on a listener and mux of its own, never on the API's
// address. Profiles reveal internals and cost CPU while taken, so keep the
// address on loopback. It returns the func that stops it.
func startPprof(addr string, log zerolog.Logger) (stop func()) {
	if addr == "" {
		return func() {}
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		log.Error().Err(err).Str("addr", addr).Msg("HERALD_PPROF_ADDR: cannot listen; profiling off")
		return func() {}
	}
	if host, _, _ := net.SplitHostPort(addr); host == "" || !(host == "localhost" || net.ParseIP(host).IsLoopback()) {
		log.Warn().Str("addr", addr).Msg("HERALD_PPROF_ADDR is not a loopback address: anyone who reaches it can profile this process")
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	log.Info().Str("addr", ln.Addr().String()).Msg("pprof serving on HERALD_PPROF_ADDR")
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if srv.Shutdown(ctx) != nil {
			_ = srv.Close() // a profile being taken is cut short
		}
	}
}
