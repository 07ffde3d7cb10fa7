package httpclient

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"strings"
)

// Netrc holds the credentials of a .netrc file (as curl --netrc and wget
// read it): per machine a login and a password, and an optional default.
type Netrc struct {
	machines map[string]netrcEntry // by lower-case host name
	def      *netrcEntry
}

type netrcEntry struct{ login, password string }

// ParseNetrc reads a .netrc file: whitespace-separated tokens "machine NAME",
// "default", "login L", "password P", "account A" (ignored) and "macdef NAME"
// (whose definition, up to an empty line, is skipped). A token may be quoted
// with double quotes, with \" and \\ inside, as curl allows. The first entry
// for a machine wins, as with curl.
func ParseNetrc(r io.Reader) (*Netrc, error) {
	toks, err := netrcTokens(r)
	if err != nil {
		return nil, err
	}
	n := &Netrc{machines: map[string]netrcEntry{}}
	var cur *netrcEntry
	var name string
	var isDefault bool
	flush := func() {
		if cur == nil {
			return
		}
		if isDefault {
			if n.def == nil {
				e := *cur
				n.def = &e
			}
		} else if _, ok := n.machines[name]; !ok {
			n.machines[name] = *cur
		}
		cur = nil
	}
	for i := 0; i < len(toks); i++ {
		t := toks[i]
		next := func() (string, error) {
			if i+1 >= len(toks) || toks[i+1].macdef {
				return "", fmt.Errorf("netrc line %d: %q needs a value", t.line, t.s)
			}
			i++
			return toks[i].s, nil
		}
		switch {
		case t.macdef:
			continue
		case t.s == "machine":
			flush()
			v, err := next()
			if err != nil {
				return nil, err
			}
			cur, name, isDefault = &netrcEntry{}, strings.ToLower(v), false
		case t.s == "default":
			flush()
			cur, name, isDefault = &netrcEntry{}, "", true
		case t.s == "login" || t.s == "password" || t.s == "account":
			v, err := next()
			if err != nil {
				return nil, err
			}
			if cur == nil {
				return nil, fmt.Errorf("netrc line %d: %s before any machine", t.line, t.s)
			}
			switch t.s {
			case "login":
				cur.login = v
			case "password":
				cur.password = v
			}
		default:
			return nil, fmt.Errorf("netrc line %d: unknown token %q", t.line, t.s)
		}
	}
	flush()
	return n, nil
}

// Lookup returns the credentials for host (without its port), the default's
// if it has none of its own.
func (n *Netrc) Lookup(host string) (login, password string, ok bool) {
	if e, found := n.machines[strings.ToLower(host)]; found {
		return e.login, e.password, true
	}
	if n.def != nil {
		return n.def.login, n.def.password, true
	}
	return "", "", false
}

type netrcToken struct {
	s      string
	line   int
	macdef bool // a macro definition's body: skipped
}

// netrcTokens splits a .netrc into tokens; a "macdef NAME" line's following
// lines, up to an empty one, are one skipped token.
func netrcTokens(r io.Reader) ([]netrcToken, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	var toks []netrcToken
	inMacro := false
	for line := 1; sc.Scan(); line++ {
		text := sc.Text()
		if inMacro {
			if strings.TrimSpace(text) == "" {
				inMacro = false
			}
			continue
		}
		if bytes.IndexByte(sc.Bytes(), 0) >= 0 {
			return nil, fmt.Errorf("netrc line %d: NUL byte", line)
		}
		rest := text
		for {
			rest = strings.TrimLeft(rest, " \t\r")
			if rest == "" || rest[0] == '#' {
				break
			}
			var tok string
			if rest[0] == '"' {
				var b strings.Builder
				i := 1
				for ; i < len(rest) && rest[i] != '"'; i++ {
					if rest[i] == '\\' && i+1 < len(rest) {
						i++
					}
					b.WriteByte(rest[i])
				}
				if i >= len(rest) {
					return nil, fmt.Errorf("netrc line %d: unterminated quote", line)
				}
				tok, rest = b.String(), rest[i+1:]
			} else {
				end := strings.IndexAny(rest, " \t\r")
				if end < 0 {
					end = len(rest)
				}
				tok, rest = rest[:end], rest[end:]
			}
			toks = append(toks, netrcToken{s: tok, line: line})
			if len(toks) >= 2 && toks[len(toks)-2].s == "macdef" && !toks[len(toks)-2].macdef {
				toks[len(toks)-2].macdef, toks[len(toks)-1].macdef = true, true
				inMacro = true
				break
			}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return toks, nil
}
