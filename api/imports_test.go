package api

import (
	"go/parser"
	"go/token"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestImports enforces the layering in the package doc: of bulwark's own
// packages api imports authcore only, and never a storage, consensus or
// TPM library. It reads the files' import lines rather than `go list
// -deps`, because authcore legitimately reaches fsm and bbolt: what api
// must not do is use them itself. Test files are held to the same rule.
func TestImports(t *testing.T) {
	const module = "github.com/bulwark-auth/bulwark/"
	allowedOwn := []string{module + "authcore"}
	forbidden := []string{"go.etcd.io/bbolt", "github.com/hashicorp/raft", "github.com/google/go-tpm",
		"github.com/boltdb/bolt", "github.com/hashicorp/raft-boltdb"}
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no Go files found")
	}
	fset := token.NewFileSet()
	for _, name := range files {
		f, err := parser.ParseFile(fset, name, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range f.Imports {
			path, _ := strconv.Unquote(imp.Path.Value)
			if strings.HasPrefix(path, module) {
				ok := false
				for _, a := range allowedOwn {
					ok = ok || path == a || strings.HasPrefix(path, a+"/")
				}
				if !ok {
					t.Errorf("%s imports %s; api may import only authcore of bulwark's packages", name, path)
				}
			}
			for _, f := range forbidden {
				if path == f || strings.HasPrefix(path, f+"/") {
					t.Errorf("%s imports %s; api must not touch storage, Raft or the TPM", name, path)
				}
			}
		}
	}
}
