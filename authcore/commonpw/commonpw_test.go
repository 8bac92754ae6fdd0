package commonpw

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestListLoads(t *testing.T) {
	if n := Len(); n < 10000 {
		t.Fatalf("Len() = %d, want at least 10000", n)
	}
	if len(compressed) >= 200<<10 {
		t.Errorf("embedded list is %d bytes, want < 200 KiB", len(compressed))
	}
	for _, pw := range []string{"password", "123456", "qwerty", "iloveyou", "trustno1", "1234567890", "password123", "qwerty123456"} {
		if !Contains(pw) {
			t.Errorf("Contains(%q) = false", pw)
		}
	}
	// Matching is case-insensitive and after NFKC.
	for _, pw := range []string{"PASSWORD", "PassWord", "ｐａｓｓｗｏｒｄ", "ＱＷＥＲＴＹ"} {
		if !Contains(pw) {
			t.Errorf("Contains(%q) = false", pw)
		}
	}
	// Not on it: shorter than MinLength, not listed, whole entries only, and the
	// header's comment lines.
	for _, pw := range []string{"", "123", "abc", "123456789012", "correct horse battery staple", "xpassword", "# Common passwords, one per line, most common first."} {
		if Contains(pw) {
			t.Errorf("Contains(%q) = true", pw)
		}
	}
}

// Every entry of the embedded file is in Key form and long enough, and the file
// records where it came from.
func TestEmbeddedFile(t *testing.T) {
	zr, err := gzip.NewReader(bytes.NewReader(compressed))
	if err != nil {
		t.Fatal(err)
	}
	var header strings.Builder
	entries := 0
	sc := bufio.NewScanner(zr)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			header.WriteString(line + "\n")
			continue
		}
		entries++
		if line != Key(line) || utf8.RuneCountInString(line) < MinLength || strings.TrimSpace(line) != line {
			t.Errorf("entry %q: not lowercased NFKC of at least %d runes", line, MinLength)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if entries != Len() {
		t.Errorf("%d entries in the file, %d distinct in the set", entries, Len())
	}
	for _, want := range []string{"zxcvbn 4.4.2", "License", "MIT", "Copyright (c) 2012-2016 Dan Wheeler and Dropbox, Inc."} {
		if !strings.Contains(header.String(), want) {
			t.Errorf("header does not record %q", want)
		}
	}
}

func TestLoadRejectsCorruptData(t *testing.T) {
	if _, err := load([]byte("not gzip")); err == nil {
		t.Error("load(not gzip) succeeded")
	}
	if _, err := load(compressed[:len(compressed)/2]); err == nil {
		t.Error("load(truncated) succeeded")
	}
}

func BenchmarkContains(b *testing.B) {
	Len() // decode outside the loop
	for b.Loop() {
		Contains("Correct Horse Battery Staple")
	}
}
