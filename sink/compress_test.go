package sink

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/haul/haul/internal/testutil"
)

// decompress decodes a final file with the standard tool when it is installed,
// else with the sink's own reader.
func decompress(t *testing.T, c *Compressed, dir, name string) []byte {
	t.Helper()
	tool := map[string][]string{".gz": {"gzip", "-dc"}, ".zst": {"zstd", "-dcq"}}[c.Ext()]
	if _, err := exec.LookPath(tool[0]); err == nil {
		out, err := exec.Command(tool[0], append(tool[1:], filepath.Join(dir, name+c.Ext()))...).Output()
		if err != nil {
			t.Fatalf("%s: %v", tool[0], err)
		}
		return out
	}
	r, err := c.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func newCompressed(t *testing.T, codec string) (*Compressed, string) {
	t.Helper()
	f, dir := newSink(t, FileOptions{Checkpoint: 64 << 10})
	c, err := NewCompressed(f, codec, 0)
	if err != nil {
		t.Fatal(err)
	}
	return c, dir
}

func TestCompressedRoundTrip(t *testing.T) {
	for _, codec := range []string{Gzip, Zstd} {
		for _, tc := range []struct {
			name string
			body []byte
		}{
			{"Empty", nil},
			{"Tiny", []byte("x")},
			{"Large", testutil.Text(1, 300_000)}, // several frames: checkpoints every 64 KiB
			{"Incompressible", testutil.Payload(1, 200_000)},
		} {
			t.Run(codec+"/"+tc.name, func(t *testing.T) {
				c, dir := newCompressed(t, codec)
				w, err := c.Create("d/f", "http://h/f")
				if err != nil {
					t.Fatal(err)
				}
				w.SetValidator(`"e"`, int64(len(tc.body)))
				for b := tc.body; len(b) > 0; b = b[min(len(b), 10_000):] {
					if _, err := w.Write(b[:min(len(b), 10_000)]); err != nil {
						t.Fatal(err)
					}
				}
				if err := commit(t, w); err != nil {
					t.Fatal(err)
				}
				if got := decompress(t, c, dir, "d/f"); !bytes.Equal(got, tc.body) {
					t.Fatalf("decompressed %d bytes, want %d identical", len(got), len(tc.body))
				}
				info, err := c.Stat("d/f")
				if err != nil || info.Size != int64(len(tc.body)) || info.Origin != "http://h/f" {
					t.Fatalf("Stat = %+v, %v", info, err)
				}
			})
		}
	}
}

// An interrupted compressed download continues where it stopped: after a clean
// stop (Abort), and after a crash (the process dies after a checkpoint, leaving
// a torn frame behind it).
func TestCompressedResume(t *testing.T) {
	full := testutil.Text(1, 400_000)
	for _, codec := range []string{Gzip, Zstd} {
		for _, crash := range []bool{false, true} {
			name := codec + "/Abort"
			if crash {
				name = codec + "/Crash"
			}
			t.Run(name, func(t *testing.T) {
				c, dir := newCompressed(t, codec)
				w, _ := c.Create("f", "u")
				w.SetValidator(`"e"`, int64(len(full)))
				w.Write(full[:150_000])
				cw := w.(*compWriter)
				want := int64(150_000)
				if crash {
					cw.fw.cp.Wait() // the checkpoint at 128 KiB has landed
					want = cw.fw.lastCP
					w.Write(full[150_000:170_000])
					cw.fw.cp.Wait()
					cw.fw.f.Close() // the process dies: no Abort, the lock goes with it
					c.f.dirs.release(cw.fw.d)
				} else if err := w.Abort(); err != nil {
					t.Fatal(err)
				}
				w, err := c.Create("f", "u")
				if err != nil {
					t.Fatal(err)
				}
				p := w.Partial()
				if p.Offset != want || p.Validator != `"e"` {
					t.Fatalf("Partial = %+v, want offset %d", p, want)
				}
				prefix, err := io.ReadAll(w.Prefix())
				if err != nil || !bytes.Equal(prefix, full[:p.Offset]) {
					t.Fatalf("Prefix: %d bytes, %v", len(prefix), err)
				}
				w.Write(full[p.Offset:])
				if err := commit(t, w); err != nil {
					t.Fatal(err)
				}
				if got := decompress(t, c, dir, "f"); !bytes.Equal(got, full) {
					t.Fatalf("decompressed %d bytes, want %d identical", len(got), len(full))
				}
			})
		}
	}
}

// Restart drops what the encoder buffered as well as what was written.
func TestCompressedRestart(t *testing.T) {
	c, dir := newCompressed(t, Zstd)
	w, _ := c.Create("f", "u")
	w.Write(testutil.Text(1, 100_000))
	w.Restart()
	w.Write([]byte("fresh"))
	if err := commit(t, w); err != nil {
		t.Fatal(err)
	}
	if got := decompress(t, c, dir, "f"); string(got) != "fresh" {
		t.Fatalf("got %q", got)
	}
	if _, err := os.Stat(filepath.Join(dir, "f.zst.part")); err == nil {
		t.Fatal("staging file left")
	}
}

// A kept compressed prefix that does not decode (garbage in it, or a frame cut
// short in the middle) is discarded: Create starts the file over, rather than
// resuming onto it (a corrupt final file) or handing the engine a Prefix it
// cannot read (the same failure on every run).
func TestCompressedCorruptPartialRestarts(t *testing.T) {
	full := testutil.Text(1, 400_000)
	for _, codec := range []string{Gzip, Zstd} {
		for _, damage := range []string{"Garbage", "TruncatedFrame", "ShortOfState"} {
			t.Run(codec+"/"+damage, func(t *testing.T) {
				c, dir := newCompressed(t, codec)
				part := filepath.Join(dir, "f"+c.Ext()+PartSuffix)
				if damage == "Garbage" {
					w, _ := c.Create("f", "u")
					w.SetValidator(`"e"`, int64(len(full)))
					w.Write(full[:300_000])
					if err := w.Abort(); err != nil {
						t.Fatal(err)
					}
					f, err := os.OpenFile(part, os.O_WRONLY, 0)
					if err != nil {
						t.Fatal(err)
					}
					fi, _ := f.Stat()
					f.WriteAt(bytes.Repeat([]byte{0xa5}, 64), fi.Size()/2)
					f.Close()
				} else {
					// Three frames (members) of 100,000 bytes each, the middle one
					// cut in half (ShortOfState: whole, but the state claims more
					// body bytes than they hold), under a valid resume state.
					var b bytes.Buffer
					for i := range 3 {
						enc, err := c.newEnc()
						if err != nil {
							t.Fatal(err)
						}
						var frame bytes.Buffer
						enc.Reset(&frame)
						enc.Write(full[i*100_000 : (i+1)*100_000])
						enc.Close()
						if i == 1 && damage == "TruncatedFrame" {
							frame.Truncate(frame.Len() / 2)
						}
						b.Write(frame.Bytes())
					}
					plain := 300_000
					if damage == "ShortOfState" {
						plain = 310_000
					}
					if err := os.WriteFile(part, b.Bytes(), 0o644); err != nil {
						t.Fatal(err)
					}
					for k, v := range map[string]string{OriginAttr: "u",
						resumeAttr: fmt.Sprintf(`v1 %d %d %d "e"`, b.Len(), plain, len(full))} {
						if err := setXattrPath(part, k, v); err != nil {
							t.Skipf("no user xattrs here: %v", err)
						}
					}
				}
				w, err := c.Create("f", "u")
				if err != nil {
					t.Fatal(err)
				}
				if p := w.Partial(); p.Offset != 0 {
					w.Discard()
					t.Fatalf("resumable from %d on a corrupt partial", p.Offset)
				}
				if prefix, err := io.ReadAll(w.Prefix()); err != nil || len(prefix) != 0 {
					t.Fatalf("Prefix of a fresh file: %d bytes, %v", len(prefix), err)
				}
				w.SetValidator(`"e"`, int64(len(full)))
				w.Write(full)
				if err := commit(t, w); err != nil {
					t.Fatal(err)
				}
				if got := decompress(t, c, dir, "f"); !bytes.Equal(got, full) {
					t.Fatalf("decompressed %d bytes, want %d identical", len(got), len(full))
				}
			})
		}
	}
}
