package k8s

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// repoRoot is the connectshop module, two directories up.
const repoRoot = "../.."

// A binary is a command of the repository, built, with the flags it defines.
type binary struct {
	path  string
	flags map[string]bool // name without the dash: whether it takes a value (false: a bool flag)
}

var built struct {
	once sync.Once
	dir  string
	bins map[string]*binary
	err  error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if built.dir != "" {
		os.RemoveAll(built.dir)
	}
	os.Exit(code)
}

// binaries builds the repository's commands named by the Deployments'
// containers (./cmd/NAME), once, and reads their flags from their -h output.
func binaries(t *testing.T) map[string]*binary {
	t.Helper()
	manifests := loadManifests(t)
	built.once.Do(func() {
		var names []string
		for _, m := range manifests {
			if d, ok := deployment(m); ok {
				for _, c := range d.Spec.Template.Spec.Containers {
					if !slices.Contains(names, c.Name) {
						names = append(names, c.Name)
					}
				}
			}
		}
		built.bins, built.err = build(names)
	})
	if built.err != nil {
		t.Fatal(built.err)
	}
	return built.bins
}

func build(names []string) (map[string]*binary, error) {
	dir, err := os.MkdirTemp("", "connectshop-k8s-")
	if err != nil {
		return nil, err
	}
	built.dir = dir
	args := []string{"build", "-o", dir + string(filepath.Separator)}
	for _, name := range names {
		if _, err := os.Stat(filepath.Join(repoRoot, "cmd", name, "main.go")); err != nil {
			return nil, fmt.Errorf("container %q: no command ./cmd/%s in the repository to run in it (a container is named after its binary): %w", name, name, err)
		}
		args = append(args, "./cmd/"+name)
	}
	cmd := exec.Command("go", args...)
	cmd.Dir = repoRoot
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	bins := make(map[string]*binary)
	for _, name := range names {
		b := &binary{path: filepath.Join(dir, name)}
		out, err := b.run(context.Background(), "-h")
		if !strings.Contains(out, "flag: help requested") {
			return nil, fmt.Errorf("%s -h: %v\n%s", name, err, out)
		}
		if b.flags = parseUsage(out); len(b.flags) == 0 {
			return nil, fmt.Errorf("%s -h lists no flags:\n%s", name, out)
		}
		bins[name] = b
	}
	return bins, nil
}

// run runs the binary with args and an empty environment (the commands
// default some flags from it), for at most 20 s, and returns its output.
func (b *binary) run(ctx context.Context, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, b.path, args...)
	cmd.Env = []string{}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// usageLine matches a flag in the flag package's usage: "  -name type" for a
// flag that takes a value, "  -name" for a bool flag (a one-letter flag has
// its usage after a tab on the same line).
var usageLine = regexp.MustCompile(`^  -([^\s=]+)(?: ([^\s]+))?(?:\t.*)?$`)

// parseUsage returns the flags in the flag package's usage text.
func parseUsage(usage string) map[string]bool {
	flags := make(map[string]bool)
	sc := bufio.NewScanner(strings.NewReader(usage))
	for sc.Scan() {
		if m := usageLine.FindStringSubmatch(sc.Text()); m != nil {
			flags[m[1]] = m[2] != ""
		}
	}
	return flags
}

// parseArgs parses args as the flag package would with the flags in defs,
// and returns each flag's value ("true" for a bool flag given bare). It
// reports what the flag package would reject or silently get wrong: an
// undefined flag, a missing value, a flag given twice (the last would win),
// and a non-flag argument (parsing stops there, so every flag after it would
// be ignored; the commands take no arguments).
func parseArgs(args []string, defs map[string]bool) (map[string]string, []error) {
	flags := make(map[string]string)
	var errs []error
	for i := 0; i < len(args); i++ {
		arg := args[i]
		if arg == "--" || !strings.HasPrefix(arg, "-") || arg == "-" {
			errs = append(errs, fmt.Errorf("argument %d, %q, is not a flag: the flag package stops parsing there and ignores the rest", i, arg))
			break
		}
		name := strings.TrimPrefix(strings.TrimPrefix(arg, "-"), "-")
		name, value, hasValue := strings.Cut(name, "=")
		takesValue, ok := defs[name]
		switch {
		case !ok:
			errs = append(errs, fmt.Errorf("-%s: the binary defines no such flag", name))
			continue
		case takesValue && !hasValue:
			if i+1 == len(args) {
				errs = append(errs, fmt.Errorf("-%s: no value", name))
				continue
			}
			i++
			value = args[i]
		case !takesValue && !hasValue:
			value = "true"
		case !takesValue:
			if _, err := strconv.ParseBool(value); err != nil {
				errs = append(errs, fmt.Errorf("-%s=%s: not a bool", name, value))
			}
		}
		if _, dup := flags[name]; dup {
			errs = append(errs, fmt.Errorf("-%s given twice: the last one wins", name))
		}
		flags[name] = value
	}
	return flags, errs
}

func TestParseArgs(t *testing.T) {
	defs := map[string]bool{"addr": true, "insecure": false, "n": true}
	got, errs := parseArgs([]string{"-addr", ":1", "--insecure", "-n=3"}, defs)
	if len(errs) != 0 || got["addr"] != ":1" || got["insecure"] != "true" || got["n"] != "3" {
		t.Errorf("got %v, %v", got, errs)
	}
	for _, args := range [][]string{
		{"-nope", "x"},
		{"-addr"},
		{"-addr", ":1", "-addr", ":2"},
		{"-addr", ":1", "extra", "-n", "3"},
		{"-insecure", "false"}, // "false" is an argument, not the bool's value
		{"-insecure=maybe"},
	} {
		if _, errs := parseArgs(args, defs); len(errs) == 0 {
			t.Errorf("%q: no error", args)
		}
	}
	usage := "Usage of x:\n  -addr string\n    \taddress\n  -insecure\n    \tno key\n  -x\tone letter\n  -n int\n    \tcount (default 1)\n"
	if got, want := parseUsage(usage), map[string]bool{"addr": true, "insecure": false, "x": false, "n": true}; !mapsEqual(got, want) {
		t.Errorf("parseUsage: got %v, want %v", got, want)
	}
}

func mapsEqual[K, V comparable](a, b map[K]V) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// serviceNames returns the fully-qualified names of the RPC services the
// repository generates (the XServiceName constants of gen/**/*.connect.go),
// by the first part of their protobuf package: "orders" →
// ["orders.v1.OrderService"].
func serviceNames(t *testing.T) map[string][]string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(repoRoot, "gen", "*", "*", "*", "*.connect.go"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no generated Connect code under %s/gen: %v", repoRoot, err)
	}
	names := make(map[string][]string)
	fset := token.NewFileSet()
	for _, file := range files {
		f, err := parser.ParseFile(fset, file, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range constants(f) {
			if !strings.HasSuffix(c.name, "ServiceName") {
				continue
			}
			s, err := strconv.Unquote(c.value)
			if err != nil {
				continue // not a string literal
			}
			pkg, _, _ := strings.Cut(s, ".")
			names[pkg] = append(names[pkg], s)
		}
	}
	if len(names) == 0 {
		t.Fatalf("no ...ServiceName constants in %s", strings.Join(files, ", "))
	}
	return names
}

type constant struct {
	name  string
	value string // the literal's source text
}

// constants returns the package-level constants of f whose value is one
// literal, or one literal times a selector (10 * time.Second).
func constants(f *ast.File) []constant {
	var out []constant
	for _, decl := range f.Decls {
		gd, ok := decl.(*ast.GenDecl)
		if !ok || gd.Tok != token.CONST {
			continue
		}
		for _, spec := range gd.Specs {
			vs := spec.(*ast.ValueSpec)
			for i, name := range vs.Names {
				if i >= len(vs.Values) {
					continue
				}
				switch v := vs.Values[i].(type) {
				case *ast.BasicLit:
					out = append(out, constant{name.Name, v.Value})
				case *ast.BinaryExpr:
					lit, ok1 := v.X.(*ast.BasicLit)
					sel, ok2 := v.Y.(*ast.SelectorExpr)
					if ok1 && ok2 && v.Op == token.MUL {
						if pkg, ok := sel.X.(*ast.Ident); ok {
							out = append(out, constant{name.Name, lit.Value + " * " + pkg.Name + "." + sel.Sel.Name})
						}
					}
				}
			}
		}
	}
	return out
}

// shutdownTimeout returns internal/rpc.ShutdownTimeout, how long a server
// waits for calls in flight after SIGTERM, read from its source.
func shutdownTimeout(t *testing.T) time.Duration {
	t.Helper()
	const file = repoRoot + "/internal/rpc/server.go"
	f, err := parser.ParseFile(token.NewFileSet(), file, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	units := map[string]time.Duration{"time.Millisecond": time.Millisecond, "time.Second": time.Second, "time.Minute": time.Minute}
	for _, c := range constants(f) {
		if c.name != "ShutdownTimeout" {
			continue
		}
		n, unit, ok := strings.Cut(c.value, " * ")
		i, err := strconv.Atoi(n)
		if u, known := units[unit]; ok && err == nil && known {
			return time.Duration(i) * u
		}
		t.Fatalf("%s: ShutdownTimeout = %s: cannot evaluate it, teach shutdownTimeout how", file, c.value)
	}
	t.Fatalf("%s: no constant ShutdownTimeout", file)
	return 0
}

// TestFlagsExist checks every container's args against its binary: each
// flag is one the binary defines, takes the value it is given, and comes
// once; then the binary itself parses the args (with $(VAR) references
// replaced by the literal env values, or a placeholder) followed by -h, which
// makes it stop after parsing instead of serving.
func TestFlagsExist(t *testing.T) {
	bins := binaries(t)
	for _, m := range loadManifests(t) {
		d, ok := deployment(m)
		if !ok {
			continue
		}
		for _, c := range d.Spec.Template.Spec.Containers {
			t.Run(d.Name+"/"+c.Name, func(t *testing.T) {
				b := bins[c.Name]
				if len(c.Command) != 0 {
					t.Errorf("command %q: leave it to the image, whose entrypoint is the binary, and give flags in args", c.Command)
				}
				_, errs := parseArgs(c.Args, b.flags)
				for _, err := range errs {
					t.Errorf("%s: %v", m.source, err)
				}
				if len(errs) != 0 {
					return // the binary could start serving on a stray argument
				}
				args := make([]string, len(c.Args))
				for i, a := range c.Args {
					args[i] = expandEnv(a, c)
				}
				out, err := b.run(t.Context(), append(args, "-h")...)
				if !strings.Contains(out, "flag: help requested") || strings.Contains(out, "invalid") || strings.Contains(out, "not defined") {
					t.Errorf("%s %s -h: %v\n%s", c.Name, strings.Join(args, " "), err, out)
				}
			})
		}
	}
}

// envRef matches a $(VAR) reference, which the kubelet expands in command
// and args from the container's env ($$ escapes a dollar).
var envRef = regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)

// envRefs returns the variables s refers to.
func envRefs(s string) []string {
	var names []string
	for _, m := range envRef.FindAllStringSubmatch(strings.ReplaceAll(s, "$$", ""), -1) {
		names = append(names, m[1])
	}
	return names
}

// expandEnv replaces the $(VAR) references in s with the literal value of
// VAR in c's env, or with a placeholder where the value comes from
// elsewhere (a Secret, the downward API).
func expandEnv(s string, c corev1.Container) string {
	return envRef.ReplaceAllStringFunc(s, func(ref string) string {
		name := envRef.FindStringSubmatch(ref)[1]
		for _, e := range c.Env {
			if e.Name == name && e.ValueFrom == nil {
				return e.Value
			}
		}
		return "placeholder-" + strings.ToLower(name)
	})
}

var errNoSuchFlag = errors.New("no such flag")

// flagValue returns the value of flag name in c's args.
func flagValue(c corev1.Container, defs map[string]bool, name string) (string, error) {
	flags, errs := parseArgs(c.Args, defs)
	if err := errors.Join(errs...); err != nil {
		return "", err
	}
	v, ok := flags[name]
	if !ok {
		return "", fmt.Errorf("-%s: %w in the args", name, errNoSuchFlag)
	}
	return v, nil
}
