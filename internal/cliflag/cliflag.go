// Package cliflag reads a crowdpilot command's flags the same way for every
// command, and writes their help and errors in one style: a flag on the
// command line, else CROWDPILOT_<FLAG> in the environment, else the key of
// the same name in the YAML file given with --config, else the default.
package cliflag

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"gopkg.in/yaml.v3"
)

// EnvPrefix prefixes the environment variable of every flag.
const EnvPrefix = "CROWDPILOT_"

// ConfigFlag is the flag naming the YAML file.
const ConfigFlag = "config"

// EnvName is the environment variable of a flag: store-bytes is
// CROWDPILOT_STORE_BYTES.
func EnvName(flagName string) string {
	return EnvPrefix + strings.Map(func(r rune) rune {
		if r == '-' || r == '.' {
			return '_'
		}
		return unicode.ToUpper(r)
	}, flagName)
}

// Options tune Parse.
type Options struct {
	// LookupEnv reads the environment. If nil, the environment is ignored
	// (os.LookupEnv reads the process's).
	LookupEnv func(string) (string, bool)
	// CommandLineOnly are flags read from the command line only, never
	// from the environment or the config file (what a purge targets, for
	// example, must not come from a stray variable).
	CommandLineOnly []string
}

// Parse reads args into fs, then every flag the command line did not set
// from the environment, then from the --config file (a --config flag is
// added to fs if it has none). It returns flag.ErrHelp for -h or --help
// (print Usage then), and otherwise a one-line error that names the flag
// and says what a valid value looks like.
func Parse(fs *flag.FlagSet, args []string, o Options) error {
	if fs.Lookup(ConfigFlag) == nil {
		fs.String(ConfigFlag, "", "YAML `file` of flag values; its keys are the flag names without --")
	}
	fs.VisitAll(explain)
	fs.SetOutput(io.Discard)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return translate(fs, err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q (flags are written --name value)", fs.Arg(0))
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	cliOnly := func(name string) bool { return name == ConfigFlag || slices.Contains(o.CommandLineOnly, name) }
	if o.LookupEnv != nil {
		var err error
		fs.VisitAll(func(f *flag.Flag) {
			if err != nil || set[f.Name] || (cliOnly(f.Name) && f.Name != ConfigFlag) {
				return
			}
			v, ok := o.LookupEnv(EnvName(f.Name))
			if !ok {
				return
			}
			if e := fs.Set(f.Name, v); e != nil {
				err = fmt.Errorf("%s=%q (--%s): %w", EnvName(f.Name), v, f.Name, e)
			}
			set[f.Name] = true
		})
		if err != nil {
			return err
		}
	}
	if path := fs.Lookup(ConfigFlag).Value.String(); path != "" {
		return applyFile(fs, path, set, cliOnly)
	}
	return nil
}

// applyFile sets the flags not set yet from the YAML file at path.
func applyFile(fs *flag.FlagSet, path string, set map[string]bool, cliOnly func(string) bool) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("--config: %w", err)
	}
	var values map[string]any
	if err := yaml.Unmarshal(b, &values); err != nil {
		return fmt.Errorf("--config %s: not a YAML map of flag names to values: %s", path, strings.ReplaceAll(err.Error(), "\n", "; "))
	}
	keys := make([]string, 0, len(values))
	for k := range values {
		keys = append(keys, k)
	}
	slices.Sort(keys) // the first problem, always the same one
	for _, k := range keys {
		if fs.Lookup(k) == nil {
			return fmt.Errorf("--config %s: unknown setting %q (keys are flag names without --, e.g. %s)", path, k, exampleFlag(fs))
		}
		if cliOnly(k) {
			return fmt.Errorf("--config %s: %q can only be given on the command line (--%s)", path, k, k)
		}
		if set[k] {
			continue
		}
		var s string
		switch v := values[k].(type) {
		case []any:
			parts := make([]string, len(v))
			for i, p := range v {
				parts[i] = fmt.Sprint(p)
			}
			s = strings.Join(parts, ",")
		case nil:
			s = ""
		default:
			s = fmt.Sprint(v)
		}
		if err := fs.Set(k, s); err != nil {
			return fmt.Errorf("--config %s: %s: %q: %w", path, k, s, err)
		}
	}
	return nil
}

func exampleFlag(fs *flag.FlagSet) string {
	name := ""
	fs.VisitAll(func(f *flag.Flag) {
		if name == "" && f.Name != ConfigFlag {
			name = f.Name
		}
	})
	return name
}

// hint says what a valid value of v looks like; "" for values whose own
// errors say so.
func hint(v flag.Value) string {
	g, ok := v.(flag.Getter)
	if !ok {
		return ""
	}
	switch g.Get().(type) {
	case time.Duration:
		return "want a duration such as 500ms, 2s or 1m30s"
	case int, int64:
		return "want a whole number such as 100"
	case uint, uint64:
		return "want a whole number ≥ 0 such as 100"
	case float64:
		return "want a number such as 0.9 or 100"
	case bool:
		return "want true or false"
	}
	return ""
}

// explained replaces a standard value's bare parse error ("parse error",
// "invalid syntax") by a hint.
type explained struct {
	flag.Value
	hint string
}

func (e explained) Set(s string) error {
	if err := e.Value.Set(s); err != nil {
		return errors.New(e.hint)
	}
	return nil
}

func (e explained) Get() any { return e.Value.(flag.Getter).Get() }

// explainedBool is explained for a bool flag, which may stand alone.
type explainedBool struct{ explained }

func (explainedBool) IsBoolFlag() bool { return true }

func explain(f *flag.Flag) {
	switch f.Value.(type) {
	case explained, explainedBool:
		return // parsed before
	}
	h := hint(f.Value)
	if h == "" {
		return
	}
	if b, ok := f.Value.(interface{ IsBoolFlag() bool }); ok && b.IsBoolFlag() {
		f.Value = explainedBool{explained{f.Value, h}}
		return
	}
	f.Value = explained{f.Value, h}
}

var (
	reUndefined = regexp.MustCompile(`^flag provided but not defined: -+(.*)$`)
	reNoArg     = regexp.MustCompile(`^flag needs an argument: -+(.*)$`)
	reInvalid   = regexp.MustCompile(`^invalid (?:boolean )?value ("(?:[^"\\]|\\.)*") for (?:flag )?-+([^:]+): (.*)$`)
)

// translate rewrites the flag package's errors in the commands' style:
// --name first, then what is wrong and what would do.
func translate(fs *flag.FlagSet, err error) error {
	msg := err.Error()
	if m := reUndefined.FindStringSubmatch(msg); m != nil {
		return fmt.Errorf("unknown flag --%s (see --help for the flags)", m[1])
	}
	if m := reNoArg.FindStringSubmatch(msg); m != nil {
		if f := fs.Lookup(m[1]); f != nil {
			if h := hint(f.Value); h != "" {
				return fmt.Errorf("--%s needs a value: %s", m[1], h)
			}
		}
		return fmt.Errorf("--%s needs a value", m[1])
	}
	if m := reInvalid.FindStringSubmatch(msg); m != nil {
		return fmt.Errorf("--%s %s: %s", m[2], m[1], m[3])
	}
	return err
}

// Usage writes a command's help: the synopsis, what it does, and every
// flag with its value, default and environment variable, followed by how
// the environment and the config file work.
func Usage(w io.Writer, fs *flag.FlagSet, synopsis, about string, o Options) {
	if fs.Lookup(ConfigFlag) == nil {
		fs.String(ConfigFlag, "", "YAML `file` of flag values; its keys are the flag names without --")
	}
	fmt.Fprintf(w, "Usage: %s\n\n", synopsis)
	if about = strings.TrimSpace(about); about != "" {
		fmt.Fprintf(w, "%s\n\n", about)
	}
	fmt.Fprintln(w, "Flags:")
	fs.VisitAll(func(f *flag.Flag) {
		ff := *f
		switch v := f.Value.(type) {
		case explained:
			ff.Value = v.Value
		case explainedBool:
			ff.Value = v.Value
		}
		name, usage := flag.UnquoteUsage(&ff)
		if _, ok := ff.Value.(*ByteSize); ok && name == "value" {
			name = "SIZE"
		}
		switch name {
		case "value":
			name = "VALUE"
		case "":
		default:
			name = strings.ToUpper(name)
		}
		head := "  --" + f.Name
		if name != "" {
			head += " " + name
		}
		fmt.Fprintln(w, head)
		fmt.Fprintf(w, "        %s\n", usage)
		var notes []string
		if !isZero(f.DefValue) {
			def := f.DefValue
			if g, ok := ff.Value.(flag.Getter); ok {
				if _, isString := g.Get().(string); isString {
					def = strconv.Quote(def)
				}
			}
			notes = append(notes, "default "+def)
		}
		if f.Name == ConfigFlag || slices.Contains(o.CommandLineOnly, f.Name) {
			notes = append(notes, "command line only")
		} else {
			notes = append(notes, "env "+EnvName(f.Name))
		}
		if len(notes) > 0 {
			fmt.Fprintf(w, "        (%s)\n", strings.Join(notes, "; "))
		}
	})
	fmt.Fprintf(w, `
Every flag can also be set in the environment as %sFLAG (--max-inflight
as %sMAX_INFLIGHT) or in the YAML file given with --config, whose keys
are the flag names (max-inflight: 100; lists as YAML lists or comma-separated).
A flag on the command line wins over the environment, which wins over the file.
`, EnvPrefix, EnvPrefix)
}

func isZero(def string) bool {
	switch def {
	case "", "0", "0s", "false", "[]":
		return true
	}
	if f, err := strconv.ParseFloat(def, 64); err == nil && f == 0 {
		return true
	}
	return false
}
