// Package redact is the mxgate_redact log encoder: it wraps any Caddy log
// encoder (json by default, console on a terminal, as Caddy's own default)
// and writes REDACTED in place of the value of every header that carries
// a credential, wherever it appears in a log entry: a request's headers
// in an access log, the error log (a 502's line) and reverse_proxy's
// debug lines, a response's headers, a header map logged by reflection,
// at any depth.
//
// Caddy itself redacts Authorization, Proxy-Authorization, Cookie and
// Set-Cookie, but only while a server's log_credentials option is off,
// and never MDX's credentials, MDX-HMAC and MDX-Session-Key; a `format
// filter` block covers only the paths it names in the logs it is written
// in. mxgate_redact covers these six names (and any others configured)
// under any key that spells them, whatever the case and with _ for -.
//
// The package also registers two config adapters, mxgate-caddyfile and
// mxgate-json (Adapter), which give mxgate_redact to every log whose
// configuration names no encoder; mxgate's commands load through them,
// so that it is the default in mxgate's binary.
package redact

import (
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/logging"
	"go.uber.org/zap"
	"go.uber.org/zap/buffer"
	"go.uber.org/zap/zapcore"
	"golang.org/x/term"
)

func init() {
	caddy.RegisterModule(Encoder{})
}

// Redacted replaces a redacted value, as Caddy writes it.
const Redacted = "REDACTED"

// DefaultHeaders are the headers always redacted: the credentials of
// Basic and bearer authentication, cookies, and MDX On Demand's signature
// and session key.
var DefaultHeaders = []string{"Authorization", "Proxy-Authorization", "Cookie", "Set-Cookie", "Mdx-Hmac", "Mdx-Session-Key"}

// Encoder is the mxgate_redact log encoder (caddy.logging.encoders.mxgate_redact).
// It is safe for concurrent use as zap uses encoders: each logger holds
// its own clone.
type Encoder struct {
	// Wrapped is the encoder that writes the entries. Default: json, or
	// console when the log goes to a terminal (Caddy's own default).
	WrappedRaw json.RawMessage `json:"wrap,omitempty" caddy:"namespace=caddy.logging.encoders inline_key=format"`

	// Headers are header names redacted beside DefaultHeaders (which
	// cannot be switched off). Matching ignores case and takes _ for -.
	Headers []string `json:"headers,omitempty"`

	objectEncoder `json:"-"` // the wrapped encoder, redacting

	wrapped          zapcore.Encoder
	wrappedIsDefault bool
	ctx              caddy.Context

	// lazy are the fields a logger was given with With, kept unencoded
	// until an entry is written. Caddy's reverse_proxy calls With on every
	// request with the whole outgoing request as a field, and the stock
	// encoders clone themselves and encode it there and then, whether or
	// not anything is ever logged (5 % of a gateway's CPU under load).
	// wrapped is never written to: an entry is encoded into a clone.
	lazy []zapcore.Field
}

// CaddyModule returns the Caddy module information.
func (Encoder) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "caddy.logging.encoders.mxgate_redact",
		New: func() caddy.Module { return new(Encoder) },
	}
}

// Provision loads the wrapped encoder and the names.
func (e *Encoder) Provision(ctx caddy.Context) (err error) {
	defer func() {
		if err != nil {
			err = fmt.Errorf("log format mxgate_redact: %w", err)
		}
	}()
	e.ctx = ctx
	names, err := newNames(e.Headers)
	if err != nil {
		return err
	}
	if e.WrappedRaw == nil {
		e.wrappedIsDefault = true
		if err := e.wrap(&logging.JSONEncoder{}); err != nil {
			return err
		}
	} else {
		mod, err := ctx.LoadModule(e, "WrappedRaw")
		if err != nil {
			return fmt.Errorf("loading the wrapped encoder: %v", err)
		}
		e.wrapped = mod.(zapcore.Encoder)
	}
	e.objectEncoder = objectEncoder{e.wrapped, names}
	return nil
}

// wrap provisions enc as the wrapped encoder.
func (e *Encoder) wrap(enc zapcore.Encoder) error {
	if p, ok := enc.(caddy.Provisioner); ok {
		if err := p.Provision(e.ctx); err != nil {
			return fmt.Errorf("provisioning the wrapped encoder: %v", err)
		}
	}
	e.wrapped = enc
	e.objectEncoder.ObjectEncoder = enc
	return nil
}

// ConfigureDefaultFormat makes the default wrapped encoder console when
// the log goes to a terminal, as Caddy does for its default log, and
// passes the writer on to a wrapped encoder that wants it.
func (e *Encoder) ConfigureDefaultFormat(wo caddy.WriterOpener) error {
	if !e.wrappedIsDefault {
		if cfd, ok := e.wrapped.(caddy.ConfiguresFormatterDefault); ok {
			return cfd.ConfigureDefaultFormat(wo)
		}
		return nil
	}
	if caddy.IsWriterStandardStream(wo) && term.IsTerminal(int(os.Stderr.Fd())) {
		return e.wrap(&logging.ConsoleEncoder{})
	}
	return nil
}

// Clone returns a copy that shares the wrapped encoder, which is never
// written to, and keeps its own list of fields.
func (e *Encoder) Clone() zapcore.Encoder {
	return &Encoder{wrapped: e.wrapped, objectEncoder: objectEncoder{e.wrapped, e.names}, lazy: slices.Clip(e.lazy)}
}

// keep keeps f, given to a logger's With, to be encoded (and redacted)
// only when an entry is written. A value behind a reference (an object,
// an array, a reflected value) is encoded as it is then, not as it was
// when With was called; byte slices are copied.
func (e *Encoder) keep(f zapcore.Field) { e.lazy = append(e.lazy, f) }

func (e *Encoder) AddArray(key string, m zapcore.ArrayMarshaler) error {
	e.keep(zap.Array(key, m))
	return nil
}
func (e *Encoder) AddObject(key string, m zapcore.ObjectMarshaler) error {
	e.keep(zap.Object(key, m))
	return nil
}
func (e *Encoder) AddBinary(key string, v []byte)   { e.keep(zap.Binary(key, slices.Clone(v))) }
func (e *Encoder) AddByteString(k string, v []byte) { e.keep(zap.ByteString(k, slices.Clone(v))) }
func (e *Encoder) AddBool(key string, v bool)       { e.keep(zap.Bool(key, v)) }
func (e *Encoder) AddComplex128(k string, v complex128) {
	e.keep(zap.Complex128(k, v))
}
func (e *Encoder) AddComplex64(k string, v complex64)    { e.keep(zap.Complex64(k, v)) }
func (e *Encoder) AddDuration(k string, v time.Duration) { e.keep(zap.Duration(k, v)) }
func (e *Encoder) AddFloat64(k string, v float64)        { e.keep(zap.Float64(k, v)) }
func (e *Encoder) AddFloat32(k string, v float32)        { e.keep(zap.Float32(k, v)) }
func (e *Encoder) AddInt(k string, v int)                { e.keep(zap.Int(k, v)) }
func (e *Encoder) AddInt64(k string, v int64)            { e.keep(zap.Int64(k, v)) }
func (e *Encoder) AddInt32(k string, v int32)            { e.keep(zap.Int32(k, v)) }
func (e *Encoder) AddInt16(k string, v int16)            { e.keep(zap.Int16(k, v)) }
func (e *Encoder) AddInt8(k string, v int8)              { e.keep(zap.Int8(k, v)) }
func (e *Encoder) AddString(k, v string)                 { e.keep(zap.String(k, v)) }
func (e *Encoder) AddTime(k string, v time.Time)         { e.keep(zap.Time(k, v)) }
func (e *Encoder) AddUint(k string, v uint)              { e.keep(zap.Uint(k, v)) }
func (e *Encoder) AddUint64(k string, v uint64)          { e.keep(zap.Uint64(k, v)) }
func (e *Encoder) AddUint32(k string, v uint32)          { e.keep(zap.Uint32(k, v)) }
func (e *Encoder) AddUint16(k string, v uint16)          { e.keep(zap.Uint16(k, v)) }
func (e *Encoder) AddUint8(k string, v uint8)            { e.keep(zap.Uint8(k, v)) }
func (e *Encoder) AddUintptr(k string, v uintptr)        { e.keep(zap.Uintptr(k, v)) }
func (e *Encoder) AddReflected(k string, v any) error {
	e.keep(zap.Reflect(k, v))
	return nil
}
func (e *Encoder) OpenNamespace(k string) { e.keep(zap.Namespace(k)) }

// EncodeEntry writes ent with fields, each one redacted on its way in.
func (e *Encoder) EncodeEntry(ent zapcore.Entry, fields []zapcore.Field) (*buffer.Buffer, error) {
	w := e.wrapped.Clone()
	enc := objectEncoder{w, e.names}
	for _, f := range e.lazy {
		f.AddTo(enc)
	}
	for _, f := range fields {
		f.AddTo(enc)
	}
	return w.EncodeEntry(ent, nil)
}

// objectEncoder passes everything on to the wrapped encoder, but the value
// of a sensitive key, and every object and array, which it wraps so that
// their own keys are checked.
type objectEncoder struct {
	zapcore.ObjectEncoder
	names *names
}

func (o objectEncoder) AddArray(key string, m zapcore.ArrayMarshaler) error {
	if o.names.sensitive(key) {
		return o.ObjectEncoder.AddArray(key, redactedArray{})
	}
	return o.ObjectEncoder.AddArray(key, array{m, o.names})
}

func (o objectEncoder) AddObject(key string, m zapcore.ObjectMarshaler) error {
	if o.names.sensitive(key) {
		o.ObjectEncoder.AddString(key, Redacted)
		return nil
	}
	return o.ObjectEncoder.AddObject(key, object{m, o.names})
}

func (o objectEncoder) AddString(key, value string) {
	if o.names.sensitive(key) {
		value = Redacted
	}
	o.ObjectEncoder.AddString(key, value)
}

func (o objectEncoder) AddByteString(key string, value []byte) {
	if o.names.sensitive(key) {
		o.ObjectEncoder.AddString(key, Redacted)
		return
	}
	o.ObjectEncoder.AddByteString(key, value)
}

func (o objectEncoder) AddBinary(key string, value []byte) {
	if o.names.sensitive(key) {
		o.ObjectEncoder.AddString(key, Redacted)
		return
	}
	o.ObjectEncoder.AddBinary(key, value)
}

func (o objectEncoder) AddReflected(key string, value any) error {
	if o.names.sensitive(key) {
		o.ObjectEncoder.AddString(key, Redacted)
		return nil
	}
	return o.ObjectEncoder.AddReflected(key, o.names.scrub(value))
}

// object marshals an object through a redacting encoder.
type object struct {
	m     zapcore.ObjectMarshaler
	names *names
}

func (ob object) MarshalLogObject(enc zapcore.ObjectEncoder) error {
	return ob.m.MarshalLogObject(objectEncoder{enc, ob.names})
}

// array marshals an array whose objects and arrays are marshalled
// through redacting encoders.
type array struct {
	m     zapcore.ArrayMarshaler
	names *names
}

func (a array) MarshalLogArray(enc zapcore.ArrayEncoder) error {
	return a.m.MarshalLogArray(arrayEncoder{enc, a.names})
}

type arrayEncoder struct {
	zapcore.ArrayEncoder
	names *names
}

func (a arrayEncoder) AppendObject(m zapcore.ObjectMarshaler) error {
	return a.ArrayEncoder.AppendObject(object{m, a.names})
}

func (a arrayEncoder) AppendArray(m zapcore.ArrayMarshaler) error {
	return a.ArrayEncoder.AppendArray(array{m, a.names})
}

func (a arrayEncoder) AppendReflected(v any) error {
	return a.ArrayEncoder.AppendReflected(a.names.scrub(v))
}

// redactedArray is the value of a redacted header: ["REDACTED"], as Caddy
// writes it. The original is never marshalled.
type redactedArray struct{}

func (redactedArray) MarshalLogArray(enc zapcore.ArrayEncoder) error {
	enc.AppendString(Redacted)
	return nil
}

// Interface guards
var (
	_ caddy.Provisioner                = (*Encoder)(nil)
	_ caddy.ConfiguresFormatterDefault = (*Encoder)(nil)
	_ zapcore.Encoder                  = (*Encoder)(nil)
	_ zapcore.ObjectEncoder            = objectEncoder{}
	_ zapcore.ArrayEncoder             = arrayEncoder{}
)
