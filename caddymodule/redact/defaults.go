package redact

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

var errNotJSON = errors.New("config is not valid JSON")

// EncoderJSON is the encoder WithDefaultEncoder gives a log that names
// none.
const EncoderJSON = `{"format":"mxgate_redact"}`

// WithDefaultEncoder returns cfg, a Caddy configuration in JSON, with
// mxgate_redact as the encoder of every log that names none (the sink and
// each log under logging.logs), and with a default log that has it when
// cfg defines none: the default log is where a global `debug` sends
// reverse_proxy's lines and where the error log writes a 502's. Without
// it, Caddy would give these logs its own json or console encoder, which
// writes MDX-HMAC and MDX-Session-Key as they are.
//
// A log that names an encoder, whatever it is, is left as written (even
// `"encoder": null`, which Caddy refuses), and so is anything that is not
// an object where Caddy expects one: Caddy refuses the configuration. When
// nothing is to be changed, cfg itself is returned; otherwise the result
// is compact, with every other member's value as it was and new members
// last. An empty cfg is taken as {}.
//
// Caddy reads a field's name in any case, and merges a field given twice;
// a cfg that gives logging, logs or sink more than once at the same place
// (in any case) is refused rather than guessed at.
func WithDefaultEncoder(cfg []byte) ([]byte, error) {
	if len(bytes.TrimSpace(cfg)) == 0 {
		cfg = []byte("{}")
	}
	top, isObject, err := parseObject(cfg)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errNotJSON, err)
	}
	if !isObject {
		return cfg, nil
	}
	at, err := top.field("logging", "")
	if err != nil {
		return nil, err
	}
	var logging jsonObject
	if at >= 0 {
		if logging, isObject = parseMember(top[at].value); !isObject && !isNull(top[at].value) {
			return cfg, nil
		}
	}

	changed := false
	if s, err := logging.field("sink", "logging"); err != nil {
		return nil, err
	} else if s >= 0 {
		if sink, isObject := parseMember(logging[s].value); isObject && !sink.has("encoder") {
			logging[s].value, changed = sink.with("encoder", EncoderJSON), true
		}
	}

	l, err := logging.field("logs", "logging")
	if err != nil {
		return nil, err
	}
	var logs jsonObject
	if l >= 0 {
		if logs, isObject = parseMember(logging[l].value); !isObject && !isNull(logging[l].value) {
			return cfg, nil
		}
	}
	hasDefault := false
	for i, m := range logs {
		// log names are map keys: exact, and the last of a name wins,
		// so each member is seen to on its own
		hasDefault = hasDefault || m.key == "default"
		if log, isObject := parseMember(m.value); isObject && !log.has("encoder") {
			logs[i].value, changed = log.with("encoder", EncoderJSON), true
		}
	}
	if !hasDefault {
		logs, changed = append(logs, jsonMember{"default", json.RawMessage(`{"encoder":` + EncoderJSON + `}`)}), true
	}
	if !changed {
		return cfg, nil
	}
	logging = logging.set(l, "logs", logs.marshal())
	top = top.set(at, "logging", logging.marshal())
	return top.marshal(), nil
}

// jsonMember is a member of a JSON object, its value as written.
type jsonMember struct {
	key   string
	value json.RawMessage
}

// jsonObject is a JSON object's members in their order, duplicates included.
type jsonObject []jsonMember

// parseObject returns the members of raw, a JSON value, and whether it is
// an object; an error if raw is not one valid JSON value.
func parseObject(raw []byte) (jsonObject, bool, error) {
	if !json.Valid(raw) {
		err := json.Unmarshal(raw, new(any)) // says what and where
		if err == nil {
			err = errors.New("not one JSON value")
		}
		return nil, false, err
	}
	if raw = bytes.TrimLeft(raw, " \t\r\n"); raw[0] != '{' {
		return nil, false, nil
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	if _, err := dec.Token(); err != nil { // {
		return nil, false, err
	}
	var o jsonObject
	for dec.More() {
		key, err := dec.Token()
		if err != nil {
			return nil, false, err
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, false, err
		}
		o = append(o, jsonMember{key.(string), v})
	}
	return o, true, nil
}

// parseMember parses the value of a member, which its decoder has
// checked, and reports whether it is an object.
func parseMember(raw json.RawMessage) (jsonObject, bool) {
	o, isObject, err := parseObject(raw)
	return o, isObject && err == nil
}

func isNull(raw json.RawMessage) bool { return string(bytes.TrimSpace(raw)) == "null" }

// field returns the index of the member that Go's encoding/json (and so
// Caddy) decodes into the struct field name, which it matches in any
// case, or -1; an error if more than one member matches. in names the
// object, for the error.
func (o jsonObject) field(name, in string) (int, error) {
	at := -1
	for i, m := range o {
		if !strings.EqualFold(m.key, name) {
			continue
		}
		if at >= 0 {
			where := "the configuration"
			if in != "" {
				where = in
			}
			return -1, fmt.Errorf("%s gives %q twice (as %q and as %q): Caddy would merge them; write it once", where, name, o[at].key, m.key)
		}
		at = i
	}
	return at, nil
}

// has reports whether a member names the struct field name, in any case.
func (o jsonObject) has(name string) bool {
	for _, m := range o {
		if strings.EqualFold(m.key, name) {
			return true
		}
	}
	return false
}

// with returns o's JSON with a member key: value added last.
func (o jsonObject) with(key, value string) json.RawMessage {
	return append(o[:len(o):len(o)], jsonMember{key, json.RawMessage(value)}).marshal()
}

// set returns o with the value of the member at i (or, if i is -1, of a
// new last member named key) replaced by value.
func (o jsonObject) set(i int, key string, value json.RawMessage) jsonObject {
	if i < 0 {
		return append(o, jsonMember{key, value})
	}
	o[i].value = value
	return o
}

// marshal returns o as compact JSON.
func (o jsonObject) marshal() json.RawMessage {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	b.WriteByte('{')
	for i, m := range o {
		if i > 0 {
			b.WriteByte(',')
		}
		_ = enc.Encode(m.key)   // a string always encodes
		b.Truncate(b.Len() - 1) // Encode's newline
		b.WriteByte(':')
		b.Write(compact(m.value))
	}
	b.WriteByte('}')
	return b.Bytes()
}

// compact returns raw, valid JSON, without insignificant white space.
func compact(raw []byte) []byte {
	var b bytes.Buffer
	if err := json.Compact(&b, raw); err != nil {
		return raw
	}
	return b.Bytes()
}
