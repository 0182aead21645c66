package bench

import (
	"bytes"
	"fmt"
	"html"
	"math"
	"strconv"
)

// Line is one series of a chart panel.
type Line struct {
	Label   string
	Color   string
	Dashed  bool
	Faint   bool // drawn thin and light: context, not the figure
	Points  [][2]float64
	Markers bool
}

// HLine is a horizontal reference line (a baseline).
type HLine struct {
	Y     float64
	Label string
	Color string
}

// Panel is one plot: shared x axis (seconds), its own y axis.
type Panel struct {
	Title  string
	Lines  []Line
	HLines []HLine
	// Log draws the y axis on a log scale (chosen by the caller when values
	// span orders of magnitude, such as a retry's seconds beside
	// milliseconds).
	Log bool
}

// Chart is a picture of a run: panels stacked over one time axis.
type Chart struct {
	Title    string
	Subtitle []string
	XLabel   string
	Panels   []Panel
}

const (
	svgW      = 960
	panelH    = 230
	marginL   = 78
	marginR   = 24
	panelGap  = 80
	titleLine = 18
)

// SVG renders the chart as a standalone SVG document: plain lines, axes and
// labels, readable in a browser or on GitHub.
func (c Chart) SVG() []byte {
	var b bytes.Buffer
	top := 34 + titleLine*len(c.Subtitle) + 40
	h := top + len(c.Panels)*(panelH+panelGap) + 10
	for _, p := range c.Panels {
		h += (legendRows(p) - 1) * legendRow
	}
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="Helvetica, Arial, sans-serif" font-size="12">`+"\n", svgW, h, svgW, h)
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="#ffffff"/>`+"\n", svgW, h)
	fmt.Fprintf(&b, `<text x="%d" y="24" font-size="17" font-weight="bold">%s</text>`+"\n", marginL-60, esc(c.Title))
	for i, s := range c.Subtitle {
		fmt.Fprintf(&b, `<text x="%d" y="%d" fill="#444">%s</text>`+"\n", marginL-60, 44+i*titleLine, esc(s))
	}
	xmax := 0.0
	for _, p := range c.Panels {
		for _, l := range p.Lines {
			for _, pt := range l.Points {
				xmax = max(xmax, pt[0])
			}
		}
	}
	xstep := niceStep(xmax / 8)
	xmax = math.Max(xstep, math.Ceil(xmax/xstep)*xstep)
	plotW := float64(svgW - marginL - marginR)
	y0 := float64(top)
	for _, p := range c.Panels {
		y0 += float64((legendRows(p) - 1) * legendRow)
		c.panel(&b, p, y0, plotW, xmax, xstep)
		y0 += panelH + panelGap
	}
	b.WriteString("</svg>\n")
	return b.Bytes()
}

func (c Chart) panel(b *bytes.Buffer, p Panel, y0, plotW, xmax, xstep float64) {
	ymax, ymin := 0.0, math.Inf(1)
	for _, l := range p.Lines {
		for _, pt := range l.Points {
			ymax = max(ymax, pt[1])
			if pt[1] > 0 {
				ymin = min(ymin, pt[1])
			}
		}
	}
	for _, hl := range p.HLines {
		ymax = max(ymax, hl.Y)
	}
	if ymax <= 0 {
		ymax = 1
	}
	logScale := p.Log && !math.IsInf(ymin, 1) && ymax/ymin > 1
	var ylo, yhi float64
	var ticks []float64
	if logScale {
		ylo = math.Pow(10, math.Floor(math.Log10(ymin)))
		yhi = math.Pow(10, math.Ceil(math.Log10(ymax)))
		for d := ylo; d <= yhi*1.0001; d *= 10 {
			ticks = append(ticks, d)
		}
	} else {
		step := niceStep(ymax / 5)
		yhi = math.Ceil(ymax*1.05/step) * step
		for v := 0.0; v <= yhi+step/2; v += step {
			ticks = append(ticks, v)
		}
	}
	ph := float64(panelH)
	X := func(x float64) float64 { return marginL + x/xmax*plotW }
	Y := func(y float64) float64 {
		if logScale {
			y = max(y, ylo)
			return y0 + ph - (math.Log10(y)-math.Log10(ylo))/(math.Log10(yhi)-math.Log10(ylo))*ph
		}
		return y0 + ph - y/yhi*ph
	}
	title := p.Title
	if logScale {
		title += " (log scale)"
	}
	fmt.Fprintf(b, `<text x="%d" y="%.1f" font-weight="bold">%s</text>`+"\n", marginL, y0-28-float64((legendRows(p)-1)*legendRow), esc(title))
	fmt.Fprintf(b, `<rect x="%d" y="%.1f" width="%.1f" height="%.1f" fill="none" stroke="#999"/>`+"\n", marginL, y0, plotW, ph)
	for _, t := range ticks {
		y := Y(t)
		fmt.Fprintf(b, `<line x1="%d" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#e5e5e5"/>`+"\n", marginL, y, marginL+plotW, y)
		fmt.Fprintf(b, `<text x="%d" y="%.1f" text-anchor="end" fill="#555">%s</text>`+"\n", marginL-6, y+4, fmtNum(t))
	}
	for x := 0.0; x <= xmax+xstep/2; x += xstep {
		fmt.Fprintf(b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#f0f0f0"/>`+"\n", X(x), y0, X(x), y0+ph)
		fmt.Fprintf(b, `<text x="%.1f" y="%.1f" text-anchor="middle" fill="#555">%s</text>`+"\n", X(x), y0+ph+16, fmtNum(x))
	}
	if c.XLabel != "" {
		fmt.Fprintf(b, `<text x="%.1f" y="%.1f" text-anchor="end" fill="#555">%s</text>`+"\n", marginL+plotW, y0+ph+32, esc(c.XLabel))
	}
	for _, hl := range p.HLines {
		y := Y(hl.Y)
		fmt.Fprintf(b, `<line x1="%d" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="1.5" stroke-dasharray="2,4"/>`+"\n", marginL, y, marginL+plotW, y, hl.Color)
		fmt.Fprintf(b, `<text x="%d" y="%.1f" fill="%s" font-size="11">%s</text>`+"\n", marginL+6, y-4, hl.Color, esc(hl.Label))
	}
	for _, l := range p.Lines {
		if len(l.Points) == 0 {
			continue
		}
		var pts bytes.Buffer
		for _, pt := range l.Points {
			fmt.Fprintf(&pts, "%.1f,%.1f ", X(pt[0]), Y(pt[1]))
		}
		width, opacity, dash := 2.0, 1.0, ""
		if l.Faint {
			width, opacity = 1.2, 0.45
		}
		if l.Dashed {
			dash = ` stroke-dasharray="7,4"`
		}
		fmt.Fprintf(b, `<polyline fill="none" stroke="%s" stroke-width="%.1f" stroke-opacity="%.2f"%s points="%s"/>`+"\n", l.Color, width, opacity, dash, bytes.TrimSpace(pts.Bytes()))
		if l.Markers || len(l.Points) == 1 {
			for _, pt := range l.Points {
				fmt.Fprintf(b, `<circle cx="%.1f" cy="%.1f" r="2.5" fill="%s" fill-opacity="%.2f"/>`+"\n", X(pt[0]), Y(pt[1]), l.Color, opacity)
			}
		}
	}
	// Legend: rows between the title and the plot (faint lines are
	// explained by the title instead).
	for _, it := range legendLayout(p) {
		l := it.line
		dash := ""
		if l.Dashed {
			dash = ` stroke-dasharray="7,4"`
		}
		y := y0 - 12 - float64(it.rowsBelow)*legendRow
		fmt.Fprintf(b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="2"%s/>`+"\n", it.x, y, it.x+22, y, l.Color, dash)
		fmt.Fprintf(b, `<text x="%.1f" y="%.1f" font-size="11">%s</text>`+"\n", it.x+26, y+4, esc(l.Label))
	}
}

const legendRow = 15

type legendItem struct {
	line      Line
	x         float64
	rowsBelow int // rows between this item's row and the plot
}

// legendLayout places the legend entries in rows that fit the plot's width.
func legendLayout(p Panel) []legendItem {
	var items []legendItem
	row, x := 0, float64(marginL)
	right := float64(svgW - marginR)
	for _, l := range p.Lines {
		if l.Faint {
			continue
		}
		w := float64(len(l.Label))*6.2 + 40
		if x+w > right && x > marginL {
			row, x = row+1, marginL
		}
		items = append(items, legendItem{line: l, x: x, rowsBelow: row})
		x += w
	}
	// Rows were counted downward; the plot is below the last one.
	for i := range items {
		items[i].rowsBelow = row - items[i].rowsBelow
	}
	return items
}

// legendRows is how many legend rows a panel needs.
func legendRows(p Panel) int {
	n := 0
	for _, it := range legendLayout(p) {
		n = max(n, it.rowsBelow+1)
	}
	return max(n, 1)
}

// niceStep rounds a raw step up to 1, 2, 2.5 or 5 times a power of ten.
func niceStep(raw float64) float64 {
	if raw <= 0 || math.IsNaN(raw) || math.IsInf(raw, 0) {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 2.5, 5, 10} {
		if m*p >= raw {
			return m * p
		}
	}
	return 10 * p
}

func fmtNum(v float64) string {
	switch {
	case v >= 1e6:
		return strconv.FormatFloat(v/1e6, 'f', -1, 64) + "M"
	case v >= 1e4:
		return strconv.FormatFloat(v/1e3, 'f', -1, 64) + "k"
	case v == math.Trunc(v):
		return strconv.FormatFloat(v, 'f', 0, 64)
	case v >= 1:
		return strconv.FormatFloat(v, 'f', 1, 64)
	}
	return strconv.FormatFloat(v, 'g', 2, 64)
}

func esc(s string) string { return html.EscapeString(s) }
