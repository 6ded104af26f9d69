// Package document holds a report's content independent of its format,
// so that the Markdown and the HTML version of the run report, the
// capacity report and the gate summary say the same thing. It has no
// state beyond a Document's and imports nothing from this module.
package document

import (
	"encoding/base64"
	"fmt"
	"html"
	"strings"
)

// Document is a report's content independent of its format, so that
// report.md and report.html say the same thing.
type Document struct {
	Title  string
	blocks []block
}

type blockKind int

const (
	blockHeading blockKind = iota
	blockPara
	blockTable
	blockList
	blockImage
)

type block struct {
	kind  blockKind
	level int      // heading
	text  string   // heading, paragraph; image alt text
	items []string // list
	head  []string // table
	rows  [][]string
	image string // figure name
}

// H adds a heading of level (1 is the title level).
func (d *Document) H(level int, text string) {
	d.blocks = append(d.blocks, block{kind: blockHeading, level: level, text: text})
}

// P adds a paragraph; format and args are as for fmt.Sprintf.
func (d *Document) P(format string, args ...any) {
	d.blocks = append(d.blocks, block{kind: blockPara, text: fmt.Sprintf(format, args...)})
}

// List adds a bulleted list.
func (d *Document) List(items ...string) {
	if len(items) == 0 {
		return
	}
	d.blocks = append(d.blocks, block{kind: blockList, items: items})
}

// Table adds a table with a header row.
func (d *Document) Table(head []string, rows [][]string) {
	if len(rows) == 0 {
		return
	}
	d.blocks = append(d.blocks, block{kind: blockTable, head: head, rows: rows})
}

// Img adds the figure called name, with alt text.
func (d *Document) Img(name, alt string) {
	d.blocks = append(d.blocks, block{kind: blockImage, image: name, text: alt})
}

// markdown renders the Document; images point at plots/<name>.png.
// Markdown renders the document as Markdown.
func (d *Document) Markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "# %s\n", d.Title)
	for _, bl := range d.blocks {
		b.WriteByte('\n')
		switch bl.kind {
		case blockHeading:
			fmt.Fprintf(&b, "%s %s\n", strings.Repeat("#", bl.level), bl.text)
		case blockPara:
			fmt.Fprintf(&b, "%s\n", bl.text)
		case blockList:
			for _, it := range bl.items {
				fmt.Fprintf(&b, "- %s\n", it)
			}
		case blockTable:
			b.WriteString(mdRow(bl.head))
			seps := make([]string, len(bl.head))
			for i := range seps {
				seps[i] = "---"
			}
			b.WriteString(mdRow(seps))
			for _, r := range bl.rows {
				b.WriteString(mdRow(r))
			}
		case blockImage:
			fmt.Fprintf(&b, "![%s](plots/%s.png)\n", mdEscape(bl.text), bl.image)
		}
	}
	return b.String()
}

func mdRow(cells []string) string {
	esc := make([]string, len(cells))
	for i, c := range cells {
		esc[i] = mdEscape(c)
	}
	return "| " + strings.Join(esc, " | ") + " |\n"
}

func mdEscape(s string) string {
	s = strings.ReplaceAll(s, "|", `\|`)
	s = strings.ReplaceAll(s, "\n", " ")
	return s
}

// htmlPage renders the Document as one self-contained page; images are
// embedded from pngs (figure name -> PNG) as data URIs.
// HTMLPage renders the document as one self-contained HTML page, with
// the figures inlined from pngs (by figure name).
func (d *Document) HTMLPage(pngs map[string][]byte) string {
	var b strings.Builder
	b.WriteString("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n")
	fmt.Fprintf(&b, "<title>%s</title>\n", html.EscapeString(d.Title))
	b.WriteString(`<style>
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2em auto; max-width: 1400px; padding: 0 1em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.2em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
th { background: #f2f2f2; }
tr:nth-child(even) td { background: #fafafa; }
img { max-width: 100%; border: 1px solid #eee; margin: 0.4em 0 1.2em; }
h2 { border-bottom: 1px solid #ddd; padding-bottom: 0.2em; margin-top: 1.6em; }
.fail { color: #b00; font-weight: bold; }
.pass { color: #080; }
</style>
</head>
<body>
`)
	fmt.Fprintf(&b, "<h1>%s</h1>\n", html.EscapeString(d.Title))
	section := ""
	for _, bl := range d.blocks {
		switch bl.kind {
		case blockHeading:
			id := anchor(bl.text)
			if bl.level <= 2 {
				section = id
			} else if section != "" {
				id = section + "-" + id
			}
			fmt.Fprintf(&b, "<h%d id=\"%s\">%s</h%d>\n", bl.level, id, html.EscapeString(bl.text), bl.level)
		case blockPara:
			fmt.Fprintf(&b, "<p>%s</p>\n", inlineHTML(bl.text))
		case blockList:
			b.WriteString("<ul>\n")
			for _, it := range bl.items {
				fmt.Fprintf(&b, "<li>%s</li>\n", inlineHTML(it))
			}
			b.WriteString("</ul>\n")
		case blockTable:
			b.WriteString("<table>\n<tr>")
			for _, h := range bl.head {
				fmt.Fprintf(&b, "<th>%s</th>", html.EscapeString(h))
			}
			b.WriteString("</tr>\n")
			for _, r := range bl.rows {
				b.WriteString("<tr>")
				for _, c := range r {
					fmt.Fprintf(&b, "<td%s>%s</td>", verdictClass(c), inlineHTML(c))
				}
				b.WriteString("</tr>\n")
			}
			b.WriteString("</table>\n")
		case blockImage:
			data, ok := pngs[bl.image]
			if !ok {
				fmt.Fprintf(&b, "<p>(figure %s is missing)</p>\n", html.EscapeString(bl.image))
				continue
			}
			fmt.Fprintf(&b, "<figure><img alt=\"%s\" src=\"data:image/png;base64,%s\"><figcaption>%s</figcaption></figure>\n",
				html.EscapeString(bl.text), base64.StdEncoding.EncodeToString(data), html.EscapeString(bl.text))
		}
	}
	b.WriteString("</body>\n</html>\n")
	return b.String()
}

func verdictClass(cell string) string {
	switch {
	case strings.HasPrefix(cell, "**FAIL"), strings.HasPrefix(cell, "FAIL"):
		return ` class="fail"`
	case strings.HasPrefix(cell, "pass"):
		return ` class="pass"`
	}
	return ""
}

// inlineHTML escapes text and turns the little Markdown the report uses
// (**bold** and `code`) into HTML.
func inlineHTML(s string) string {
	s = html.EscapeString(s)
	s = replacePairs(s, "**", "<strong>", "</strong>")
	s = replacePairs(s, "`", "<code>", "</code>")
	return s
}

func replacePairs(s, delim, open, closing string) string {
	parts := strings.Split(s, delim)
	if len(parts) < 3 {
		return s
	}
	var b strings.Builder
	for i, p := range parts {
		if i > 0 {
			if i%2 == 1 && i < len(parts)-1 || i%2 == 0 {
				if i%2 == 1 {
					b.WriteString(open)
				} else {
					b.WriteString(closing)
				}
			} else {
				b.WriteString(delim)
			}
		}
		b.WriteString(p)
	}
	return b.String()
}

func anchor(s string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(s) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			b.WriteRune(r)
		case r == ' ', r == '-':
			b.WriteByte('-')
		}
	}
	return b.String()
}
