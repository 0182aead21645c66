package service_test

import (
	"io"
	"regexp"
	"testing"

	"github.com/heraldhq/herald/pkg/service"
)

// At a terminal the default format is the console's; "json" is JSON there
// too.
func TestLogFormatAtTerminal(t *testing.T) {
	for format, want := range map[string]*regexp.Regexp{
		"auto": regexp.MustCompile(`^\S*\d\d:\d\d:\d\d\.\d{3}\S* \S*INF\S* \S*hello`),
		"json": regexp.MustCompile(`^\{"level":"info".*"message":"hello"\}\n$`),
	} {
		out := atTerminal(t, func(tty io.Writer) {
			log := newLogger(t, service.Config{LogLevel: "info", LogFormat: format}, tty)
			log.Info().Msg("hello")
		})
		if !want.MatchString(out) {
			t.Errorf("format %q at a terminal: %q", format, out)
		}
	}
}
