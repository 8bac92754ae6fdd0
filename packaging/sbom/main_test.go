package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"runtime/debug"
	"strings"
	"testing"
	"time"
)

func TestBuildIsDeterministic(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	epoch := time.Unix(1700000000, 0).UTC()
	a, err := build(exe, "bulwark", "1.2.3", epoch)
	if err != nil {
		t.Fatal(err)
	}
	b, err := build(exe, "bulwark", "1.2.3", epoch)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(a, b) {
		t.Fatal("two SBOMs of one binary differ")
	}
	if a.BOMFormat != "CycloneDX" || a.SpecVersion != "1.5" || a.Metadata.Timestamp != "2023-11-14T22:13:20Z" {
		t.Errorf("header: %+v", a)
	}
	if !regexp.MustCompile(`^urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-8[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`).MatchString(a.SerialNumber) {
		t.Errorf("serial number %q is not a version 8 UUID URN", a.SerialNumber)
	}
	if len(a.Metadata.Component.Hashes) != 1 || len(a.Metadata.Component.Hashes[0].Content) != 64 {
		t.Errorf("main component hashes: %+v", a.Metadata.Component.Hashes)
	}
	if len(a.Components) == 0 || a.Components[0].Name != "std" {
		t.Errorf("first component is not the standard library: %+v", a.Components)
	}
	if len(a.Dependencies) != 1 || len(a.Dependencies[0].DependsOn) != len(a.Components) {
		t.Errorf("dependencies: %+v", a.Dependencies)
	}
	if _, err := json.Marshal(a); err != nil {
		t.Fatal(err)
	}
	if other, _ := build(exe, "bulwark", "1.2.4", epoch); other.SerialNumber == a.SerialNumber {
		t.Error("another version got the same serial number")
	}
}

func TestModuleAndPURL(t *testing.T) {
	c := module(&debug.Module{
		Path: "github.com/hashicorp/go-metrics", Version: "v0.7.0",
		Replace: &debug.Module{Path: "github.com/hashicorp/go-metrics", Version: "v0.6.1+incompatible",
			Sum: "h1:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="},
	})
	if c.PURL != "pkg:golang/github.com/hashicorp/go-metrics@v0.6.1%2Bincompatible" {
		t.Errorf("purl = %q", c.PURL)
	}
	if len(c.Hashes) != 1 || c.Hashes[0].Content != "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" {
		t.Errorf("hashes = %+v", c.Hashes)
	}
	if len(c.Properties) != 1 || c.Properties[0].Value != "github.com/hashicorp/go-metrics@v0.7.0" {
		t.Errorf("properties = %+v", c.Properties)
	}
}

// TestCopiedCodeMatchesItsPackage: each copy listed in the SBOM names the
// version its package comment gives, and a bulwark binary's SBOM lists it.
func TestCopiedCodeMatchesItsPackage(t *testing.T) {
	for _, c := range copied {
		src, err := os.ReadFile(filepath.Join("..", "..", c.into, c.pkg+".go"))
		if err != nil {
			t.Fatal(err)
		}
		if want := c.module + "/" + c.pkg + " (" + c.version; !strings.Contains(string(src), want) {
			t.Errorf("%s/%s.go does not name %q: the SBOM and the copy disagree", c.into, c.pkg, want)
		}
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	b, err := build(exe, "bulwark", "1.2.3", time.Unix(1700000000, 0).UTC())
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, c := range b.Components {
		found = found || c.PURL == "pkg:golang/golang.org/x/crypto@v0.59.0#argon2"
	}
	if !found {
		t.Error("the SBOM of a bulwark binary does not list the copied argon2 code")
	}
}
