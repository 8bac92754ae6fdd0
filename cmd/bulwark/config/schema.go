package config

import (
	"encoding"
	"reflect"
	"sort"
	"strings"
)

// The schema is read from Config's toml tags, so adding a field is enough to
// add a key: Load accepts it, errors name it, and the example-file test
// demands it appear in packaging/bulwark.toml.

var textUnmarshalerType = reflect.TypeFor[encoding.TextUnmarshaler]()

// isTable reports whether a field of type t is a TOML table rather than a
// value.
func isTable(t reflect.Type) bool {
	return t.Kind() == reflect.Struct && !reflect.PointerTo(t).Implements(textUnmarshalerType)
}

// tomlName is the key of a struct field, "" for fields without a tag.
func tomlName(f reflect.StructField) string {
	name, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
	if !f.IsExported() || name == "-" {
		return ""
	}
	return name
}

// schema maps every dotted key to the type of its field, tables included.
var schema = func() map[string]reflect.Type {
	m := make(map[string]reflect.Type)
	var walk func(prefix string, t reflect.Type)
	walk = func(prefix string, t reflect.Type) {
		for i := range t.NumField() {
			f := t.Field(i)
			name := tomlName(f)
			if name == "" {
				continue
			}
			key := prefix + name
			m[key] = f.Type
			if isTable(f.Type) {
				walk(key+".", f.Type)
			}
		}
	}
	walk("", reflect.TypeFor[Config]())
	return m
}()

// leafKeys returns every value key of Config (tables left out), dotted and
// sorted: "api.listen", "auth.security.jwt_expiry", ...
func leafKeys() []string {
	var keys []string
	for k, t := range schema {
		if !isTable(t) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	return keys
}

// field returns the value of a dotted key inside c, or an invalid Value when
// the key is not in the schema.
func field(c *Config, key string) reflect.Value {
	v := reflect.ValueOf(c).Elem()
	for part := range strings.SplitSeq(key, ".") {
		if v.Kind() != reflect.Struct {
			return reflect.Value{}
		}
		found := false
		for i := range v.NumField() {
			if tomlName(v.Type().Field(i)) == part {
				v, found = v.Field(i), true
				break
			}
		}
		if !found {
			return reflect.Value{}
		}
	}
	return v
}
