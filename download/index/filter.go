package index

import (
	"fmt"
	"path"
	"strings"
)

// Filter keeps the files whose names --accept and --reject allow, as wget's
// -A and -R do: each is a comma-separated list; an element holding a wildcard
// ('*', '?', '[' or ']') is a glob (path.Match syntax, which is fnmatch's for a
// name without '/'), any other is a suffix ("iso" keeps "a.iso", and "bigiso"
// too, as in wget); matching is case-sensitive. A name passes when the accept
// list is empty or any of it matches, and none of the reject list matches:
// reject wins. The name is the file's last path segment, unescaped
// (Link.Name). Directories are always walked: the filter is for files only.
type Filter struct {
	accept, reject []pattern
}

type pattern struct {
	s    string
	glob bool
}

// NewFilter parses the --accept and --reject lists; "" is an empty list.
// Elements are trimmed of spaces and empty ones dropped ("iso, txt,").
func NewFilter(accept, reject string) (*Filter, error) {
	a, err := patterns(accept)
	if err != nil {
		return nil, fmt.Errorf("--accept: %w", err)
	}
	r, err := patterns(reject)
	if err != nil {
		return nil, fmt.Errorf("--reject: %w", err)
	}
	return &Filter{accept: a, reject: r}, nil
}

func patterns(list string) ([]pattern, error) {
	var ps []pattern
	for _, s := range strings.Split(list, ",") {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		p := pattern{s: s, glob: strings.ContainsAny(s, "*?[]")}
		if p.glob {
			// path.Match reports a malformed pattern only when it gets to the
			// bad part: check it whole now rather than on some name later.
			if _, err := path.Match(s, ""); err != nil {
				return nil, fmt.Errorf("bad pattern %q: %w", s, err)
			}
		}
		ps = append(ps, p)
	}
	return ps, nil
}

func (p pattern) match(name string) bool {
	if !p.glob {
		return strings.HasSuffix(name, p.s)
	}
	ok, _ := path.Match(p.s, name) // checked in patterns
	return ok
}

// Match reports whether a file named name is kept. A nil Filter keeps all.
func (f *Filter) Match(name string) bool {
	if f == nil {
		return true
	}
	if len(f.accept) > 0 && !matchAny(f.accept, name) {
		return false
	}
	return !matchAny(f.reject, name)
}

func matchAny(ps []pattern, name string) bool {
	for _, p := range ps {
		if p.match(name) {
			return true
		}
	}
	return false
}
