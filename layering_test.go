// Package bulwark_test checks the dependency rules of DESIGN.md: imports
// point one way, cmd → api → authcore → fsm and cmd → node → fsm, tpm;
// cmd/bulwark opens no Raft or bbolt file and builds no replicated command.
package bulwark_test

import (
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

const module = "github.com/bulwark-auth/bulwark"

// forbidden lists, per package, import paths (prefixes) it must not
// depend on, directly or through others.
var forbidden = map[string][]string{
	"fsm":      {module + "/", "net/http", "github.com/hashicorp/raft"},
	"authcore": {module + "/api", module + "/node", module + "/tpm", module + "/cmd", "net/http", "go.etcd.io/bbolt", "github.com/hashicorp/raft"},
	"api":      {module + "/node", module + "/fsm", module + "/tpm", module + "/cmd", "go.etcd.io/bbolt", "github.com/hashicorp/raft"},
	"node":     {module + "/api", module + "/authcore", module + "/cmd", "net/http"},
	"tpm":      {module + "/", "net/http", "go.etcd.io/bbolt", "github.com/hashicorp/raft"},
	// node/escrow: the data key's escrow and share formats, no protocol.
	"node/escrow": {module + "/", "net/http", "go.etcd.io/bbolt", "github.com/hashicorp/raft"},
}

// allowedSelf lists the module packages each package may reach. The
// injected clock (internal/clock) is authcore's and node's; fsm reaches no
// module package but the leaf that drops bbolt's mapped pages, and so no
// clock: Apply reads the time from the command.
var allowedSelf = map[string][]string{
	"fsm":         {module + "/internal/boltpages"},
	"authcore":    {module + "/fsm", module + "/authcore/", module + "/internal/clock", module + "/internal/auditsig"},
	"api":         {module + "/authcore", module + "/fsm"}, // fsm only through authcore's types
	"node":        {module + "/fsm", module + "/tpm", module + "/node/", module + "/internal/clock", module + "/internal/auditsig", module + "/internal/boltpages"},
	"tpm":         {},
	"node/escrow": {module + "/fsm", module + "/tpm", module + "/tpm/", module + "/internal/boltpages"},
}

func TestLayering(t *testing.T) {
	for pkg, bad := range forbidden {
		for _, dep := range goList(t, pkg) {
			if dep.path == module+"/"+pkg || strings.HasPrefix(dep.path, module+"/"+pkg+"/") {
				continue
			}
			for _, b := range bad {
				// Module packages are forbidden however they are reached;
				// outside packages only when imported directly (Raft itself
				// pulls in net/http through its metrics library).
				inModule := strings.HasPrefix(b, module+"/")
				if strings.HasPrefix(dep.path, b) && (inModule || dep.direct) && !allowed(pkg, dep.path) {
					t.Errorf("%s depends on %s, which DESIGN.md's layering forbids", pkg, dep.path)
				}
			}
		}
	}
}

type dep struct {
	path   string
	direct bool
}

// goList returns the dependencies of ./pkg and its subpackages' files,
// marking those imported directly by pkg's own non-test files.
func goList(t *testing.T, pkg string) []dep {
	t.Helper()
	out, err := exec.Command("go", "list", "-f", "{{join .Imports \"\\n\"}}", "./"+pkg).Output()
	if err != nil {
		t.Fatalf("go list %s: %v", pkg, err)
	}
	direct := map[string]bool{}
	for _, p := range strings.Fields(string(out)) {
		direct[p] = true
	}
	out, err = exec.Command("go", "list", "-deps", "-json=ImportPath", "./"+pkg).Output()
	if err != nil {
		t.Fatalf("go list -deps %s: %v", pkg, err)
	}
	var deps []dep
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for dec.More() {
		var p struct{ ImportPath string }
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		deps = append(deps, dep{p.ImportPath, direct[p.ImportPath]})
	}
	return deps
}

func allowed(pkg, dep string) bool {
	for _, a := range allowedSelf[pkg] {
		if dep == a || (strings.HasSuffix(a, "/") && strings.HasPrefix(dep, a)) {
			return true
		}
	}
	return false
}

// ownImports holds packages to their own import lines (not what they reach
// through others): allow, when set, lists every non-standard import path
// (prefix) the package may name; deny lists paths it must never name
// (authcore legitimately reaches bbolt, api must not use it itself).
// withTests holds the package's test files to the same rule.
var ownImports = []struct {
	pkg         string
	allow, deny []string
	withTests   bool
}{
	{pkg: "node/pki", allow: []string{module + "/tpm/atomicfile"}},
	// The tests' wait helper, imported by the tests of every layer: a leaf.
	{pkg: "internal/waitfor", allow: []string{}, withTests: true},
	// The clock authcore and node read time from (Real, or a test's Fake): a leaf.
	{pkg: "internal/clock", allow: []string{}, withTests: true},
	// The hardening scorecard (bulwark doctor): judged from plain facts, a leaf.
	{pkg: "internal/scorecard", allow: []string{}, withTests: true},
	// Drops a bbolt file's mapped pages (fsm's state.db, node's raft.db): a leaf.
	{pkg: "internal/boltpages", allow: []string{"go.etcd.io/bbolt"}, withTests: true},
	{pkg: "tpm", allow: []string{module + "/tpm/atomicfile", "github.com/google/go-tpm/", "golang.org/x/crypto/",
		"github.com/cloudflare/circl/sign/mldsa/", "github.com/cloudflare/circl/kem/"}},
	{pkg: "api", withTests: true, deny: []string{module + "/fsm", module + "/node", module + "/tpm", module + "/cmd",
		"go.etcd.io/bbolt", "github.com/boltdb/bolt", "github.com/hashicorp/raft", "github.com/hashicorp/raft-boltdb",
		"github.com/google/go-tpm"}},
	// cmd/bulwark wires; no Raft or bbolt file is opened there (node's).
	{pkg: "cmd/bulwark", deny: cmdDeny},
	{pkg: "cmd/bulwark/config", deny: cmdDeny},
}

var cmdDeny = []string{"github.com/hashicorp/raft", "github.com/hashicorp/raft-boltdb", "go.etcd.io/bbolt", "github.com/boltdb/bolt"}

func TestOwnImports(t *testing.T) {
	for _, tc := range ownImports {
		format := `{{join .Imports "\n"}}`
		if tc.withTests {
			format += `{{"\n"}}{{join .TestImports "\n"}}`
		}
		out, err := exec.Command("go", "list", "-f", format, "./"+tc.pkg).Output()
		if err != nil {
			t.Fatalf("go list %s: %v", tc.pkg, err)
		}
		for _, path := range strings.Fields(string(out)) {
			first, _, _ := strings.Cut(path, "/")
			if !strings.Contains(first, ".") || path == module+"/"+tc.pkg || strings.HasPrefix(path, module+"/"+tc.pkg+"/") {
				continue // the standard library, or the package's own
			}
			if tc.allow != nil && !slices.ContainsFunc(tc.allow, func(a string) bool { return path == a || strings.HasPrefix(path+"/", a) }) {
				t.Errorf("%s imports %s; it may import only the standard library and %v", tc.pkg, path, tc.allow)
			}
			if slices.ContainsFunc(tc.deny, func(d string) bool { return path == d || strings.HasPrefix(path, d+"/") }) {
				t.Errorf("%s imports %s, which its package doc rules out", tc.pkg, path)
			}
		}
	}
}

// TestCmdBuildsNoCommand: no replicated command is built in cmd/bulwark
// (DESIGN.md's layout): its non-test files neither call fsm.NewCommand nor
// write an fsm.Command literal. The packages that own a protocol build
// their commands (node, authcore).
func TestCmdBuildsNoCommand(t *testing.T) {
	err := filepath.WalkDir("cmd/bulwark", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return err
		}
		f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		fsmName := ""
		for _, imp := range f.Imports {
			if p, _ := strconv.Unquote(imp.Path.Value); p == module+"/fsm" {
				fsmName = "fsm"
				if imp.Name != nil {
					fsmName = imp.Name.Name
				}
			}
		}
		if fsmName == "" {
			return nil
		}
		isFSM := func(e ast.Expr, name string) bool {
			sel, ok := e.(*ast.SelectorExpr)
			if !ok || sel.Sel.Name != name {
				return false
			}
			id, ok := sel.X.(*ast.Ident)
			return ok && id.Name == fsmName
		}
		ast.Inspect(f, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.CallExpr:
				if isFSM(n.Fun, "NewCommand") {
					t.Errorf("%s calls fsm.NewCommand: replicated commands are built in node or authcore, not in cmd/bulwark", path)
				}
			case *ast.CompositeLit:
				if isFSM(n.Type, "Command") {
					t.Errorf("%s builds an fsm.Command: replicated commands are built in node or authcore, not in cmd/bulwark", path)
				}
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
