package mxgate

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	_ "github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	_ "github.com/caddyserver/caddy/v2/modules/standard"
)

// The documentation's tests: README.md is the front door and docs/ the
// manual. Every Caddyfile snippet they show is adapted by mxgate's own
// adapter (or, for a directive's synopsis, every option it lists is one
// the directive's parser knows), every relative link and anchor of every
// Markdown file resolves, and the README's directive list names every
// directive mxgate registers. The walkthrough's commands are run by
// e2e's TestWalkthrough.

// manualFiles are the files whose Caddyfile snippets must adapt.
func manualFiles(t *testing.T) []string {
	t.Helper()
	docs, err := filepath.Glob("docs/*.md")
	if err != nil || len(docs) < 5 {
		t.Fatalf("docs/*.md: %v (found %d)", err, len(docs))
	}
	return append([]string{"README.md", "deploy/README.md"}, docs...)
}

// A fenced block of a Markdown file.
type fenced struct {
	file string
	line int // of the opening fence
	lang string
	text string
}

var fenceRE = regexp.MustCompile("^([ \t]*(?:>[ \t]?)?[ \t]*)```(\\S*)\\s*$")

// fencedBlocks returns the fenced code blocks of a Markdown file, with the
// indentation or blockquote marker of their fence taken off each line.
func fencedBlocks(t *testing.T, file string) []fenced {
	t.Helper()
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var out []fenced
	var cur *fenced
	var prefix string
	var body []string
	for i, line := range strings.Split(string(raw), "\n") {
		m := fenceRE.FindStringSubmatch(line)
		switch {
		case cur == nil && m != nil:
			cur, prefix, body = &fenced{file: file, line: i + 1, lang: m[2]}, m[1], nil
		case cur != nil && m != nil && m[2] == "":
			cur.text = strings.Join(body, "\n")
			out = append(out, *cur)
			cur = nil
		case cur != nil:
			line = strings.TrimPrefix(line, prefix)
			if p := strings.TrimRight(prefix, " \t"); p != prefix {
				line = strings.TrimPrefix(line, p) // a blockquote's empty line
			}
			body = append(body, line)
		}
	}
	if cur != nil {
		t.Fatalf("%s:%d: a fence that is never closed", file, cur.line)
	}
	return out
}

func adaptCaddyfile(text string) error {
	adapter := caddyconfig.GetAdapter("mxgate-caddyfile")
	if adapter == nil {
		return fmt.Errorf("the mxgate-caddyfile adapter is not registered")
	}
	_, _, err := adapter.Adapt([]byte(text), map[string]any{"filename": "Caddyfile"})
	return err
}

// elided takes out what a snippet leaves to the reader: a line "…", and
// "{ … }" (an elided block).
func elided(text string) string {
	var lines []string
	for _, l := range strings.Split(text, "\n") {
		if strings.TrimSpace(l) == "…" {
			continue
		}
		lines = append(lines, strings.ReplaceAll(l, "{ … }", "{\n}"))
	}
	return strings.Join(lines, "\n")
}

// uncommented drops a Caddyfile comment from a line.
func uncommented(line string) string {
	if i := strings.Index(line, "#"); i == 0 || i > 0 && (line[i-1] == ' ' || line[i-1] == '\t') {
		line = line[:i]
	}
	return strings.TrimSpace(line)
}

// inListenerWrappers: the snippet is written for a server's
// listener_wrappers (its first line says so).
func inListenerWrappers(text string) bool {
	first, _, _ := strings.Cut(strings.TrimSpace(text), "\n")
	return strings.Contains(first, "in listener_wrappers")
}

// wrap places a snippet where it belongs: listener wrappers in a server's
// listener_wrappers, global options before a site, a site's directives in a
// site; a whole configuration is left as it is.
func wrap(text string, listener bool) string {
	first := uncommented(strings.SplitN(strings.TrimSpace(text), "\n", 2)[0])
	switch {
	case listener:
		return "{\n\tservers {\n\t\tlistener_wrappers {\n" + text + "\n\t\t\ttls\n\t\t}\n\t}\n}\nhttp://example.com {\n\trespond ok\n}\n"
	case first == "{" && !siteAfterGlobal(text):
		return text + "\nhttp://example.com {\n\trespond ok\n}\n"
	case first == "{" || strings.HasPrefix(first, "(") || strings.Contains(first, "://") || siteAddressRE.MatchString(first):
		return text
	default:
		return "http://example.com {\n" + text + "\n}\n"
	}
}

var siteAddressRE = regexp.MustCompile(`^[a-z0-9-]+(\.[a-z0-9-]+)+(:\d+)? \{$`)

// siteAfterGlobal: a snippet that opens with global options goes on after
// them (with sites or snippets).
func siteAfterGlobal(text string) bool {
	depth := 0
	for i, line := range strings.Split(text, "\n") {
		l := uncommented(line)
		if depth == 0 && i > 0 && l != "" {
			return true
		}
		depth += strings.Count(l, "{") - strings.Count(l, "}")
	}
	return false
}

var envRE = regexp.MustCompile(`\{\$([A-Za-z_][A-Za-z0-9_]*)\}`)

var placeholderRE = regexp.MustCompile(`<[A-Za-z]`)

// TestDocsCaddyfileSnippets adapts every Caddyfile snippet of README.md,
// deploy/README.md and docs/*.md with mxgate's Caddyfile adapter. A
// snippet that shows a directive's syntax (`<placeholders>`) cannot be
// adapted as it stands: each option it lists is given to the directive on
// its own instead, and must not be refused as an unknown option, which a
// made-up one is.
func TestDocsCaddyfileSnippets(t *testing.T) {
	n := 0
	for _, file := range manualFiles(t) {
		for _, b := range fencedBlocks(t, file) {
			if b.lang != "caddyfile" {
				continue
			}
			n++
			t.Run(fmt.Sprintf("%s:%d", b.file, b.line), func(t *testing.T) {
				// {$VAR}s the snippet reads, as its environment would set them
				for _, m := range envRE.FindAllStringSubmatch(b.text, -1) {
					if _, set := os.LookupEnv(m[1]); !set {
						t.Setenv(m[1], "docs-"+strings.ToLower(m[1]))
					}
				}
				if placeholderRE.MatchString(b.text) {
					checkSynopsis(t, b)
					return
				}
				cf := wrap(elided(b.text), inListenerWrappers(b.text))
				if err := adaptCaddyfile(cf); err != nil {
					t.Errorf("the snippet does not adapt: %v\n%s", err, cf)
				}
			})
		}
	}
	if n < 30 {
		t.Fatalf("found %d Caddyfile snippets; the manual has more", n)
	}
}

// Where an option shown on its own belongs.
var optionOf = map[string][]string{
	// "in any of the three": the directives that add a credential
	"allow_callers": {"mx_auth attach {", "mxconnect_token {", "mdx_hmac sign {"},
}

// checkSynopsis gives each option of a synopsis to its directive alone.
func checkSynopsis(t *testing.T, b fenced) {
	t.Helper()
	listener := false  // the directive at the top is a listener wrapper
	var heads []string // the blocks open around the line
	checked := 0
	for _, line := range strings.Split(b.text, "\n") {
		l := uncommented(line)
		if l == "" {
			continue
		}
		if l == "}" {
			if len(heads) == 0 {
				t.Fatalf("unbalanced braces:\n%s", b.text)
			}
			heads = heads[:len(heads)-1]
			continue
		}
		name := strings.Fields(l)[0]
		if !strings.HasPrefix(name, "<") && !strings.HasPrefix(name, "[") && name != "{" {
			var chains [][]string
			switch {
			case len(heads) > 0:
				chains = [][]string{heads}
			case optionOf[name] != nil:
				for _, h := range optionOf[name] {
					chains = append(chains, []string{h})
				}
			case !strings.HasSuffix(l, "{"):
				t.Errorf("the synopsis line %q belongs to no directive: say where in optionOf", l)
			}
			for _, chain := range chains {
				checkOption(t, chain, name, listener)
				checked++
			}
		}
		if strings.HasSuffix(l, "{") {
			if len(heads) == 0 {
				listener = strings.Contains(line, "in listener_wrappers")
			}
			heads = append(heads, head(l))
		}
	}
	if len(heads) != 0 {
		t.Fatalf("unbalanced braces:\n%s", b.text)
	}
	if checked == 0 {
		t.Fatalf("no option checked in the synopsis:\n%s", b.text)
	}
}

// head is a block's opening line without its placeholders.
func head(l string) string {
	var keep []string
	for _, f := range strings.Fields(l) {
		if !strings.HasPrefix(f, "<") && !strings.HasPrefix(f, "[") {
			keep = append(keep, f)
		}
	}
	return strings.Join(keep, " ")
}

// checkOption adapts the chain of blocks with one option in the innermost,
// and fails if the option is refused as a made-up one is.
func checkOption(t *testing.T, chain []string, option string, listener bool) {
	t.Helper()
	build := func(opt string) string {
		var sb strings.Builder
		for _, h := range chain {
			sb.WriteString(h + "\n")
		}
		sb.WriteString(opt + "\n")
		for range chain {
			sb.WriteString("}\n")
		}
		return wrap(sb.String(), listener)
	}
	const madeUp = "no_such_option_xyz"
	err := adaptCaddyfile(build(madeUp))
	if err == nil {
		t.Fatalf("a made-up option is accepted in %q: the synopsis cannot be checked this way", strings.Join(chain, " "))
	}
	unknown := strings.ReplaceAll(err.Error(), madeUp, option)
	if err := adaptCaddyfile(build(option)); err != nil && err.Error() == unknown {
		t.Errorf("%s: %q is not an option the parser knows: %v", strings.Join(chain, " "), option, err)
	}
}

// TestDocsJSONSnippets: a JSON block of the manual is JSON.
func TestDocsJSONSnippets(t *testing.T) {
	for _, file := range manualFiles(t) {
		for _, b := range fencedBlocks(t, file) {
			if b.lang == "json" && !json.Valid([]byte(b.text)) {
				t.Errorf("%s:%d: the JSON block does not parse", b.file, b.line)
			}
		}
	}
}

// markdownFiles are every Markdown file of the repository outside
// dependencies' trees.
func markdownFiles(t *testing.T) []string {
	t.Helper()
	var files []string
	err := filepath.WalkDir(".", func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "node_modules" || d.Name() == "testdata" || strings.HasPrefix(d.Name(), ".") && path != ".") {
			return filepath.SkipDir
		}
		if !d.IsDir() && strings.HasSuffix(path, ".md") {
			files = append(files, path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

var (
	headingRE = regexp.MustCompile(`^#{1,6} +(.*?)\s*#*\s*$`)
	linkRE    = regexp.MustCompile(`\]\(([^)\s]*)\)`)
	slugDrop  = regexp.MustCompile(`[^\p{L}\p{N}_\- ]`)
)

// anchors are the fragment ids GitHub gives a Markdown file's headings.
func anchors(t *testing.T, file string) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	seen := map[string]int{}
	for _, l := range lines(t, file) {
		if m := headingRE.FindStringSubmatch(l.text); m != nil {
			s := strings.ReplaceAll(slugDrop.ReplaceAllString(strings.ToLower(m[1]), ""), " ", "-")
			if n := seen[s]; n > 0 {
				out[fmt.Sprintf("%s-%d", s, n)] = true
			} else {
				out[s] = true
			}
			seen[s]++
		}
	}
	return out
}

type numbered struct {
	n    int
	text string
}

// lines are a Markdown file's lines outside fenced blocks.
func lines(t *testing.T, file string) []numbered {
	t.Helper()
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var out []numbered
	fence := false
	for i, l := range strings.Split(string(raw), "\n") {
		if fenceRE.MatchString(l) {
			fence = !fence
			continue
		}
		if !fence {
			out = append(out, numbered{i + 1, l})
		}
	}
	return out
}

// TestDocsLinks: every relative link of every Markdown file names a file
// that exists and, with a fragment, a heading of that file.
func TestDocsLinks(t *testing.T) {
	files := markdownFiles(t)
	if !slices.Contains(files, "README.md") || !slices.Contains(files, filepath.Join("docs", "security-model.md")) {
		t.Fatalf("the Markdown files found: %v", files)
	}
	checked := 0
	for _, file := range files {
		for _, l := range lines(t, file) {
			for _, m := range linkRE.FindAllStringSubmatch(l.text, -1) {
				target := m[1]
				if target == "" || regexp.MustCompile(`^[a-z][a-z0-9+.-]*:`).MatchString(target) {
					continue
				}
				checked++
				path, frag, _ := strings.Cut(target, "#")
				dest := file
				if path != "" {
					dest = filepath.Join(filepath.Dir(file), path)
					if _, err := os.Stat(dest); err != nil {
						t.Errorf("%s:%d: %s: no such file", file, l.n, target)
						continue
					}
				}
				if frag != "" {
					if !strings.HasSuffix(dest, ".md") {
						t.Errorf("%s:%d: %s: a fragment of a file that is not Markdown", file, l.n, target)
					} else if !anchors(t, dest)[frag] {
						t.Errorf("%s:%d: %s: %s has no heading #%s", file, l.n, target, dest, frag)
					}
				}
			}
		}
	}
	if checked < 40 {
		t.Fatalf("checked %d relative links; the manual has more", checked)
	}
}

// TestReadmeDirectiveList: the README's directive list names every
// handler, listener wrapper and log encoder mxgate registers.
func TestReadmeDirectiveList(t *testing.T) {
	raw, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(raw), "\n## Directives\n")
	if !ok {
		t.Fatal("README.md has no ## Directives section")
	}
	section, _, _ = strings.Cut(section, "\n## ")
	named := map[string]bool{}
	for _, m := range regexp.MustCompile("`([^`]+)`").FindAllStringSubmatch(section, -1) {
		named[m[1]] = true
		named[strings.ReplaceAll(m[1], " ", "_")] = true
		for _, w := range strings.Fields(m[1]) {
			named[w] = true
		}
	}
	mine := 0
	for _, id := range caddy.Modules() {
		mod, err := caddy.GetModule(id)
		if err != nil {
			t.Fatal(err)
		}
		typ := reflect.TypeOf(mod.New())
		for typ.Kind() == reflect.Pointer {
			typ = typ.Elem()
		}
		if !strings.HasPrefix(typ.PkgPath(), "github.com/mxgate/mxgate/") {
			continue
		}
		ns, name := mod.ID.Namespace(), mod.ID.Name()
		if ns != "http.handlers" && ns != "caddy.listeners" && ns != "caddy.logging.encoders" {
			continue
		}
		mine++
		covered := named[name]
		if i := strings.LastIndex(name, "_"); !covered && i > 0 {
			covered = named[name[:i]] && named[name[i+1:]] // mx_auth with `attach`
		}
		if !covered {
			t.Errorf("the README's directive list does not name %s (module %s)", name, id)
		}
	}
	if mine < 10 {
		t.Fatalf("found %d of mxgate's modules; are they registered?", mine)
	}
}
