package checksums

import (
	"errors"
	"strings"
	"testing"
)

const (
	h1 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
	h2 = "60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752"
)

func parse(t *testing.T, list string) (*Set, []*LineError) {
	t.Helper()
	s, bad, err := Parse(strings.NewReader(list))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return s, bad
}

func TestParseFormats(t *testing.T) {
	list := "\ufeff" + h1 + "  a.txt\n" +
		strings.ToUpper(h2) + " *bin/b.iso\r\n" +
		"SHA256 (dir/c d.txt) = " + h1 + "\n" +
		"SHA256 (odd) = name) = " + h2 + "\n" +
		"\\" + h1 + "  back\\\\slash\\nnewline\n" +
		h2 + "  ./dot/e\n" +
		h1 + " single\n" +
		"# a comment\n\n" +
		"MD5 (x) = d41d8cd98f00b204e9800998ecf8427e\n" +
		"nothex  x\n" +
		strings.Repeat("a", 64) + "  ../up\n"
	_, bad := parse(t, list)
	for p, want := range map[string]string{
		"a.txt":                h1,
		"host/a.txt":           h1,
		"host/bin/b.iso":       h2,
		"b.iso":                "", // NAME bin/b.iso is not a suffix of b.iso
		"h/xbin/b.iso":         "", // whole components only
		"h/dir/c d.txt":        h1,
		"odd) = name":          h2,
		"back\\slash\nnewline": h1,
		"h/dot/e":              h2,
		"single":               h1,
		"h/unlisted":           "",
	} {
		s, _ := parse(t, list) // a set per path: two paths matching one NAME are ambiguous
		got, err := s.Lookup(p)
		if err != nil || got != want {
			t.Errorf("Lookup(%q) = %q, %v; want %q", p, got, err, want)
		}
	}
	var lines []int
	for _, b := range bad {
		lines = append(lines, b.Line)
	}
	if len(bad) != 3 || bad[0].Line != 10 || bad[1].Line != 11 || bad[2].Line != 12 {
		t.Errorf("bad lines %v (%v), want 10, 11, 12", lines, bad)
	}
	if !strings.Contains(bad[0].Error(), "checksums line 10: MD5") {
		t.Errorf("bad line message %q", bad[0])
	}
}

func TestParseEmpty(t *testing.T) {
	if _, _, err := Parse(strings.NewReader("# nothing\n\n")); err == nil {
		t.Fatal("a list without records parsed")
	}
}

// One bare NAME and two entries that would both match it: neither is given
// the hash (a guess), whether the paths were noted first or come in turn.
func TestAmbiguous(t *testing.T) {
	t.Run("noted first", func(t *testing.T) {
		s, _ := parse(t, h1+"  x.iso\n")
		s.Note("mirror1/x.iso")
		s.Note("mirror2/x.iso")
		for _, p := range []string{"mirror1/x.iso", "mirror2/x.iso"} {
			if _, err := s.Lookup(p); !errors.Is(err, ErrAmbiguous) {
				t.Errorf("Lookup(%q): %v, want ambiguous", p, err)
			}
		}
	})
	t.Run("streamed", func(t *testing.T) {
		s, _ := parse(t, h1+"  x.iso\n")
		if got, err := s.Lookup("mirror1/x.iso"); got != h1 || err != nil {
			t.Errorf("first: %q %v", got, err)
		}
		if got, err := s.Lookup("mirror1/x.iso"); got != h1 || err != nil {
			t.Errorf("the same path again: %q %v", got, err)
		}
		_, err := s.Lookup("mirror2/x.iso")
		if !errors.Is(err, ErrAmbiguous) || !strings.Contains(err.Error(), "mirror1/x.iso") {
			t.Errorf("second: %v, want ambiguous naming the first", err)
		}
	})
	t.Run("two names, two hashes", func(t *testing.T) {
		s, _ := parse(t, h1+"  x.iso\n"+h2+"  a/x.iso\n")
		if _, err := s.Lookup("h/a/x.iso"); !errors.Is(err, ErrAmbiguous) {
			t.Errorf("%v, want ambiguous", err)
		}
	})
	t.Run("two names, one hash", func(t *testing.T) {
		s, _ := parse(t, h1+"  x.iso\n"+h1+"  a/x.iso\n")
		if got, err := s.Lookup("h/a/x.iso"); got != h1 || err != nil {
			t.Errorf("%q %v", got, err)
		}
	})
	t.Run("one name, two hashes", func(t *testing.T) {
		s, _ := parse(t, h1+"  x.iso\n"+h2+"  x.iso\n")
		if _, err := s.Lookup("x.iso"); !errors.Is(err, ErrAmbiguous) {
			t.Errorf("%v, want ambiguous", err)
		}
	})
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{
		h1 + "  a.txt\n",
		"\\" + h1 + "  a\\\\b\\n\n",
		"SHA256 (a) = " + h1 + "\n",
		"SHA256(a) = " + h1,
		h1 + " *./x/../y\n" + h2 + "  /abs/z\r\n",
		"MD5 (x) = 00\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, list string) {
		s, bad, err := Parse(strings.NewReader(list))
		for _, b := range bad {
			if b.Line < 1 || b.Reason == "" {
				t.Fatalf("bad line without number or reason: %+v", b)
			}
		}
		if err != nil {
			return
		}
		for _, recs := range s.byBase {
			for _, r := range recs {
				if r.name == "" || strings.HasPrefix(r.name, "/") || strings.HasPrefix(r.name, "../") || r.name == ".." {
					t.Fatalf("name %q escapes", r.name)
				}
				if r.hex != "" && len(r.hex) != 64 {
					t.Fatalf("hex %q", r.hex)
				}
				got, err := s.Lookup("host/" + r.name)
				if err == nil && r.hex != "" && got != r.hex {
					t.Fatalf("Lookup(host/%s) = %q, want %q", r.name, got, r.hex)
				}
			}
		}
	})
}

// A publisher's name with a character the layouts escape on disk (":", "%",
// "\\", a newline) matches the file haul saved it as, as well as an out= path
// written as is; sha256sum --tag's escaped BSD lines parse.
func TestNamesAsSavedOnDisk(t *testing.T) {
	for _, tc := range []struct{ list, path string }{
		{h1 + "  logs/2024-01-01T00:00.log\n", "host/logs/2024-01-01T00%3A00.log"},
		{h1 + "  logs/2024-01-01T00:00.log\n", "mine/logs/2024-01-01T00:00.log"},
		{h1 + "  100%.txt\n", "host/100%25.txt"},
		{"\\" + h1 + "  a\\\\b\n", "host/a%5Cb"},
		{"\\" + h1 + "  two\\nlines\n", "host/two%0Alines"},
		{"\\SHA256 (a\\\\b) = " + h1 + "\n", "host/a%5Cb"},
		{h1 + "  x.part\n", "host/x%2Epart"},
	} {
		s, bad := parse(t, tc.list)
		if len(bad) > 0 {
			t.Errorf("%q: bad lines %v", tc.list, bad[0])
			continue
		}
		if got, err := s.Lookup(tc.path); got != h1 || err != nil {
			t.Errorf("list %q, path %q: %q %v", tc.list, tc.path, got, err)
		}
	}
}
