package metricnames

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode"
)

type tokKind int

const (
	tIdent tokKind = iota
	tString
	tNumber
	tPunct // ( ) { } , and operators
)

type token struct {
	kind tokKind
	text string
}

// tokenize splits a PromQL expression into tokens. Range and subquery
// brackets ([5m], [$__rate_interval], [1h:5m]) and comments are dropped;
// Grafana variables ($var, ${var}, [[var]]) become identifiers that are
// never metric names.
func tokenize(s string) ([]token, error) {
	var toks []token
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '#':
			for i < len(s) && s[i] != '\n' {
				i++
			}
		case c == '[':
			end := strings.IndexByte(s[i:], ']')
			if end < 0 {
				return nil, errors.New("unclosed [")
			}
			i += end + 1
			if i < len(s) && s[i] == ']' { // Grafana's [[var]]
				i++
			}
		case c == '"' || c == '\'' || c == '`':
			j := i + 1
			for j < len(s) && s[j] != c {
				if s[j] == '\\' && c != '`' {
					j++
				}
				j++
			}
			if j >= len(s) {
				return nil, errors.New("unclosed string")
			}
			toks = append(toks, token{tString, s[i+1 : j]})
			i = j + 1
		case c == '$':
			j := i + 1
			if j < len(s) && s[j] == '{' {
				end := strings.IndexByte(s[j:], '}')
				if end < 0 {
					return nil, errors.New("unclosed ${")
				}
				j += end + 1
			} else {
				for j < len(s) && isIdent(rune(s[j]), false) {
					j++
				}
			}
			toks = append(toks, token{tIdent, s[i:j]})
			i = j
		case isIdent(rune(c), true):
			j := i
			for j < len(s) && isIdent(rune(s[j]), false) {
				j++
			}
			toks = append(toks, token{tIdent, s[i:j]})
			i = j
		case c >= '0' && c <= '9' || c == '.':
			j := i
			for j < len(s) && (isIdent(rune(s[j]), false) || s[j] == '.' || ((s[j] == '+' || s[j] == '-') && (s[j-1] == 'e' || s[j-1] == 'E'))) {
				j++
			}
			toks = append(toks, token{tNumber, s[i:j]})
			i = j
		default:
			// One- or two-character operators; only parentheses, braces
			// and commas matter to the parser.
			n := 1
			if i+1 < len(s) && strings.Contains("== != >= <= =~ !~", s[i:i+2]) {
				n = 2
			}
			toks = append(toks, token{tPunct, s[i : i+n]})
			i += n
		}
	}
	return toks, nil
}

func isIdent(r rune, first bool) bool {
	return r == '_' || r == ':' || unicode.IsLetter(r) || (!first && unicode.IsDigit(r))
}

var aggregators = []string{"sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values", "bottomk", "topk", "quantile", "limitk", "limit_ratio"}

var keywords = []string{"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless", "offset", "atan2", "inf", "nan"}

type parser struct {
	toks []token
	pos  int
}

func (p *parser) peek(off int) (token, bool) {
	if p.pos+off < len(p.toks) {
		return p.toks[p.pos+off], true
	}
	return token{}, false
}

func (p *parser) isPunct(off int, text string) bool {
	t, ok := p.peek(off)
	return ok && t.kind == tPunct && t.text == text
}

// labelList reads "( a, b, … )" at the current position.
func (p *parser) labelList() ([]string, error) {
	if !p.isPunct(0, "(") {
		return nil, errors.New("expected ( after by, without, on, ignoring or group_*")
	}
	p.pos++
	var labels []string
	for {
		t, ok := p.peek(0)
		if !ok {
			return nil, errors.New("unclosed label list")
		}
		p.pos++
		switch {
		case t.kind == tPunct && t.text == ")":
			return labels, nil
		case t.kind == tPunct && t.text == ",":
		case t.kind == tIdent || t.kind == tString:
			labels = append(labels, t.text)
		default:
			return nil, fmt.Errorf("unexpected %q in a label list", t.text)
		}
	}
}

// matchers reads "{ name op value, … }" at the current position and
// returns the label names, and the metric name if __name__ is matched
// with =.
func (p *parser) matchers() (labels []string, name string, err error) {
	p.pos++ // {
	for {
		t, ok := p.peek(0)
		if !ok {
			return nil, "", errors.New("unclosed {")
		}
		p.pos++
		if t.kind == tPunct && t.text == "}" {
			return labels, name, nil
		}
		if t.kind == tPunct && t.text == "," {
			continue
		}
		if t.kind != tIdent && t.kind != tString {
			return nil, "", fmt.Errorf("unexpected %q in label matchers", t.text)
		}
		op, ok1 := p.peek(0)
		val, ok2 := p.peek(1)
		if !ok1 || !ok2 || op.kind != tPunct || val.kind != tString {
			return nil, "", fmt.Errorf("malformed matcher for %s", t.text)
		}
		p.pos += 2
		if t.text == "__name__" {
			if op.text == "=" {
				name = val.text
			}
			continue
		}
		labels = append(labels, t.text)
	}
}

// sequence parses tokens up to the closing text, or to the end when
// closing is "", and returns the uses within. Labels of on(…)/ignoring(…)/group_*(…) at this level
// apply to every use of the level.
func (p *parser) sequence(closing string) ([]*Use, error) {
	var uses, levelLabels = []*Use(nil), []string(nil)
	for p.pos < len(p.toks) {
		t := p.toks[p.pos]
		switch {
		case closing != "" && t.kind == tPunct && t.text == closing:
			apply(uses, levelLabels)
			return uses, nil
		case t.kind == tPunct && (t.text == ")" || t.text == "}"):
			return nil, fmt.Errorf("unbalanced %q", t.text)
		case t.kind == tPunct && t.text == "(":
			p.pos++
			inner, err := p.sequence(")")
			if err != nil {
				return nil, err
			}
			p.pos++ // )
			uses = append(uses, inner...)
		case t.kind == tPunct && t.text == "{":
			labels, name, err := p.matchers()
			if err != nil {
				return nil, err
			}
			if name != "" {
				uses = append(uses, &Use{Metric: name, Labels: labels})
			}
		case t.kind == tIdent:
			lower := strings.ToLower(t.text)
			p.pos++
			switch {
			case slices.Contains(aggregators, lower) && !p.isPunct(0, "{"):
				u, err := p.aggregation()
				if err != nil {
					return nil, err
				}
				uses = append(uses, u...)
			case lower == "on" || lower == "ignoring" || lower == "group_left" || lower == "group_right":
				if p.isPunct(0, "(") {
					labels, err := p.labelList()
					if err != nil {
						return nil, err
					}
					levelLabels = append(levelLabels, labels...)
				}
			case slices.Contains(keywords, lower) || strings.HasPrefix(t.text, "$"):
			case p.isPunct(0, "("): // a function call: its arguments are a sequence
			default:
				u := &Use{Metric: t.text}
				if p.isPunct(0, "{") {
					labels, _, err := p.matchers()
					if err != nil {
						return nil, err
					}
					u.Labels = labels
				}
				uses = append(uses, u)
			}
		default:
			p.pos++
		}
	}
	if closing != "" {
		return nil, fmt.Errorf("missing %q", closing)
	}
	apply(uses, levelLabels)
	return uses, nil
}

// aggregation parses what follows an aggregation operator: an optional
// by/without clause, the parenthesised argument, and an optional trailing
// by/without clause.
func (p *parser) aggregation() ([]*Use, error) {
	var grouping []string
	readGrouping := func() error {
		if t, ok := p.peek(0); ok && t.kind == tIdent && (strings.EqualFold(t.text, "by") || strings.EqualFold(t.text, "without")) {
			p.pos++
			labels, err := p.labelList()
			if err != nil {
				return err
			}
			grouping = append(grouping, labels...)
		}
		return nil
	}
	if err := readGrouping(); err != nil {
		return nil, err
	}
	if !p.isPunct(0, "(") {
		return nil, errors.New("an aggregation needs a parenthesised argument")
	}
	p.pos++
	inner, err := p.sequence(")")
	if err != nil {
		return nil, err
	}
	p.pos++ // )
	if err := readGrouping(); err != nil {
		return nil, err
	}
	apply(inner, grouping)
	return inner, nil
}

func apply(uses []*Use, labels []string) {
	for _, u := range uses {
		u.Labels = append(u.Labels, labels...)
	}
}
