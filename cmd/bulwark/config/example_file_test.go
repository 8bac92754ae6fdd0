package config

import (
	"os"
	"reflect"
	"slices"
	"testing"

	"github.com/pelletier/go-toml/v2"
)

// exampleFile is the commented configuration operators start from.
const exampleFile = "../../../packaging/bulwark.toml"

// TestExampleFile keeps packaging/bulwark.toml complete and true: it names
// every key of Config, each with its default. The one difference is
// node_name, empty in the file ("use the hostname"), which Default and
// Resolve turn into the hostname.
func TestExampleFile(t *testing.T) {
	t.Parallel()
	cfg, err := Load(exampleFile)
	if err != nil {
		t.Fatal(err)
	}

	var inFile []string
	for key := range cfg.src.lines {
		if tp, ok := schema[key]; ok && !isTable(tp) {
			inFile = append(inFile, key)
		}
	}
	slices.Sort(inFile)
	all := leafKeys()
	for _, key := range all {
		if !slices.Contains(inFile, key) {
			t.Errorf("%s lacks key %q: add it with its default and a comment", exampleFile, key)
		}
	}

	if cfg.NodeName != "" {
		t.Errorf("node_name = %q in %s, want \"\" (the hostname)", cfg.NodeName, exampleFile)
	}
	want := Default()
	cfg.NodeName = want.NodeName
	cfg.src = nil
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("%s differs from Default():\n got %+v\nwant %+v", exampleFile, cfg, want)
	}

	cfg.NodeName = "node1"
	if err := cfg.Validate(); err != nil {
		t.Errorf("%s does not validate: %v", exampleFile, err)
	}
}

// TestDefaultRoundTrip marshals Default and loads it back.
func TestDefaultRoundTrip(t *testing.T) {
	t.Parallel()
	b, err := toml.Marshal(Default())
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := parse("default.toml", b)
	if err != nil {
		t.Fatalf("%v\n%s", err, b)
	}
	cfg.src = nil
	if want := Default(); !reflect.DeepEqual(cfg, want) {
		t.Errorf("round trip:\n got %+v\nwant %+v\n%s", cfg, want, b)
	}
}

func FuzzParse(f *testing.F) {
	if b, err := os.ReadFile(exampleFile); err == nil {
		f.Add(b)
	}
	for _, s := range []string{
		"", "[api]\nlisten = 1\nlisen = 2\n", "a = {b = {c = [1, {d = 2}]}}\n",
		"[[auth.security]]\nx = 1\n", "[auth]\nsessions = {idle_timeout = 5}\n",
		"api.listen = \":1\"\n[api]\n", "x = \"\"\"\n\n\"\"\"\r\n[api\n", "\xff = 1",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := parse("fuzz.toml", data)
		if err != nil {
			_ = err.Error()
			return
		}
		_ = cfg.Validate()
	})
}

func FuzzParseDuration(f *testing.F) {
	for _, s := range []string{"7d", "1d12h", "90m", "-1h", "abc", "1x", "1.5d", "0", "+", "9223372036s"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := ParseDuration(s)
		if err != nil {
			return
		}
		if d < 0 {
			t.Fatalf("ParseDuration(%q) = %v, negative", s, d)
		}
		back, err := ParseDuration(Duration{d}.String())
		if err != nil || back != d {
			t.Fatalf("ParseDuration(%q) = %v; String %q parses as %v, %v", s, d, Duration{d}.String(), back, err)
		}
	})
}
