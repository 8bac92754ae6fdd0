package config

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"reflect"
	"regexp"
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
// unknown keys and values of the wrong type are returned together as
// ValidationErrors, each with the file, line and dotted key. Load does not
// call Validate: the caller applies flag overrides first (see the package
// documentation).
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
	if err := decode(data, &cfg); err != nil {
		// go-toml stops at the first problem. Decode each expression on its
		// own to report them all; fall back to the first one for problems
		// that need the whole document (a key defined twice).
		errs := ix.decodeEach(data)
		if len(errs) == 0 {
			errs = ix.convert(err, nil)
		}
		return Config{}, errs
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

func decode(data []byte, v *Config) error {
	return toml.NewDecoder(bytes.NewReader(data)).DisallowUnknownFields().Decode(v)
}

// span is a byte range of the document and the dotted key it belongs to.
type span struct {
	start, end int
	key        string
	// notText marks a key-value whose value is, or holds, something other
	// than a string: what go-toml hands to UnmarshalText without a position.
	notText bool
}

// expr is one top-level expression: a [table] header or a key = value.
type expr struct {
	span
	line   int
	header bool
	hdr    span // for a key-value, the line of the header above it
}

// docIndex locates keys in the document; go-toml's errors carry a position
// but not always the full key, and errors from UnmarshalText carry neither.
type docIndex struct {
	file       string
	lineStarts []int
	lines      map[string]int
	keys       []span // every key part, as the dotted key up to that part
	kvs        []span // every key-value, inline tables' included
	exprs      []expr
}

func indexDoc(name string, data []byte) (*docIndex, *FieldError) {
	ix := &docIndex{file: name, lineStarts: []int{0}, lines: make(map[string]int)}
	for i, b := range data {
		if b == '\n' {
			ix.lineStarts = append(ix.lineStarts, i+1)
		}
	}
	var p unstable.Parser
	p.Reset(data)
	var table []string
	var hdr span
	for p.NextExpression() {
		e := p.Expression()
		switch e.Kind {
		case unstable.Table, unstable.ArrayTable:
			first := len(ix.keys)
			table = ix.keyParts(e.Key(), nil)
			line := ix.line(ix.keys[first].start)
			end := len(data)
			if line < len(ix.lineStarts) {
				end = ix.lineStarts[line] - 1
			}
			hdr = span{start: ix.lineStarts[line-1], end: end, key: strings.Join(table, ".")}
			ix.exprs = append(ix.exprs, expr{span: hdr, line: line, header: true})
		case unstable.KeyValue:
			key := ix.keyValue(e, table)
			ix.exprs = append(ix.exprs, expr{
				span: span{start: int(e.Raw.Offset), end: int(e.Raw.Offset + e.Raw.Length), key: key},
				line: ix.line(int(e.Raw.Offset)),
				hdr:  hdr,
			})
		}
	}
	var perr *unstable.ParserError
	if err := p.Error(); errors.As(err, &perr) {
		fe := &FieldError{File: name, Msg: perr.Message, Err: ErrSyntax}
		if off := cap(data) - cap(perr.Highlight); perr.Highlight != nil && off >= 0 && off <= len(data) {
			fe.Line = ix.line(off)
		}
		return nil, fe
	} else if err != nil {
		return nil, &FieldError{File: name, Msg: err.Error(), Err: ErrSyntax}
	}
	return ix, nil
}

// keyParts records the parts of a key under prefix and returns the full key.
func (ix *docIndex) keyParts(it unstable.Iterator, prefix []string) []string {
	parts := slices.Clone(prefix)
	for it.Next() {
		n := it.Node()
		parts = append(parts, string(n.Data))
		key := strings.Join(parts, ".")
		start := int(n.Raw.Offset)
		ix.keys = append(ix.keys, span{start: start, end: start + int(n.Raw.Length), key: key})
		if _, ok := ix.lines[key]; !ok {
			ix.lines[key] = ix.line(start)
		}
	}
	return parts
}

// keyValue records a key-value under table, and those of an inline table
// it holds.
func (ix *docIndex) keyValue(e *unstable.Node, table []string) string {
	parts := ix.keyParts(e.Key(), table)
	key := strings.Join(parts, ".")
	v := e.Value()
	ix.kvs = append(ix.kvs, span{start: int(e.Raw.Offset), end: int(e.Raw.Offset + e.Raw.Length), key: key, notText: notText(v)})
	if v.Kind == unstable.InlineTable {
		for it := v.Children(); it.Next(); {
			if c := it.Node(); c.Kind == unstable.KeyValue {
				ix.keyValue(c, parts)
			}
		}
	}
	return key
}

// notText reports whether a value is not a string or an array of strings.
func notText(v *unstable.Node) bool {
	switch v.Kind {
	case unstable.String:
		return false
	case unstable.Array:
		for it := v.Children(); it.Next(); {
			if n := it.Node(); n.Kind != unstable.Comment && notText(n) {
				return true
			}
		}
		return false
	}
	return true
}

// textKey guesses the key of an UnmarshalText error go-toml returned without
// a position while decoding x alone: the one key-value in x whose field
// takes text (Duration, CIDR) but whose value is not text. x's own key if
// there is no single such key-value.
func (ix *docIndex) textKey(x *expr) (string, int) {
	found := -1
	for i, s := range ix.kvs {
		if s.start < x.start || s.end > x.end || !s.notText {
			continue
		}
		t, ok := schema[s.key]
		if !ok || isTable(t) {
			continue
		}
		if t.Kind() == reflect.Slice {
			t = t.Elem()
		}
		if !reflect.PointerTo(t).Implements(textUnmarshalerType) {
			continue
		}
		if found >= 0 {
			return x.key, x.line
		}
		found = i
	}
	if found < 0 {
		return x.key, x.line
	}
	s := ix.kvs[found]
	return s.key, ix.line(s.start)
}

// line is the 1-based line of a byte offset.
func (ix *docIndex) line(off int) int {
	return sort.Search(len(ix.lineStarts), func(i int) bool { return ix.lineStarts[i] > off })
}

// offset is the byte offset of a 1-based line and column, -1 if unknown.
func (ix *docIndex) offset(line, col int) int {
	if line < 1 || line > len(ix.lineStarts) || col < 1 {
		return -1
	}
	return ix.lineStarts[line-1] + col - 1
}

// keyAt is the dotted key at off: the key part there, else the innermost
// key-value around it. goKey is go-toml's idea of the key, preferred when it
// is a longer form of the same key (a [table.header] names its last part).
func (ix *docIndex) keyAt(off int, goKey toml.Key) string {
	found := ""
	if off >= 0 {
		for _, s := range ix.keys {
			if s.start <= off && off < s.end {
				found = s.key
			}
		}
		if found == "" {
			best := -1
			for _, s := range ix.kvs {
				if s.start <= off && off < s.end && (best < 0 || s.end-s.start <= best) {
					found, best = s.key, s.end-s.start
				}
			}
		}
	}
	gk := strings.Join(goKey, ".")
	if _, ok := ix.lines[gk]; ok && (found == "" || strings.HasPrefix(gk, found+".")) {
		return gk
	}
	if found == "" {
		return gk
	}
	return found
}

// decodeEach decodes every top-level expression alone, with the header it
// sits under, and returns all their errors. The other bytes are blanked, not
// removed, so go-toml's positions stay those of the file.
func (ix *docIndex) decodeEach(data []byte) ValidationErrors {
	var errs ValidationErrors
	mini := make([]byte, len(data))
	badTable := false
	for i := range ix.exprs {
		x := &ix.exprs[i]
		if x.header {
			badTable = false
		} else if badTable {
			continue // the table is already reported
		}
		for j, b := range data {
			if b == '\n' || b == '\r' && j+1 < len(data) && data[j+1] == '\n' {
				mini[j] = b
			} else {
				mini[j] = ' '
			}
		}
		if !x.header && x.hdr.end > x.hdr.start {
			copy(mini[x.hdr.start:x.hdr.end], data[x.hdr.start:x.hdr.end])
		}
		copy(mini[x.start:x.end], data[x.start:x.end])
		cfg := Default()
		if err := decode(mini, &cfg); err != nil {
			errs = append(errs, ix.convert(err, x)...)
			badTable = x.header
		}
	}
	return errs
}

var mismatch = regexp.MustCompile(`^cannot (?:decode TOML|store an?) ([a-z ]+?) (?:into|in) `)

// convert turns a go-toml error into FieldErrors. x is the expression being
// decoded alone, nil for the whole document.
func (ix *docIndex) convert(err error, x *expr) ValidationErrors {
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
			key := ix.keyAt(ix.offset(line, col), d.Key())
			errs = append(errs, FieldError{File: ix.file, Line: line, Key: key, Msg: suggest(key), Err: ErrUnknownKey})
		}
	case errors.As(err, &de):
		line, col := de.Position()
		key := ix.keyAt(ix.offset(line, col), de.Key())
		msg := strings.TrimPrefix(de.Error(), "toml: ")
		if m := mismatch.FindStringSubmatch(msg); m != nil {
			if t, ok := schema[key]; ok {
				msg = "expected " + describe(t) + ", found " + article(m[1])
			}
		}
		errs = append(errs, FieldError{File: ix.file, Line: line, Key: key, Msg: msg, Err: ErrInvalidValue})
	case x != nil:
		// An UnmarshalText error for a non-string value: go-toml gives
		// no position, but the expression is known.
		key, line := ix.textKey(x)
		errs = append(errs, FieldError{File: ix.file, Line: line, Key: key, Msg: err.Error(), Err: ErrInvalidValue})
	default:
		errs = append(errs, FieldError{File: ix.file, Msg: err.Error(), Err: ErrInvalidValue})
	}
	return errs
}

func article(s string) string {
	if s != "" && strings.ContainsRune("aeiou", rune(s[0])) {
		return "an " + s
	}
	return "a " + s
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
