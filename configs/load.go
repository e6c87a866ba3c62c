package configs

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"
)

// Load reads the YAML file at path, expands ${NAME} and ${NAME:-default}
// from getenv (pass os.LookupEnv), decodes it strictly, fills defaults and
// validates it. The error lists every problem found, one per line, each naming
// its field; it never contains a password.
func Load(path string, getenv func(string) (string, bool)) (Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("config: %w", err)
	}
	cfg, err := Parse(data, getenv)
	if err != nil {
		return Config{}, fmt.Errorf("config %s: %w", path, err)
	}
	return cfg, nil
}

// Parse is Load for YAML already in memory.
//
// Expansion happens on decoded scalar values, never on the YAML text, so an
// environment value is always literal text: it cannot add keys, end a quoted
// string or start a comment. It applies to every value (not to keys); $${ is a
// literal ${. ${NAME:-default} uses the default when NAME is unset or empty;
// ${NAME} with NAME unset is a problem naming NAME and the field.
func Parse(data []byte, getenv func(string) (string, bool)) (cfg Config, err error) {
	var scrub scrubber
	scrub.add(secretsIn(string(data))...)
	defer func() {
		// The YAML library is third-party code reading outside input; a panic
		// in it must be an error, not a crash of the process reading config.
		if r := recover(); r != nil {
			cfg, err = Config{}, scrub.join([]string{fmt.Sprintf("yaml: cannot decode: %v", r)})
		}
	}()

	file, err := parser.ParseBytes(data, 0)
	if err != nil {
		return Config{}, scrub.join([]string{formatYAMLError(err, nil)})
	}
	var body ast.Node
	for i, doc := range file.Docs {
		if doc == nil || doc.Body == nil {
			continue
		}
		if body != nil {
			return Config{}, scrub.join([]string{fmt.Sprintf("document %d: want a single YAML document", i+1)})
		}
		body = doc.Body
	}
	if body == nil {
		return Config{}, scrub.join([]string{"config is empty"})
	}

	paths := map[position]string{}
	ast.Walk(pathRecorder(paths), body)
	exp := &expander{getenv: getenv, scrub: &scrub}
	ast.Walk(exp, body)

	if err := yaml.NodeToValue(body, &cfg, yaml.Strict()); err != nil {
		return Config{}, scrub.join(append(exp.problems, formatYAMLError(err, paths)))
	}
	cfg = cfg.WithDefaults()
	problems := append(exp.problems, cfg.problems()...)
	scrub.add(cfg.secrets()...)
	if err := scrub.join(problems); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

type position struct{ line, column int }

// pathRecorder maps token positions to field paths, so decode errors, which
// carry only a token, can name the field.
type pathRecorder map[position]string

func (p pathRecorder) Visit(n ast.Node) ast.Visitor {
	if n == nil || n.GetToken() == nil {
		return p
	}
	pos := position{n.GetToken().Position.Line, n.GetToken().Position.Column}
	path := fieldPath(n.GetPath())
	// A mapping shares its first key's position; the deeper path names the
	// field better.
	if len(path) >= len(p[pos]) {
		p[pos] = path
	}
	return p
}

// fieldPath turns a YAML path ($.shards[0].dsn) into a field path
// (shards[0].dsn).
func fieldPath(yamlPath string) string {
	p := strings.TrimPrefix(strings.TrimPrefix(yamlPath, "$"), ".")
	return p
}

// formatYAMLError names the line and, when known, the field of a parse or
// decode error. It never includes the library's source excerpt, which would
// print the surrounding lines of the file: passwords included.
func formatYAMLError(err error, paths map[position]string) string {
	var yerr yaml.Error
	if !errors.As(err, &yerr) || yerr.GetToken() == nil {
		return "yaml: " + err.Error()
	}
	tk := yerr.GetToken()
	msg := yerr.GetMessage()
	var typeErr *yaml.TypeError
	if errors.As(err, &typeErr) && typeErr.DstType != nil && typeErr.SrcType != nil {
		msg = fmt.Sprintf("want %s, got %s", typeErr.DstType, typeErr.SrcType)
	}
	var unknown *yaml.UnknownFieldError
	if errors.As(err, &unknown) {
		msg = "unknown field"
	}
	where := fmt.Sprintf("line %d", tk.Position.Line)
	if path := paths[position{tk.Position.Line, tk.Position.Column}]; path != "" {
		return fmt.Sprintf("%s (%s): %s", path, where, msg)
	}
	return fmt.Sprintf("%s: %s", where, msg)
}

// expander expands environment references in every scalar value, collecting
// problems instead of stopping at the first.
type expander struct {
	getenv   func(string) (string, bool)
	scrub    *scrubber
	problems []string
}

func (e *expander) Visit(n ast.Node) ast.Visitor {
	switch n := n.(type) {
	case *ast.MappingValueNode:
		// Values only: keys are never expanded.
		if n.Value != nil {
			ast.Walk(e, n.Value)
		}
		return nil
	case *ast.AnchorNode:
		// Nor are anchor names, alias names or tags: only what they label.
		if n.Value != nil {
			ast.Walk(e, n.Value)
		}
		return nil
	case *ast.TagNode:
		if n.Value != nil {
			ast.Walk(e, n.Value)
		}
		return nil
	case *ast.AliasNode:
		return nil
	case *ast.StringNode:
		if !strings.Contains(n.Value, "${") {
			return e
		}
		value, problems := expand(n.Value, e.getenv)
		n.Value = value
		e.scrub.add(secretsIn(value)...)
		where := fmt.Sprintf("line %d", n.GetToken().Position.Line)
		if path := fieldPath(n.GetPath()); path != "" {
			where = fmt.Sprintf("%s (%s)", path, where)
		}
		for _, p := range problems {
			e.problems = append(e.problems, where+": "+p)
		}
	}
	return e
}

// expand replaces ${NAME} and ${NAME:-default} in s. The problems it reports
// name variables, never their values.
func expand(s string, getenv func(string) (string, bool)) (string, []string) {
	var b strings.Builder
	var problems []string
	for {
		i := strings.Index(s, "${")
		if i < 0 {
			b.WriteString(s)
			return b.String(), problems
		}
		if i > 0 && s[i-1] == '$' { // $${ is a literal ${
			b.WriteString(s[:i-1] + "${")
			s = s[i+2:]
			continue
		}
		b.WriteString(s[:i])
		end := strings.IndexByte(s[i:], '}')
		if end < 0 {
			problems = append(problems, "unterminated ${ (want ${NAME} or ${NAME:-default})")
			b.WriteString(s[i:])
			return b.String(), problems
		}
		ref := s[i+2 : i+end]
		s = s[i+end+1:]
		name, def, hasDefault := strings.Cut(ref, ":-")
		if !validEnvName(name) {
			problems = append(problems, fmt.Sprintf("invalid environment variable name %q (want [A-Za-z_][A-Za-z0-9_]*)", name))
			continue
		}
		value, set := getenv(name)
		switch {
		case hasDefault && value == "":
			value = def
		case !set:
			problems = append(problems, fmt.Sprintf("environment variable %s is not set and has no default", name))
		}
		b.WriteString(value)
	}
}

func validEnvName(name string) bool {
	if name == "" {
		return false
	}
	for i := range len(name) {
		c := name[i]
		letter := c == '_' || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z')
		if !letter && (i == 0 || c < '0' || c > '9') {
			return false
		}
	}
	return true
}

// UnmarshalYAML accepts `catalog: <shard name>` and `catalog: {dsn: ...}`.
func (c *Catalog) UnmarshalYAML(node ast.Node) error {
	switch n := node.(type) {
	case *ast.NullNode:
		*c = Catalog{}
		return nil
	case *ast.StringNode:
		*c = Catalog{Shard: n.Value}
		return nil
	case *ast.MappingNode, *ast.MappingValueNode:
		var own struct {
			DSN DSN `yaml:"dsn"`
		}
		if err := yaml.NodeToValue(node, &own, yaml.Strict()); err != nil {
			return err
		}
		*c = Catalog{DSN: own.DSN}
		return nil
	case ast.ScalarNode:
		*c = Catalog{Shard: n.GetToken().Value}
		return nil
	default:
		return &yaml.SyntaxError{Message: "want a shard name or {dsn: ...}", Token: node.GetToken()}
	}
}
