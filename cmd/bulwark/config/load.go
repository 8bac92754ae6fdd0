package config

import (
	"bytes"
	"encoding"
	"errors"
	"fmt"
	"os"
	"reflect"
	"slices"
	"sort"
	"strings"

	"github.com/pelletier/go-toml/v2"
	"github.com/pelletier/go-toml/v2/unstable"
)

// source remembers where Load found each value.
type source struct {
	file  string
	lines map[string]int // dotted key → line of the key in file
	// values holds each leaf key's value as Load left it; Validate names the
	// line only while the value is unchanged, so a flag override or ApplyDev
	// is not blamed on the file.
	values map[string]any
}

// lineOf is the line in the file of key's current value, 0 when the value
// did not come from the file.
func (c *Config) lineOf(key string) int {
	if c.src == nil {
		return 0
	}
	line, ok := c.src.lines[key]
	if !ok {
		return 0
	}
	if want, ok := c.src.values[key]; ok {
		if v := field(c, key); !v.IsValid() || !reflect.DeepEqual(v.Interface(), want) {
			return 0
		}
	}
	return line
}

// Load reads the TOML file at path on top of Default(). A missing file is an error
// that names the path (errors.Is(err, fs.ErrNotExist) holds). Syntax errors,
// unknown keys and values of the wrong type are returned as ValidationErrors,
// each with the file, line and dotted key: every unknown key at once, else the
// first bad value go-toml meets. Load does not call Validate: the caller
// applies flag overrides first (see the package documentation).
func Load(path string) (Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("config file: %w", err)
	}
	return parse(path, data)
}

// parse decodes data, the contents of the file called name, on top of Default().
func parse(name string, data []byte) (Config, error) {
	data = data[:len(data):len(data)] // positions are computed from capacities
	ix, serr := indexDoc(name, data)
	if serr != nil {
		return Config{}, ValidationErrors{*serr}
	}
	cfg := Default()
	if err := toml.NewDecoder(bytes.NewReader(data)).DisallowUnknownFields().Decode(&cfg); err != nil {
		return Config{}, ix.convert(err)
	}
	cfg.src = &source{file: name, lines: ix.lines, values: make(map[string]any)}
	for key := range ix.lines {
		if t, ok := schema[key]; ok && !isTable(t) {
			cfg.src.values[key] = clone(field(&cfg, key))
		}
	}
	return cfg, nil
}

// clone copies v so later changes to a slice in Config do not change it.
func clone(v reflect.Value) any {
	if v.Kind() == reflect.Slice && !v.IsNil() {
		c := reflect.MakeSlice(v.Type(), v.Len(), v.Len())
		reflect.Copy(c, v)
		return c.Interface()
	}
	return v.Interface()
}

// keyPart is one part of a key in the document, named by the dotted key up
// to that part.
type keyPart struct {
	line, col int
	key       string
}

// bareValue is a value that is not a string (or an array holding one),
// which go-toml hands to UnmarshalText without a position.
type bareValue struct {
	key  string
	line int
	raw  [][]byte
}

// docIndex locates keys in the document for lineOf and for go-toml's
// errors, which name a key relative to its table or inline table.
type docIndex struct {
	file  string
	lines map[string]int // dotted key → line of its first appearance
	keys  []keyPart
	bare  []bareValue
}

func indexDoc(name string, data []byte) (*docIndex, *FieldError) {
	ix := &docIndex{file: name, lines: make(map[string]int)}
	var p unstable.Parser
	p.Reset(data)
	var table []string
	for p.NextExpression() {
		e := p.Expression()
		switch e.Kind {
		case unstable.Table, unstable.ArrayTable:
			table = ix.keyParts(&p, e.Key(), nil)
		case unstable.KeyValue:
			ix.keyValue(&p, e, table)
		}
	}
	if err := p.Error(); err != nil {
		fe := &FieldError{File: name, Msg: err.Error(), Err: ErrSyntax}
		var perr *unstable.ParserError
		if errors.As(err, &perr) {
			fe.Msg = perr.Message
			if off := cap(data) - cap(perr.Highlight); perr.Highlight != nil && off >= 0 && off+len(perr.Highlight) <= len(data) {
				fe.Line = p.Shape(p.Range(perr.Highlight)).Start.Line
			}
		}
		return nil, fe
	}
	return ix, nil
}

// keyParts records the parts of a key under prefix and returns the full key.
func (ix *docIndex) keyParts(p *unstable.Parser, it unstable.Iterator, prefix []string) []string {
	parts := slices.Clone(prefix)
	for it.Next() {
		n := it.Node()
		parts = append(parts, string(n.Data))
		key := strings.Join(parts, ".")
		pos := p.Shape(n.Raw).Start
		ix.keys = append(ix.keys, keyPart{line: pos.Line, col: pos.Column, key: key})
		if _, ok := ix.lines[key]; !ok {
			ix.lines[key] = pos.Line
		}
	}
	return parts
}

// keyValue records a key-value under table, and those of an inline table
// it holds.
func (ix *docIndex) keyValue(p *unstable.Parser, e *unstable.Node, table []string) {
	parts := ix.keyParts(p, e.Key(), table)
	v := e.Value()
	if raw := bare(v, nil); raw != nil {
		key := strings.Join(parts, ".")
		ix.bare = append(ix.bare, bareValue{key: key, line: ix.lines[key], raw: raw})
	}
	if v.Kind == unstable.InlineTable {
		for it := v.Children(); it.Next(); {
			if c := it.Node(); c.Kind == unstable.KeyValue {
				ix.keyValue(p, c, parts)
			}
		}
	}
}

// bare appends to raw the text of the scalars in v that are not strings.
func bare(v *unstable.Node, raw [][]byte) [][]byte {
	switch v.Kind {
	case unstable.String, unstable.Comment, unstable.InlineTable:
	case unstable.Array:
		for it := v.Children(); it.Next(); {
			raw = bare(it.Node(), raw)
		}
	default:
		raw = append(raw, v.Data)
	}
	return raw
}

// keyAt is the dotted key go-toml's error at line:col is about. go-toml
// names a key relative to its table or inline table: when it points at the
// key (unknown, defined twice), take the key part there named like goKey's
// last part; when it points at a value in an inline table, the key part
// just before it, if that lies under goKey; else goKey itself.
func (ix *docIndex) keyAt(line, col int, goKey toml.Key) string {
	gk := strings.Join(goKey, ".")
	if len(goKey) == 0 {
		return gk
	}
	last, before := goKey[len(goKey)-1], ""
	for _, k := range ix.keys {
		switch {
		case k.line == line && k.col >= col:
			if k.key == last || strings.HasSuffix(k.key, "."+last) {
				return k.key
			}
		case k.line < line || k.line == line && k.col < col:
			before = k.key
		}
	}
	if strings.HasPrefix(before, gk+".") {
		return before
	}
	return gk
}

// convert turns a go-toml decoding error into FieldErrors.
func (ix *docIndex) convert(err error) ValidationErrors {
	var (
		strict *toml.StrictMissingError
		de     *toml.DecodeError
		errs   ValidationErrors
	)
	switch {
	case errors.As(err, &strict):
		for i := range strict.Errors {
			d := &strict.Errors[i]
			line, col := d.Position()
			key := ix.keyAt(line, col, d.Key())
			errs = append(errs, FieldError{File: ix.file, Line: line, Key: key, Msg: suggest(key), Err: ErrUnknownKey})
		}
	case errors.As(err, &de):
		line, col := de.Position()
		msg := strings.TrimPrefix(de.Error(), "toml: ")
		errs = append(errs, FieldError{File: ix.file, Line: line, Key: ix.keyAt(line, col, de.Key()), Msg: msg, Err: ErrInvalidValue})
	default:
		// An UnmarshalText error for a value that is not a string: go-toml
		// gives no position, so find the value our type refuses likewise.
		fe := FieldError{File: ix.file, Msg: err.Error(), Err: ErrInvalidValue}
		fe.Key, fe.Line = ix.refusedText(err)
		errs = append(errs, fe)
	}
	return errs
}

// refusedText is the key and line of the first bare value whose field
// refuses its text with err's message; "" and 0 if there is none.
func (ix *docIndex) refusedText(err error) (string, int) {
	for _, b := range ix.bare {
		t, ok := schema[b.key]
		if !ok || isTable(t) {
			continue
		}
		if t.Kind() == reflect.Slice {
			t = t.Elem()
		}
		u, ok := reflect.New(t).Interface().(encoding.TextUnmarshaler)
		if !ok {
			continue
		}
		for _, raw := range b.raw {
			if e := u.UnmarshalText(raw); e != nil && e.Error() == err.Error() {
				return b.key, b.line
			}
		}
	}
	return "", 0
}

// suggest proposes the key an unknown one was probably meant to be.
func suggest(key string) string {
	known := make([]string, 0, len(schema))
	for k := range schema {
		known = append(known, k)
	}
	sort.Strings(known)
	// Allow one typo in a short name, two in a longer one.
	last := key[strings.LastIndexByte(key, '.')+1:]
	best, bestDist := "", max(1, min(2, len(last)/4))+1
	for _, k := range known {
		if d := distance(k, key); d < bestDist {
			best, bestDist = k, d
		}
	}
	if best == "" {
		// The right name in the wrong table: [api] jwt_expiry = "1h".
		for _, k := range known {
			if k == last || strings.HasSuffix(k, "."+last) {
				if best != "" {
					return ""
				}
				best = k
			}
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf("did you mean %q?", best)
}

// distance is the Levenshtein distance between a and b.
func distance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
