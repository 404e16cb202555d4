package bench

import (
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// table is one result table: a title, the lines that state its pinned inputs and the
// conditions its figures hold under, then columns aligned for a terminal. The first
// column is a label (left-aligned); the others are figures (right-aligned).
type table struct {
	title  string
	notes  []string
	header []string
	rows   [][]string
}

func newTable(title string, header ...string) *table {
	return &table{title: title, header: header}
}

// note adds a line under the title.
func (t *table) note(format string, args ...any) {
	t.notes = append(t.notes, fmt.Sprintf(format, args...))
}

// row adds a row; missing cells are empty, extra cells are an error of the caller.
func (t *table) row(cells ...string) {
	if len(cells) > len(t.header) {
		panic(fmt.Sprintf("bench: table %q: row of %d cells, %d columns", t.title, len(cells), len(t.header)))
	}
	r := make([]string, len(t.header))
	copy(r, cells)
	t.rows = append(t.rows, r)
}

// write prints the table.
func (t *table) write(w io.Writer) error {
	width := make([]int, len(t.header))
	for _, r := range append([][]string{t.header}, t.rows...) {
		for i, c := range r {
			width[i] = max(width[i], utf8.RuneCountInString(c))
		}
	}
	var b strings.Builder
	b.WriteString("## " + t.title + "\n")
	for _, n := range t.notes {
		b.WriteString("   " + n + "\n")
	}
	b.WriteString("\n")
	line := func(cells []string) {
		var l strings.Builder
		l.WriteString("   ")
		for i, c := range cells {
			pad := strings.Repeat(" ", width[i]-utf8.RuneCountInString(c))
			if i > 0 {
				l.WriteString("  ")
			}
			if i == 0 {
				l.WriteString(c + pad)
			} else {
				l.WriteString(pad + c)
			}
		}
		b.WriteString(strings.TrimRight(l.String(), " ") + "\n")
	}
	line(t.header)
	rule := make([]string, len(width))
	for i, n := range width {
		rule[i] = strings.Repeat("-", n)
	}
	line(rule)
	for _, r := range t.rows {
		line(r)
	}
	b.WriteString("\n")
	_, err := io.WriteString(w, b.String())
	return err
}

// Figures.

// count formats an integer with thousands separators: 1,234,567.
func count[T ~int | ~int64 | ~uint64](n T) string {
	s := strconv.FormatInt(int64(n), 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, r := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(r)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

// perSecond formats a rate as a whole number with separators.
func perSecond(r float64) string {
	if math.IsNaN(r) || math.IsInf(r, 0) {
		return "-"
	}
	return count(int64(math.Round(r)))
}

// seconds formats a duration in seconds with two decimals.
func seconds(d time.Duration) string { return strconv.FormatFloat(d.Seconds(), 'f', 2, 64) }

// millis formats a latency in milliseconds: two decimals under 10 ms, one above.
func millis(d time.Duration) string {
	ms := float64(d) / float64(time.Millisecond)
	if ms < 10 {
		return strconv.FormatFloat(ms, 'f', 2, 64)
	}
	return strconv.FormatFloat(ms, 'f', 1, 64)
}

// ratio formats a/b as "0.85×"; "-" when b is zero.
func ratio(a, b float64) string {
	if b == 0 || math.IsNaN(a) || math.IsNaN(b) {
		return "-"
	}
	return strconv.FormatFloat(a/b, 'f', 2, 64) + "×"
}

// cores formats CPU use in cores: "1.62".
func cores(c float64) string { return strconv.FormatFloat(c, 'f', 2, 64) }
