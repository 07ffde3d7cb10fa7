package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"

	"github.com/haul/haul/download"
)

// manifest writes one JSON line per finished entry, as it finishes, so that a
// run killed half-way still leaves a manifest of what it did.
type manifest struct {
	mu   sync.Mutex
	w    io.Writer
	c    io.Closer // nil for stdout
	f    *os.File  // the file, to cut a torn line off; nil for stdout
	size int64     // bytes of whole lines written to f
	err  error
	stop func(error) // called once, on the first write error
}

// errManifest is the cause of a run stopped because its manifest failed.
var errManifest = errors.New("manifest not writable")

func openManifest(name string, stdout io.Writer) (*manifest, error) {
	switch name {
	case "":
		return &manifest{}, nil
	case "-":
		return &manifest{w: stdout}, nil
	}
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, fmt.Errorf("--manifest: %w", err)
	}
	return &manifest{w: f, c: f, f: f}, nil
}

func (m *manifest) write(r *download.Result) {
	if m.w == nil {
		return
	}
	b, err := json.Marshal(r)
	if err != nil {
		panic(err) // Result always marshals
	}
	b = append(b, '\n')
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.err != nil {
		return
	}
	n, err := m.w.Write(b)
	m.size += int64(n)
	if err != nil {
		m.err = err
		if m.stop != nil {
			m.stop(errManifest)
		}
		if m.f != nil && n < len(b) {
			// A line cut short (disk full) would make the whole file unreadable
			// as JSON lines: cut it off, keeping every whole line.
			m.size -= int64(n)
			m.f.Truncate(m.size)
		}
	}
}

func (m *manifest) close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.c != nil {
		if err := m.c.Close(); m.err == nil {
			m.err = err
		}
		m.c = nil
	}
	return m.err
}
