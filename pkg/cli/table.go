package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"
	"unicode/utf8"
)

// tableWidth is what tables are cut to: 80 columns fit every terminal,
// and a table pasted into an issue or a chat.
const tableWidth = 80

// table is rows under a header (none when head is nil), written through
// text/tabwriter two spaces apart and cut to tableWidth: the columns in
// cut (free text, never ids or times) shrink, the widest first, down to
// their header's width, and lose their tail to "…". --output json has
// every value in full.
type table struct {
	head []string
	rows [][]string
	cut  []int
}

func (t *table) add(cells ...string) { t.rows = append(t.rows, cells) }

func (t *table) write(w io.Writer) error {
	rows := t.rows
	if t.head != nil {
		rows = append([][]string{t.head}, rows...)
	}
	if len(rows) == 0 {
		return nil
	}
	n := len(rows[0])
	widths := make([]int, n)
	for _, r := range rows {
		for i, cell := range r {
			r[i] = oneLine(cell)
			widths[i] = max(widths[i], utf8.RuneCountInString(r[i]))
		}
	}
	floor := func(i int) int {
		if t.head != nil {
			return max(utf8.RuneCountInString(t.head[i]), 4)
		}
		return 8
	}
	total := 2 * (n - 1)
	for _, w := range widths {
		total += w
	}
	for total > tableWidth {
		j := -1
		for _, i := range t.cut {
			if widths[i] > floor(i) && (j < 0 || widths[i] > widths[j]) {
				j = i
			}
		}
		if j < 0 {
			break // only ids and times left: they are never cut
		}
		widths[j]--
		total--
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, r := range rows {
		for i, cell := range r {
			if i > 0 {
				io.WriteString(tw, "\t")
			}
			io.WriteString(tw, cut(cell, widths[i]))
		}
		io.WriteString(tw, "\n")
	}
	return tw.Flush()
}

// oneLine makes s fit one table cell: runs of white space and control
// characters become one space.
func oneLine(s string) string {
	return strings.Join(strings.FieldsFunc(s, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }), " ")
}

// cut shortens s to n characters, its last one "…" when it was longer.
func cut(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:max(n-1, 0)]) + "…"
}

// kv is a record shown as two columns, name and value.
type kv struct{ t table }

func (k *kv) add(name, value string) {
	if value != "" {
		k.t.add(name, value)
	}
}

func (k *kv) write(w io.Writer) error {
	k.t.cut = []int{1}
	return k.t.write(w)
}

// printJSON prints v as indented JSON: raw answers of the API as they came
// (json.RawMessage, []byte), anything else marshalled.
func (c *cmd) printJSON(v any) error {
	var b []byte
	switch v := v.(type) {
	case []byte:
		b = v
	case json.RawMessage:
		b = v
	default:
		var err error
		if b, err = json.Marshal(v); err != nil {
			return err
		}
	}
	var out bytes.Buffer
	if err := json.Indent(&out, b, "", "  "); err != nil {
		return fmt.Errorf("the answer is not JSON: %w", err)
	}
	out.WriteByte('\n')
	_, err := c.std.Out.Write(out.Bytes())
	return err
}

// ageOf is how long before now t was, in the one unit that reads at a
// glance (45s, 12m, 5h, 3d): the AGE column of listings.
func ageOf(t, now time.Time) string {
	if t.IsZero() {
		return "-"
	}
	d := max(now.Sub(t), 0)
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d/time.Second))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d/time.Minute))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d/time.Hour))
	}
	return fmt.Sprintf("%dd", int(d/(24*time.Hour)))
}

// timeOf formats a time for a record's view; "" for none.
func timeOf(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}
