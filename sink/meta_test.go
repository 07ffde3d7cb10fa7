package sink

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"
)

// commitErr commits w and returns the commit's error.
func commitErr(w Writer) error {
	ch := make(chan error, 1)
	w.Commit(func(err error) { ch <- err })
	return <-ch
}

// The validators of the response a file was written from reach its final name
// (unnamed small files, named big ones, compressed ones), for --update.
func TestCacheValidatorsRecorded(t *testing.T) {
	const lm = "Mon, 02 Jan 2026 03:04:05 GMT"
	lmTime := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, tc := range []struct {
		name string
		size int
		gz   bool
	}{{"small", 100, false}, {"big", 200 << 10, false}, {"compressed", 100 << 10, true}} {
		t.Run(tc.name, func(t *testing.T) {
			f, _ := newSink(t, FileOptions{NoSync: true})
			var s Sink = f
			if tc.gz {
				c, err := NewCompressed(f, Gzip, 0)
				if err != nil {
					t.Fatal(err)
				}
				s = c
			}
			w, err := s.Create("d/a", "http://h/a")
			if err != nil {
				t.Fatal(err)
			}
			w.SetValidator(`"v1"`, int64(tc.size))
			w.SetCacheValidators(`W/"weak"`, lm)
			if _, err := w.Write(bytes.Repeat([]byte("x"), tc.size)); err != nil {
				t.Fatal(err)
			}
			if err := commitErr(w); err != nil {
				t.Fatal(err)
			}
			info, err := s.Stat("d/a")
			if err != nil || !info.ModTime.Equal(lmTime) {
				t.Fatalf("Stat: %+v %v; want the modification time %v", info, err, lmTime)
			}
			// A small file's validators are its modification time only (one
			// more attribute would cost an attribute block per file on ext4).
			if want := tc.size > unnamedMax && !tc.gz; // compressed, the file is small
			(info.ETag == `W/"weak"` && info.LastModified == lm) != want {
				t.Fatalf("Stat: %+v; recorded validators: want %v", info, want)
			}
			// A file written again without validators keeps none of the old ones.
			w, err = s.Create("d/a", "http://h/a")
			if err != nil {
				t.Fatal(err)
			}
			w.Replace()
			w.Write([]byte("y"))
			if err := commitErr(w); err != nil {
				t.Fatal(err)
			}
			if info, err := s.Stat("d/a"); err != nil || info.ETag != "" || info.LastModified != "" || info.ModTime.Equal(lmTime) {
				t.Fatalf("after a rewrite without validators: %+v %v", info, err)
			}
		})
	}
}

// Staged reports what a resume would continue from, and touches nothing.
func TestStaged(t *testing.T) {
	s, dir := newSink(t, FileOptions{NoSync: true, Checkpoint: 64 << 10})
	if p, err := s.Staged("none/a", "http://h/a"); err != nil || p.Offset != 0 {
		t.Fatalf("nothing there: %+v %v", p, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "none")); !os.IsNotExist(err) {
		t.Fatalf("Staged created a directory: %v", err)
	}
	w, err := s.Create("d/a", "http://h/a")
	if err != nil {
		t.Fatal(err)
	}
	w.SetValidator(`"v1"`, 1<<20)
	if _, err := w.Write(make([]byte, 300<<10)); err != nil {
		t.Fatal(err)
	}
	if err := w.Abort(); err != nil {
		t.Fatal(err)
	}
	p, err := s.Staged("d/a", "http://h/a")
	if err != nil || p.Offset < 64<<10 || p.Offset > 300<<10 || p.Validator != `"v1"` || p.Total != 1<<20 {
		t.Fatalf("Staged: %+v %v", p, err)
	}
	if p, err := s.Staged("d/a", "http://other/a"); err != nil || p.Offset != 0 {
		t.Fatalf("another origin's partial: %+v %v", p, err)
	}
	// A Create afterwards resumes from the same offset: Staged changed nothing.
	w, err = s.Create("d/a", "http://h/a")
	if err != nil {
		t.Fatal(err)
	}
	defer w.Abort()
	if !reflect.DeepEqual(w.Partial(), p) {
		t.Fatalf("Create resumes %+v, Staged said %+v", w.Partial(), p)
	}
}

// A small file whose response had only an ETag records it (its modification
// time can say nothing about the response); with Last-Modified too, the
// modification time is enough.
func TestCacheValidatorsSmallETagOnly(t *testing.T) {
	f, _ := newSink(t, FileOptions{NoSync: true})
	w, err := f.Create("e", "http://h/e")
	if err != nil {
		t.Fatal(err)
	}
	w.SetCacheValidators(`"only"`, "")
	w.Write([]byte("x"))
	if err := commitErr(w); err != nil {
		t.Fatal(err)
	}
	if info, err := f.Stat("e"); err != nil || info.ETag != `"only"` {
		t.Fatalf("Stat: %+v %v", info, err)
	}
}
