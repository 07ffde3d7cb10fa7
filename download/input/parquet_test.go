package input

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/format"

	"github.com/haul/haul/internal/parquettest"
)

// pqRow is a row of the Parquet lists the tests write: the columns of a
// LAION-style list (URL, TEXT, SAMPLE_ID, ...) and a few more types.
type pqRow struct {
	Text   *string  `parquet:"TEXT,optional"`
	URL    *string  `parquet:"URL,optional"`
	ID     int64    `parquet:"SAMPLE_ID"`
	Width  *int32   `parquet:"width,optional"`
	Score  float64  `parquet:"score"`
	NSFW   bool     `parquet:"nsfw"`
	Price  int64    `parquet:"price,decimal(2:18)"`
	Tags   []string `parquet:"tags,list"`
	Size   *int64   `parquet:"size,optional"`
	Sha256 *string  `parquet:"sha256,optional"`
}

func ptr[T any](v T) *T { return &v }

// checkParquetFile fails unless the file has more than one row group and
// every column chunk is compressed with codec: what the test means to read.
func checkParquetFile(t testing.TB, name string, codec format.CompressionCodec) {
	t.Helper()
	f, err := os.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, _ := f.Stat()
	pf, err := parquet.OpenFile(f, fi.Size())
	if err != nil {
		t.Fatal(err)
	}
	md := pf.Metadata()
	if len(md.RowGroups) < 2 {
		t.Fatalf("%d row groups", len(md.RowGroups))
	}
	for _, rg := range md.RowGroups {
		for _, c := range rg.Columns {
			if c.MetaData.Codec != codec {
				t.Fatalf("column %v compressed with %v, want %v", c.MetaData.PathInSchema, c.MetaData.Codec, codec)
			}
		}
	}
}

func openFile(t testing.TB, name string, o Options) *Reader {
	t.Helper()
	f, err := os.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	o.Name = name
	r, err := Open(f, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func laionRows(n int) []pqRow {
	rows := make([]pqRow, n)
	for i := range rows {
		rows[i] = pqRow{URL: ptr(fmt.Sprintf("http://x/%d.jpg", i)), ID: int64(1000 + i), Score: float64(i) / 4,
			NSFW: i%2 == 1, Price: int64(i*100 + 5), Tags: []string{fmt.Sprint("t", i)}}
		if i%3 != 2 {
			rows[i].Text = ptr(fmt.Sprintf("caption \"%d\", with a comma", i))
		}
		if i%4 != 3 {
			rows[i].Width = ptr(int32(640 + i))
		}
	}
	return rows
}

// A Parquet list of several row groups, snappy or zstd pages: every row is
// read, in order, with its fields, and its other columns typed in meta
// (numbers as numbers, strings, booleans, null for a null, a list as an
// array).
func TestParquetTable(t *testing.T) {
	rows := laionRows(10)
	var want []string
	for i, r := range rows {
		text, width := "null", "null"
		if r.Text != nil {
			text = fmt.Sprintf(`"caption \"%d\", with a comma"`, i)
		}
		if r.Width != nil {
			width = fmt.Sprint(*r.Width)
		}
		want = append(want, fmt.Sprintf(`%d/0 #%d http://x/%d.jpg key=%d {"TEXT":%s,"width":%s,"score":%v,"nsfw":%v,"price":%d.%02d,"tags":["t%d"]}`,
			i+1, i, i, 1000+i, text, width, r.Score, r.NSFW, i, 5, i))
	}
	for _, tt := range []struct {
		codec  parquet.WriterOption
		format format.CompressionCodec
	}{
		{parquet.Compression(&parquet.Snappy), format.Snappy},
		{parquet.Compression(&parquet.Zstd), format.Zstd},
	} {
		t.Run(tt.format.String(), func(t *testing.T) {
			name := parquettest.Write(t, "list.parquet", rows, 3, tt.codec)
			checkParquetFile(t, name, tt.format)
			r := openFile(t, name, Options{Columns: map[string]string{"key": "SAMPLE_ID"}})
			if err := r.Check(); err != nil {
				t.Fatal(err)
			}
			got, err := readAll(t, r)
			if err != nil {
				t.Fatal(err)
			}
			if strings.Join(got, "\n") != strings.Join(want, "\n") {
				t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
		})
	}
}

// A bad row is named by its number (from 1, over all row groups); the
// rows around it are read.
func TestParquetBadRows(t *testing.T) {
	rows := laionRows(8)
	rows[2].URL = nil
	rows[4].URL = ptr("ftp://x/4")
	rows[5].Size = ptr(int64(-3))
	rows[6].Sha256 = ptr("abc")
	rows[7].Size = ptr(int64(77))
	rows[1].Text = ptr(strings.Repeat("t", 64<<10))
	name := parquettest.Write(t, "list.parquet", rows, 3, parquet.Compression(&parquet.Zstd))
	got, err := readAll(t, openFile(t, name, Options{Keep: func(string) bool { return false }}))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"1/0 #0 http://x/0.jpg", "input row 2: its other cells hold more than 64 KiB",
		"input row 3: no URL (its url cell is empty)",
		"4/0 #3 http://x/3.jpg",
		`input row 5: unsupported scheme "ftp"`,
		`input row 6: bad size "-3": want a non-negative integer`,
		`input row 7: bad sha256 "abc": want 64 hex digits`,
		"8/0 #7 http://x/7.jpg size=77",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// A Parquet file that is not one, or is cut short, is refused before its
// first row; a column that cannot be a field is named.
func TestParquetUnreadable(t *testing.T) {
	name := parquettest.Write(t, "list.parquet", laionRows(5), 2, parquet.Compression(&parquet.Snappy))
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	cut := filepath.Join(t.TempDir(), "cut.parquet")
	os.WriteFile(cut, b[:len(b)/2], 0o644)
	for _, tt := range []struct {
		name string
		o    Options
		want string
	}{
		{cut, Options{}, "cut.parquet: not a Parquet file haul can read: invalid magic footer of parquet file"},
		{name, Options{Columns: map[string]string{"url": "tags"}}, `list.parquet: column "tags" (the url) is not a plain value but a group or a list`},
		{name, Options{Columns: map[string]string{"url": "score"}}, `list.parquet: column "score" (the url) holds DOUBLE values, not strings`},
		{name, Options{Columns: map[string]string{"url": "link"}}, `list.parquet: --col url=link: no column "link" (the columns are "TEXT", "URL", "SAMPLE_ID", "width", "score", "nsfw", "price", "tags", "size", "sha256")`},
	} {
		r := openFile(t, tt.name, tt.o)
		err := r.Check()
		var le *ListError
		if !errors.As(err, &le) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s %+v: Check = %v\nwant a *ListError with %q", filepath.Base(tt.name), tt.o.Columns, err, tt.want)
		}
	}
}

// A page that does not decode, after the first row group, ends the list
// with a *CutError after the rows before it.
func TestParquetDamagedPage(t *testing.T) {
	rows := laionRows(3000)
	name := parquettest.Write(t, "list.parquet", rows, 1000, parquet.Compression(&parquet.Zstd))
	f, err := os.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	fi, _ := f.Stat()
	pf, err := parquet.OpenFile(f, fi.Size())
	if err != nil {
		t.Fatal(err)
	}
	// The URL column chunk of the last row group: its pages' bytes.
	cc := pf.Metadata().RowGroups[2].Columns[1].MetaData
	f.Close()
	b, _ := os.ReadFile(name)
	start := int(cc.DataPageOffset)
	for i := start + 40; i < start+int(cc.TotalCompressedSize)-8; i++ {
		b[i] ^= 0x5a
	}
	os.WriteFile(name, b, 0o644)
	got, err := readAll(t, openFile(t, name, Options{}))
	var ce *CutError
	if !errors.As(err, &ce) || len(got) < 2000 || len(got) >= 3000 {
		t.Fatalf("after %d rows: %v; want a *CutError after the first two row groups", len(got), err)
	}
	if !strings.Contains(err.Error(), "the list is cut off or damaged after row ") {
		t.Errorf("error %q", err)
	}
}

// A list written by pyarrow, when python3 has it: the writer of most
// published dataset lists.
func TestParquetFromPyarrow(t *testing.T) {
	if exec.Command("python3", "-c", "import pyarrow").Run() != nil {
		t.Skip("no python3 with pyarrow")
	}
	name := filepath.Join(t.TempDir(), "py.parquet")
	script := `import sys, pyarrow as pa, pyarrow.parquet as pq
t = pa.table({"URL": ["http://x/1", None, "http://x/3"], "TEXT": ["a", "b", None], "n": [1, 2, None], "f": [0.5, None, 2.0]})
pq.write_table(t, sys.argv[1], row_group_size=2, compression="zstd")`
	if out, err := exec.Command("python3", "-c", script, name).CombinedOutput(); err != nil {
		t.Fatalf("pyarrow: %v\n%s", err, out)
	}
	got, err := readAll(t, openFile(t, name, Options{}))
	want := []string{`1/0 #0 http://x/1 {"TEXT":"a","n":1,"f":0.5}`, "input row 2: no URL (its url cell is empty)",
		`3/0 #2 http://x/3 {"TEXT":null,"n":null,"f":2}`}
	if err != nil || strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("got %q, %v\nwant %q", got, err, want)
	}
}
