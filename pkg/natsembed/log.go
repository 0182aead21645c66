package natsembed

import (
	"fmt"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"unicode"

	"github.com/rs/zerolog"
)

// logAdapter implements server.Logger on top of zerolog.
type logAdapter struct {
	l            zerolog.Logger
	debug, trace bool

	ready atomic.Bool // the server said "Server is ready"

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

// Noticef logs the server's notices at info, but for its start-up summary
// (version, limits, store directory: every notice up to "Server is ready"),
// which is logged at debug. At info those twenty lines stood between a
// person running `make run` and Herald's welcome text; the process's own
// "herald ready" record says what matters of them (the NATS address).
func (a *logAdapter) Noticef(format string, v ...any) {
	if !a.ready.Load() {
		if strings.HasPrefix(format, "Server is ready") {
			a.ready.Store(true)
		}
		if a.debug {
			a.log(a.l.Debug(), format, v)
		}
		return
	}
	a.log(a.l.Info(), format, v)
}

func (a *logAdapter) Warnf(format string, v ...any)  { a.log(a.l.Warn(), format, v) }
func (a *logAdapter) Errorf(format string, v ...any) { a.log(a.l.Error(), format, v) }

// Fatalf logs at error level and records the message: nats-server's own
// logger would exit the process, which an embedding program must not do.
func (a *logAdapter) Fatalf(format string, v ...any) {
	msg := fmt.Sprintf(format, v...)
	if m, ok := record(msg); ok {
		msg = m
	}
	a.l.Error().Bool("fatal", true).Msg(msg)
	a.mu.Lock()
	if a.fatalMsg == "" {
		a.fatalMsg = msg
	}
	a.mu.Unlock()
}

func (a *logAdapter) Debugf(format string, v ...any) {
	if a.debug {
		a.log(a.l.Debug(), format, v)
	}
}

func (a *logAdapter) Tracef(format string, v ...any) {
	if a.trace {
		a.log(a.l.Trace(), format, v)
	}
}

// log writes one server line as a record, or nothing for a line that is
// only decoration.
func (a *logAdapter) log(e *zerolog.Event, format string, v []any) {
	if e == nil {
		return
	}
	msg, ok := record(fmt.Sprintf(format, v...))
	if !ok {
		e.Discard()
		return
	}
	e.Msg(msg)
}

// alignment is the padding nats-server puts after a label to line up the
// values of its start-up summary ("  Max Memory:      17.66 GB").
var alignment = regexp.MustCompile(`:\s{2,}`)

// record turns a line nats-server writes for a terminal into a log
// message: without the indentation and the alignment of its start-up
// summary, a heading ("---- JETSTREAM ----") without its rule. ok is false
// for a line with no letter or digit (an empty line, a rule), which says
// nothing in a log. The ASCII-art banner is off (Start), since its lines
// carry letters only as drawings.
func record(line string) (msg string, ok bool) {
	msg = strings.TrimSpace(line)
	if strings.HasPrefix(msg, "--") {
		msg = strings.TrimSpace(strings.Trim(msg, "-"))
	}
	if !strings.ContainsFunc(msg, func(r rune) bool { return unicode.IsLetter(r) || unicode.IsDigit(r) }) {
		return "", false
	}
	return alignment.ReplaceAllString(msg, ": "), true
}

func (a *logAdapter) fatal() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.fatalMsg
}
