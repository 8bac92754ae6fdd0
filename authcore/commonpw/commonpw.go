// Package commonpw carries the list of common passwords that bulwark's password
// policy refuses (NIST SP 800-63B: "passwords obtained from previous breach
// corpuses" and "commonly-used" values). Only authcore imports it.
//
// The list is passwords.txt.gz, embedded in the binary so that an air-gapped node
// needs nothing else: the 30,000 passwords of zxcvbn 4.4.2 (MIT licence; the file's
// header records source, licence and the transformation applied). It is
// decompressed into a map the first time it is needed, about 2 MB of heap.
package commonpw

import (
	"bufio"
	"bytes"
	"compress/gzip"
	_ "embed"
	"fmt"
	"strings"
	"sync"

	"golang.org/x/text/unicode/norm"
)

// MinLength is the length in runes below which entries were left out of the list:
// a password policy rejects such short passwords anyway.
const MinLength = 4

//go:embed passwords.txt.gz
var compressed []byte

// set is the decoded list, keys in Key form. The embedded file is fixed at build
// time and checked by this package's tests, so a decoding failure is a broken
// build: load panics rather than let every caller handle an impossible error.
var set = sync.OnceValue(func() map[string]struct{} {
	m, err := load(compressed)
	if err != nil {
		panic(fmt.Sprintf("commonpw: embedded list: %v", err))
	}
	return m
})

// load decodes a gzip-compressed, newline-separated list. Lines starting with '#'
// are comments; blank lines are ignored.
func load(gz []byte) (map[string]struct{}, error) {
	zr, err := gzip.NewReader(bytes.NewReader(gz))
	if err != nil {
		return nil, err
	}
	defer zr.Close()
	m := make(map[string]struct{}, 30000)
	sc := bufio.NewScanner(zr)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		m[Key(line)] = struct{}{}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return m, nil
}

// Key is the form in which passwords are compared with the list: NFKC-normalised,
// then lowercased, so that "PassWord" and the fullwidth "ＰＡＳＳＷＯＲＤ" both
// match "password".
func Key(password string) string {
	return strings.ToLower(norm.NFKC.String(password))
}

// Contains reports whether password is on the list, compared as Key(password).
// The first call decodes the list; later calls are a map lookup. Safe for
// concurrent use.
func Contains(password string) bool {
	_, ok := set()[Key(password)]
	return ok
}

// Len reports how many distinct entries the list has.
func Len() int {
	return len(set())
}
