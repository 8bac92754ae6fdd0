package tpm

import (
	"go/parser"
	"go/token"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestImports enforces the layering in the package doc: the standard
// library, go-tpm, golang.org/x/crypto, circl's ML-DSA and circl's KEMs only.
func TestImports(t *testing.T) {
	allowed := []string{"github.com/bulwark-auth/bulwark/tpm/atomicfile/", "github.com/google/go-tpm/", "golang.org/x/crypto/", "github.com/cloudflare/circl/sign/mldsa/", "github.com/cloudflare/circl/kem/"}
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range f.Imports {
			path, _ := strconv.Unquote(imp.Path.Value)
			first, _, _ := strings.Cut(path, "/")
			if !strings.Contains(first, ".") {
				continue // standard library
			}
			ok := false
			for _, prefix := range allowed {
				ok = ok || strings.HasPrefix(path+"/", prefix)
			}
			if !ok {
				t.Errorf("%s imports %s; package tpm may import only std, go-tpm, x/crypto, circl/sign/mldsa and circl/kem", name, path)
			}
		}
	}
}
