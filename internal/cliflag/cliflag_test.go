package cliflag

import (
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestPrecedence: the command line wins over the environment, which wins
// over the file, which wins over the default; command-line-only flags
// ignore the other two.
func TestPrecedence(t *testing.T) {
	file := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(file, []byte("a: 3s\nb: 3s\nc: 3s\nsize: 2MiB\nlist: [x, y]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	a := fs.Duration("a", time.Second, "")
	b := fs.Duration("b", time.Second, "")
	c := fs.Duration("c", time.Second, "")
	d := fs.Duration("d", time.Second, "")
	only := fs.Bool("only", false, "")
	list := fs.String("list", "", "")
	var size ByteSize
	fs.Var(&size, "size", "")
	env := map[string]string{"CROWDPILOT_A": "2s", "CROWDPILOT_B": "2s", "CROWDPILOT_ONLY": "true"}
	err := Parse(fs, []string{"--a", "1ms", "--config", file}, Options{
		LookupEnv:       func(k string) (string, bool) { v, ok := env[k]; return v, ok },
		CommandLineOnly: []string{"only"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if *a != time.Millisecond || *b != 2*time.Second || *c != 3*time.Second || *d != time.Second || *only || *list != "x,y" || size != 2<<20 {
		t.Errorf("a=%v b=%v c=%v d=%v only=%v list=%q size=%d", *a, *b, *c, *d, *only, *list, size)
	}
}

func TestByteSize(t *testing.T) {
	for in, want := range map[string]string{"4096": "4KiB", "256MiB": "256MiB", "1GiB": "1GiB", "1000": "1000", "8MB": "8000000", "0": "0"} {
		var b ByteSize
		if err := b.Set(in); err != nil || b.String() != want {
			t.Errorf("Set(%q) = %v, String %q; want %q", in, err, b.String(), want)
		}
	}
	for _, bad := range []string{"", "lots", "-1", "1.5GiB", "99999999999GiB"} {
		var b ByteSize
		if err := b.Set(bad); err == nil {
			t.Errorf("Set(%q) = %d, want an error", bad, b)
		}
	}
}
