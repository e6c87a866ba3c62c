package bench

import (
	"fmt"
	"image"
	"image/color"
	"image/png"
	"io"
	"math"
	"os"
	"strings"
)

// Plot geometry, in pixels.
const (
	plotW      = 1000
	panelH     = 320
	marginL    = 80
	marginR    = 20
	marginTop  = 30
	marginBot  = 40
	glyphScale = 2
)

// palette colours the runs in order.
var palette = []color.RGBA{
	{0x1f, 0x77, 0xb4, 0xff}, {0xd6, 0x27, 0x28, 0xff}, {0x2c, 0xa0, 0x2c, 0xff},
	{0xff, 0x7f, 0x0e, 0xff}, {0x94, 0x67, 0xbd, 0xff}, {0x8c, 0x56, 0x4b, 0xff},
}

// WritePNG plots each run's completion rate (upper panel) and p99 end-to-end latency (lower
// panel) per second, one colour per run, into a PNG file.
func (rep Report) WritePNG(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("bench: create plot %s: %w", path, err)
	}
	if err := rep.Plot(f); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("bench: write plot %s: %w", path, err)
	}
	return nil
}

// Plot draws the plot WritePNG writes.
func (rep Report) Plot(w io.Writer) error {
	legendH := 16 * len(rep.Runs)
	img := image.NewRGBA(image.Rect(0, 0, plotW, 2*panelH+legendH+10))
	fill(img, img.Bounds(), color.RGBA{0xff, 0xff, 0xff, 0xff})
	tMax := 1.0
	for _, r := range rep.Runs {
		for _, s := range r.Samples {
			tMax = max(tMax, s.T)
		}
	}
	panels := []struct {
		title   string
		y       func(Sample) float64
		defined func(Sample) bool // false leaves a gap in the line
	}{
		{"completed jobs/s", func(s Sample) float64 { return s.CompletedPerS }, func(Sample) bool { return true }},
		// A second without completions has no latency: a gap, not a drop to 0.
		{"p99 end-to-end ms", func(s Sample) float64 { return s.E2EMs.P99 }, func(s Sample) bool { return s.CompletedPerS > 0 }},
	}
	for i, p := range panels {
		area := image.Rect(marginL, i*panelH+marginTop, plotW-marginR, (i+1)*panelH-marginBot)
		yMax := 0.0
		for _, r := range rep.Runs {
			for _, s := range r.Samples {
				yMax = max(yMax, p.y(s))
			}
		}
		yMax = niceCeil(yMax)
		drawAxes(img, area, p.title, tMax, yMax)
		for ri, r := range rep.Runs {
			c := palette[ri%len(palette)]
			var prev image.Point
			joined := false
			for _, s := range r.Samples {
				if !p.defined(s) {
					joined = false
					continue
				}
				pt := image.Pt(
					area.Min.X+int(s.T/tMax*float64(area.Dx())),
					area.Max.Y-int(p.y(s)/yMax*float64(area.Dy())),
				)
				if joined {
					line(img, prev, pt, c)
				}
				prev, joined = pt, true
			}
		}
	}
	for ri, r := range rep.Runs {
		y := 2*panelH + 16*ri
		c := palette[ri%len(palette)]
		fill(img, image.Rect(marginL, y+3, marginL+30, y+7), c)
		text(img, marginL+40, y, r.Label()+" "+string(r.Mode), color.RGBA{0, 0, 0, 0xff})
	}
	if err := png.Encode(w, img); err != nil {
		return fmt.Errorf("bench: encode plot: %w", err)
	}
	return nil
}

func drawAxes(img *image.RGBA, area image.Rectangle, title string, tMax, yMax float64) {
	black, grey := color.RGBA{0, 0, 0, 0xff}, color.RGBA{0xdd, 0xdd, 0xdd, 0xff}
	const ticks = 5
	for i := 0; i <= ticks; i++ {
		y := area.Max.Y - i*area.Dy()/ticks
		line(img, image.Pt(area.Min.X, y), image.Pt(area.Max.X, y), grey)
		label := compact(yMax * float64(i) / ticks)
		text(img, area.Min.X-8-textWidth(label), y-5, label, black)
		x := area.Min.X + i*area.Dx()/ticks
		label = compact(tMax * float64(i) / ticks)
		text(img, x-textWidth(label)/2, area.Max.Y+6, label, black)
	}
	line(img, area.Min, image.Pt(area.Min.X, area.Max.Y), black)
	line(img, image.Pt(area.Min.X, area.Max.Y), area.Max, black)
	text(img, area.Min.X, area.Min.Y-20, title, black)
	text(img, area.Max.X-textWidth("t s"), area.Max.Y+20, "t s", black)
}

// niceCeil rounds v up to 1, 2 or 5 times a power of ten (at least 1).
func niceCeil(v float64) float64 {
	if v <= 1 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if v <= m*p {
			return m * p
		}
	}
	return 10 * p
}

// compact formats an axis value: 12000 as 12k, 26.4 as 26, 2.5 as 2.5.
func compact(v float64) string {
	switch {
	case v >= 1000:
		return strings.TrimSuffix(fmt.Sprintf("%.1f", v/1000), ".0") + "k"
	case v >= 10 || v == math.Trunc(v):
		return fmt.Sprintf("%.0f", v)
	default:
		return fmt.Sprintf("%.1f", v)
	}
}

// fill paints r (clipped to the image) one row copy at a time.
func fill(img *image.RGBA, r image.Rectangle, c color.RGBA) {
	r = r.Intersect(img.Bounds())
	if r.Empty() {
		return
	}
	row := make([]byte, 4*r.Dx())
	for i := 0; i < len(row); i += 4 {
		row[i], row[i+1], row[i+2], row[i+3] = c.R, c.G, c.B, c.A
	}
	for y := r.Min.Y; y < r.Max.Y; y++ {
		copy(img.Pix[img.PixOffset(r.Min.X, y):], row)
	}
}

// line draws a two-pixel-wide line from a to b (Bresenham).
func line(img *image.RGBA, a, b image.Point, c color.RGBA) {
	dx, dy := abs(b.X-a.X), -abs(b.Y-a.Y)
	sx, sy := sign(b.X-a.X), sign(b.Y-a.Y)
	e := dx + dy
	for {
		img.SetRGBA(a.X, a.Y, c)
		img.SetRGBA(a.X, a.Y+1, c)
		if a == b {
			return
		}
		if e2 := 2 * e; e2 >= dy {
			e += dy
			a.X += sx
		} else {
			e += dx
			a.Y += sy
		}
	}
}

func abs(v int) int { return max(v, -v) }

func sign(v int) int {
	switch {
	case v > 0:
		return 1
	case v < 0:
		return -1
	}
	return 0
}

// glyphs is a 3×5 pixel font: rows top to bottom, '#' lit. Letters are drawn as capitals.
var glyphs = map[rune]string{
	'0': "####.##.##.####", '1': ".#.##..#..#.###", '2': "###..#####..###", '3': "###..####..####",
	'4': "#.##.####..#..#", '5': "####..###..####", '6': "####..####.####", '7': "###..#..#..#..#",
	'8': "####.#####.####", '9': "####.####..####", 'a': ".#.#.#####.##.#", 'b': "##.#.###.#.###.",
	'c': "####..#..#..###", 'd': "##.#.##.##.###.", 'e': "####..##.#..###", 'f': "####..##.#..#..",
	'g': "####..#.##.####", 'h': "#.##.#####.##.#", 'i': "###.#..#..#.###", 'j': "..#..#..##.####",
	'k': "#.##.###.#.##.#", 'l': "#..#..#..#..###", 'm': "#.########.##.#", 'n': "##.#.##.##.##.#",
	'o': "####.##.##.####", 'p': "####.#####..#..", 'q': "####.##.####..#", 'r': "##.#.###.#.##.#",
	's': "####..###..####", 't': "###.#..#..#..#.", 'u': "#.##.##.##.####", 'v': "#.##.##.##.#.#.",
	'w': "#.##.########.#", 'x': "#.##.#.#.#.##.#", 'y': "#.##.#.#..#..#.", 'z': "###..#.#.#..###",
	'.': ".............#.", '/': "..#..#.#.#..#..", '-': "......###......", ':': "....#.....#....",
	'(': ".#.#..#..#...#.", ')': ".#...#..#..#.#.", '_': "............###", '=': "...###...###...",
	'%': "#....#.#.#....#", ' ': "...............",
}

func textWidth(s string) int { return len([]rune(s)) * 4 * glyphScale }

// text draws s with its top-left corner at (x, y).
func text(img *image.RGBA, x, y int, s string, c color.RGBA) {
	for _, r := range strings.ToLower(s) {
		g := glyphs[r]
		for i, px := range g {
			if px != '#' {
				continue
			}
			gx, gy := x+(i%3)*glyphScale, y+(i/3)*glyphScale
			fill(img, image.Rect(gx, gy, gx+glyphScale, gy+glyphScale), c)
		}
		x += 4 * glyphScale
	}
}
