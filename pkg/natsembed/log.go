package natsembed

import (
	"fmt"
	"sync"

	"github.com/rs/zerolog"
)

// logAdapter implements server.Logger on top of zerolog.
type logAdapter struct {
	l            zerolog.Logger
	debug, trace bool

	mu       sync.Mutex
	fatalMsg string
}

func newLogger(l zerolog.Logger) *logAdapter {
	return &logAdapter{l: l, debug: enabled(l, zerolog.DebugLevel), trace: enabled(l, zerolog.TraceLevel)}
}

func enabled(l zerolog.Logger, lvl zerolog.Level) bool {
	e := l.WithLevel(lvl)
	if e == nil {
		return false
	}
	e.Discard()
	return true
}

func (a *logAdapter) Noticef(format string, v ...any) { a.l.Info().Msgf(format, v...) }
func (a *logAdapter) Warnf(format string, v ...any)   { a.l.Warn().Msgf(format, v...) }
func (a *logAdapter) Errorf(format string, v ...any)  { a.l.Error().Msgf(format, v...) }

// Fatalf logs at error level and records the message: nats-server's own
// logger would exit the process, which an embedding program must not do.
func (a *logAdapter) Fatalf(format string, v ...any) {
	msg := fmt.Sprintf(format, v...)
	a.l.Error().Bool("fatal", true).Msg(msg)
	a.mu.Lock()
	if a.fatalMsg == "" {
		a.fatalMsg = msg
	}
	a.mu.Unlock()
}

func (a *logAdapter) Debugf(format string, v ...any) {
	if a.debug {
		a.l.Debug().Msgf(format, v...)
	}
}

func (a *logAdapter) Tracef(format string, v ...any) {
	if a.trace {
		a.l.Trace().Msgf(format, v...)
	}
}

func (a *logAdapter) fatal() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.fatalMsg
}
