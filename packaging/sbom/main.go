// Command sbom writes a CycloneDX 1.5 JSON software bill of materials for
// a Go binary, from the module list the Go toolchain embedded in it (the
// same list `go version -m` prints): the main module, every dependency
// module linked in, and the Go standard library of the toolchain.
//
//	go run ./packaging/sbom -bin dist/bulwark-linux-amd64 -version 1.2.3 -o bulwark.cdx.json
//
// The output depends only on the binary and the flags: the timestamp is
// SOURCE_DATE_EPOCH and the serial number is derived from the binary's
// hash, so two builds of one commit give identical SBOMs. `make release`
// runs it.
package main

import (
	"crypto/sha256"
	"debug/buildinfo"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"time"
)

type bom struct {
	BOMFormat    string       `json:"bomFormat"`
	SpecVersion  string       `json:"specVersion"`
	SerialNumber string       `json:"serialNumber"`
	Version      int          `json:"version"`
	Metadata     metadata     `json:"metadata"`
	Components   []component  `json:"components"`
	Dependencies []dependency `json:"dependencies"`
}

type metadata struct {
	Timestamp string    `json:"timestamp"`
	Tools     tools     `json:"tools"`
	Component component `json:"component"`
}

type tools struct {
	Components []component `json:"components"`
}

type component struct {
	Type        string     `json:"type"`
	BOMRef      string     `json:"bom-ref,omitempty"`
	Name        string     `json:"name"`
	Version     string     `json:"version,omitempty"`
	Description string     `json:"description,omitempty"`
	Scope       string     `json:"scope,omitempty"`
	Hashes      []hash     `json:"hashes,omitempty"`
	PURL        string     `json:"purl,omitempty"`
	Properties  []property `json:"properties,omitempty"`
}

type hash struct {
	Alg     string `json:"alg"`
	Content string `json:"content"`
}

type property struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

type dependency struct {
	Ref       string   `json:"ref"`
	DependsOn []string `json:"dependsOn"`
}

func main() {
	bin := flag.String("bin", "", "the Go binary to describe")
	version := flag.String("version", "", "version of the main component (default: the binary's module version)")
	name := flag.String("name", "", "name of the main component (default: last element of the main module path)")
	out := flag.String("o", "-", "output file, - for standard output")
	flag.Parse()
	if *bin == "" || flag.NArg() > 0 {
		fmt.Fprintln(os.Stderr, "usage: sbom -bin FILE [-version V] [-name N] [-o FILE]")
		os.Exit(2)
	}
	epoch, err := sourceDateEpoch()
	if err != nil {
		fatal(err)
	}
	doc, err := build(*bin, *name, *version, epoch)
	if err != nil {
		fatal(err)
	}
	data, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		fatal(err)
	}
	data = append(data, '\n')
	if *out == "-" {
		_, err = os.Stdout.Write(data)
	} else {
		err = os.WriteFile(*out, data, 0o644)
	}
	if err != nil {
		fatal(err)
	}
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "sbom:", err)
	os.Exit(1)
}

// sourceDateEpoch is $SOURCE_DATE_EPOCH, which a reproducible build must set.
func sourceDateEpoch() (time.Time, error) {
	s := os.Getenv("SOURCE_DATE_EPOCH")
	if s == "" {
		return time.Time{}, errors.New("SOURCE_DATE_EPOCH is not set (make release sets it to the last commit's time)")
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("SOURCE_DATE_EPOCH: %w", err)
	}
	return time.Unix(n, 0).UTC(), nil
}

func build(bin, name, version string, epoch time.Time) (*bom, error) {
	data, err := os.ReadFile(bin)
	if err != nil {
		return nil, err
	}
	info, err := buildinfo.ReadFile(bin)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", bin, err)
	}
	sum := sha256.Sum256(data)
	if name == "" {
		name = info.Main.Path[strings.LastIndex(info.Main.Path, "/")+1:]
	}
	if version == "" {
		version = info.Main.Version
	}

	mainRef := purl(info.Main.Path, version)
	main := component{
		Type:    "application",
		BOMRef:  mainRef,
		Name:    name,
		Version: version,
		Hashes:  []hash{{"SHA-256", hex.EncodeToString(sum[:])}},
		PURL:    mainRef,
	}
	for _, s := range info.Settings {
		switch s.Key {
		case "GOOS", "GOARCH", "GOAMD64", "GOARM64", "CGO_ENABLED", "-trimpath", "-tags",
			"vcs", "vcs.revision", "vcs.time", "vcs.modified":
			main.Properties = append(main.Properties, property{"golang:build:" + s.Key, s.Value})
		}
	}

	goVersion := strings.TrimPrefix(info.GoVersion, "go")
	stdRef := purl("std", "v"+goVersion)
	comps := []component{{
		Type:        "library",
		BOMRef:      stdRef,
		Name:        "std",
		Version:     info.GoVersion,
		Description: "Go standard library and runtime",
		Scope:       "required",
		PURL:        stdRef,
	}}
	refs := []string{stdRef}
	for _, d := range info.Deps {
		c := module(d)
		comps = append(comps, c)
		refs = append(refs, c.BOMRef)
	}
	if info.Main.Path == bulwarkModule {
		for _, cp := range copied {
			c := cp.component()
			comps = append(comps, c)
			refs = append(refs, c.BOMRef)
		}
	}

	// A serial number that is the same for the same binary and version.
	serial := sha256.Sum256([]byte("bulwark-sbom\x00" + hex.EncodeToString(sum[:]) + "\x00" + version))
	serial[6] = serial[6]&0x0f | 0x80 // UUID version 8 (RFC 9562: custom)
	serial[8] = serial[8]&0x3f | 0x80 // RFC 4122 variant
	u := hex.EncodeToString(serial[:16])

	return &bom{
		BOMFormat:    "CycloneDX",
		SpecVersion:  "1.5",
		SerialNumber: fmt.Sprintf("urn:uuid:%s-%s-%s-%s-%s", u[0:8], u[8:12], u[12:16], u[16:20], u[20:32]),
		Version:      1,
		Metadata: metadata{
			Timestamp: epoch.Format(time.RFC3339),
			Tools: tools{Components: []component{{
				Type: "application", Name: "bulwark packaging/sbom",
				Description: "CycloneDX SBOM from Go build information",
			}}},
			Component: main,
		},
		Components:   comps,
		Dependencies: []dependency{{Ref: mainRef, DependsOn: refs}},
	}, nil
}

const bulwarkModule = "github.com/bulwark-auth/bulwark"

// copiedCode is third-party code copied into one of bulwark's packages and
// changed there: the binary's module list names the module it came from
// only if bulwark also imports that module, and never says what was copied.
type copiedCode struct {
	module, version, pkg string // where it came from
	into, change         string // bulwark's package and what differs
	licence              string // SPDX identifier
}

// copied lists bulwark's copies of third-party code; each copy's package
// comment names the same module version (TestCopiedCodeMatchesItsPackage).
var copied = []copiedCode{{
	module: "golang.org/x/crypto", version: "v0.59.0", pkg: "argon2",
	into:    "authcore/internal/argon2",
	change:  "working memory reused between calls, first pass overwrites, one-lane segments on the caller",
	licence: "BSD-3-Clause",
}}

func (c copiedCode) component() component {
	ref := purl(c.module, c.version) + "#" + c.pkg
	return component{
		Type:        "library",
		BOMRef:      ref,
		Name:        c.module + "/" + c.pkg,
		Version:     c.version,
		Description: fmt.Sprintf("copied into %s/%s and changed: %s", bulwarkModule, c.into, c.change),
		Scope:       "required",
		PURL:        ref,
		Properties: []property{
			{"bulwark:copied-into", bulwarkModule + "/" + c.into},
			{"bulwark:licence", c.licence},
		},
	}
}

// module is the component of one dependency module, as replaced when a
// replace directive applied.
func module(m *debug.Module) component {
	var props []property
	if m.Replace != nil {
		props = append(props, property{"golang:replaces", m.Path + "@" + m.Version})
		m = m.Replace
	}
	ref := purl(m.Path, m.Version)
	c := component{
		Type:       "library",
		BOMRef:     ref,
		Name:       m.Path,
		Version:    m.Version,
		Scope:      "required",
		PURL:       ref,
		Properties: props,
	}
	// The go.sum hash ("h1:" and base64) is a SHA-256 over the module's
	// file list and file hashes; it is given as the module's SHA-256, as
	// cyclonedx-gomod does, so scanners can match it against go.sum.
	if h, ok := strings.CutPrefix(m.Sum, "h1:"); ok {
		if b, err := base64.StdEncoding.DecodeString(h); err == nil {
			c.Hashes = []hash{{"SHA-256", hex.EncodeToString(b)}}
		}
	}
	return c
}

// purl is the package URL of a Go module version (purl-spec, type golang).
func purl(path, version string) string {
	p := "pkg:golang/" + path
	if version != "" && version != "(devel)" {
		p += "@" + strings.NewReplacer("%", "%25", "+", "%2B", " ", "%20").Replace(version)
	}
	return p
}
