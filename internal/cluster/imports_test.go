package cluster

import (
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// etcdImports are the import paths that only this package may use outside
// tests: etcd's client and server, its API types, and the gRPC they run
// on. The rest of the code reads and writes the cluster through the typed
// stores here.
var etcdImports = []string{"go.etcd.io/", "google.golang.org/grpc"}

// allowedEtcdImporters lists the non-test files outside internal/cluster
// that may import one of etcdImports anyway, each with the reason. None
// today: keep it so.
var allowedEtcdImporters = map[string]string{}

// TestOnlyClusterImportsEtcd fails if a non-test Go file outside
// internal/cluster imports etcd or gRPC. Test files may: they forge
// records and inspect etcd directly.
func TestOnlyClusterImportsEtcd(t *testing.T) {
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("module root not at %s: %v", root, err)
	}
	self := filepath.Join(root, "internal", "cluster")
	fset := token.NewFileSet()
	files := 0
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			name := d.Name()
			if path == self || (path != root && (strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_") || name == "testdata" || name == "vendor")) {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		files++
		rel, _ := filepath.Rel(root, path)
		rel = filepath.ToSlash(rel)
		for _, imp := range f.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			for _, banned := range etcdImports {
				if !strings.HasPrefix(p, banned) {
					continue
				}
				if why, ok := allowedEtcdImporters[rel]; ok {
					t.Logf("%s imports %s (allowed: %s)", rel, p, why)
					continue
				}
				t.Errorf("%s imports %s: only internal/cluster talks to etcd; add or use a typed store there", rel, p)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files < 50 {
		t.Fatalf("read only %d files under %s: is the walk broken?", files, root)
	}
}
