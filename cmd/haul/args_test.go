package main

import (
	"slices"
	"strings"
	"testing"
)

func TestFlagsFirst(t *testing.T) {
	fl := flags()
	for _, tc := range []struct{ in, want string }{
		{"haul", "haul"},
		{"haul -q", "haul -q"},
		{"haul -d out u1", "haul -d out -- u1"},
		{"haul u1 -d out", "haul -d out -- u1"},
		{"haul u1 -q u2 --dir=out -j 4 u3", "haul -q --dir=out -j 4 -- u1 u2 u3"},
		{"haul u1 -i - -q", "haul -i - -q -- u1"},       // a value that looks like stdin
		{"haul u1 -H X-A: -k", "haul -H X-A: -k -- u1"}, // a value is taken whatever it is
		{"haul - u1", "haul -- - u1"},                   // "-" alone is an argument
		{"haul u1 -- -d u2", "haul -- u1 -d u2"},        // after --, all positional
		{"haul -d o u1 -- u2", "haul -d o -- u1 u2"},    // -- after a URL is not a URL
		{"haul u1 --nope u2", "haul --nope -- u1 u2"},   // unknown: moved, left to the parser
		{"haul u1 --http1.1 --sha256 u2", "haul --http1.1 --sha256 -- u1 u2"},
		{"haul u1 --help", "haul --help"}, // help, not a help topic named u1
		{"haul -h u1 -d o", "haul -h -d o"},
	} {
		got, err := flagsFirst(strings.Fields(tc.in), fl)
		if err != nil || strings.Join(got, " ") != tc.want {
			t.Errorf("flagsFirst(%q) = %q, %v; want %q", tc.in, strings.Join(got, " "), err, tc.want)
		}
	}
	// A value flag at the end never takes a URL for its value.
	for _, in := range []string{"haul u1 -d", "haul u1 -H", "haul -q u1 --manifest"} {
		if got, err := flagsFirst(strings.Fields(in), fl); err == nil {
			t.Errorf("flagsFirst(%q) = %q, want an error", in, got)
		}
	}
	in := strings.Fields("haul u1 -d out")
	orig := slices.Clone(in)
	flagsFirst(in, fl)
	if !slices.Equal(in, orig) {
		t.Errorf("flagsFirst changed its input: %q", in)
	}
}
