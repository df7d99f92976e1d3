package labgob

import (
	"encoding"
	"encoding/gob"
	"io"
	"log"
	"reflect"
	"sync"
)

var (
	mu       sync.Mutex
	checked  sync.Map // reflect.Type -> struct{}; types already checked for unexported fields
	fieldErr int      // problems found with unexported fields
	dflErr   int      // decodes into non-default values
)

var (
	gobEncoderType = reflect.TypeFor[gob.GobEncoder]()
	binMarshalType = reflect.TypeFor[encoding.BinaryMarshaler]()
)

// LabEncoder encodes values like gob.Encoder, warning about unexported fields.
type LabEncoder struct {
	enc *gob.Encoder
}

// NewEncoder returns a LabEncoder that writes to w.
func NewEncoder(w io.Writer) *LabEncoder {
	return &LabEncoder{enc: gob.NewEncoder(w)}
}

// Encode writes the gob encoding of e.
func (le *LabEncoder) Encode(e any) error {
	checkValue(e)
	return le.enc.Encode(e)
}

// LabDecoder decodes values like gob.Decoder, warning about unexported fields
// and about decoding into non-default values.
type LabDecoder struct {
	dec *gob.Decoder
}

// NewDecoder returns a LabDecoder that reads from r.
func NewDecoder(r io.Reader) *LabDecoder {
	return &LabDecoder{dec: gob.NewDecoder(r)}
}

// Decode reads the next value from the stream into e, which must be a pointer.
func (ld *LabDecoder) Decode(e any) error {
	checkValue(e)
	checkDefault(e)
	return ld.dec.Decode(e)
}

// Register records a type for values sent as interfaces, like gob.Register.
func Register(value any) {
	checkValue(value)
	gob.Register(value)
}

// RegisterName is like Register but uses name for the type, like gob.RegisterName.
func RegisterName(name string, value any) {
	checkValue(value)
	gob.RegisterName(name, value)
}

// checkValue warns the first time the type of v, or a type it contains, is a
// struct with an unexported field.
func checkValue(v any) {
	if v == nil {
		return
	}
	t := reflect.TypeOf(v)
	if _, ok := checked.Load(t); ok {
		return
	}
	mu.Lock()
	defer mu.Unlock()
	checkType(t)
}

// checkType walks t. mu must be held.
func checkType(t reflect.Type) {
	if _, ok := checked.Load(t); ok {
		return
	}
	checked.Store(t, struct{}{})
	if customGob(t) {
		return
	}
	switch t.Kind() {
	case reflect.Struct:
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			if !f.IsExported() {
				fieldErr++
				if fieldErr == 1 {
					log.Printf("labgob warning: lower-case field %v of %v in RPC or persist/snapshot will break your Raft", f.Name, t)
				}
				continue
			}
			checkType(f.Type)
		}
	case reflect.Pointer, reflect.Slice, reflect.Array:
		checkType(t.Elem())
	case reflect.Map:
		checkType(t.Key())
		checkType(t.Elem())
	}
}

// customGob reports whether t (or *t) encodes itself, so its fields don't matter.
func customGob(t reflect.Type) bool {
	pt := reflect.PointerTo(t)
	return t.Implements(gobEncoderType) || t.Implements(binMarshalType) ||
		pt.Implements(gobEncoderType) || pt.Implements(binMarshalType)
}

// checkDefault warns if the value e points to holds anything but default values.
func checkDefault(e any) {
	if e == nil {
		return
	}
	v := reflect.ValueOf(e)
	if v.Kind() != reflect.Pointer || v.IsNil() {
		return
	}
	if name, ok := nonDefault(v.Elem(), 0, ""); ok {
		if name == "" {
			name = v.Elem().Type().String()
		}
		mu.Lock()
		dflErr++
		if dflErr == 1 {
			log.Printf("labgob warning: Decoding into a non-default variable/field %v may not work", name)
		}
		mu.Unlock()
	}
}

// nonDefault returns the name of a field of v holding a non-default value, if any.
func nonDefault(v reflect.Value, depth int, name string) (string, bool) {
	if depth > 8 {
		return "", false
	}
	t := v.Type()
	switch t.Kind() {
	case reflect.Struct:
		for i := 0; i < t.NumField(); i++ {
			n := t.Field(i).Name
			if name != "" {
				n = name + "." + n
			}
			if s, ok := nonDefault(v.Field(i), depth+1, n); ok {
				return s, true
			}
		}
	case reflect.Pointer:
		if !v.IsNil() {
			return nonDefault(v.Elem(), depth+1, name)
		}
	case reflect.Map:
		// gob merges into an existing map.
		if v.Len() > 0 {
			return name, true
		}
	case reflect.Bool,
		reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr,
		reflect.Float32, reflect.Float64, reflect.Complex64, reflect.Complex128,
		reflect.String:
		if !v.IsZero() {
			return name, true
		}
	}
	return "", false
}

// warnings returns how many unexported-field and non-default-decode problems
// have been seen. For tests.
func warnings() (fields, defaults int) {
	mu.Lock()
	defer mu.Unlock()
	return fieldErr, dflErr
}

// reset forgets checked types and zeroes the counters, so the next problem
// of each kind is logged again. For tests.
func reset() {
	mu.Lock()
	defer mu.Unlock()
	checked.Clear()
	fieldErr, dflErr = 0, 0
}
