package config

import (
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

const (
	modulePath = "github.com/bulwark-auth/bulwark"
	thisPath   = modulePath + "/cmd/bulwark/config"
)

// TestLayering enforces the package doc: config imports nothing of bulwark,
// and only cmd/bulwark imports config.
func TestLayering(t *testing.T) {
	t.Parallel()
	root := filepath.Join("..", "..", "..")
	fset := token.NewFileSet()
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if name := d.Name(); path != root && (strings.HasPrefix(name, ".") || name == "testdata" || name == "vendor") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.ImportsOnly)
		if err != nil {
			return nil // another package's work in progress; not ours to judge
		}
		rel, _ := filepath.Rel(root, filepath.Dir(path))
		rel = filepath.ToSlash(rel)
		for _, imp := range f.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			switch {
			case rel == "cmd/bulwark/config" && strings.HasPrefix(p, modulePath+"/"):
				t.Errorf("%s imports %s: config must not depend on other bulwark packages", path, p)
			case p == thisPath && rel != "cmd/bulwark" && rel != "cmd/bulwark/config":
				t.Errorf("%s imports %s: only cmd/bulwark may; hand plain values instead", path, p)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
