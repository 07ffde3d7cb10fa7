// Command mkparquet writes a LAION-style Parquet list of -rows rows (URL, TEXT, SAMPLE_ID,
// WIDTH, HEIGHT, similarity; zstd pages; -rowgroup rows to a row group, as pyarrow writes by
// default), and with -text the same URLs as a text list, one a line, for comparison.
// scripts/bench/parquet-shard.sh runs it.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"

	"github.com/parquet-go/parquet-go"
)

// row is one row of the list, in LAION's column names.
type row struct {
	URL        string  `parquet:"URL"`
	Text       *string `parquet:"TEXT,optional"`
	SampleID   int64   `parquet:"SAMPLE_ID"`
	Width      int32   `parquet:"WIDTH"`
	Height     int32   `parquet:"HEIGHT"`
	Similarity float64 `parquet:"similarity"`
}

// words make the captions: text that compresses as real captions do, not to nothing.
var words = []string{"a", "photo", "of", "the", "cat", "dog", "red", "blue", "house", "on", "beach",
	"sunset", "with", "old", "car", "city", "night", "river", "mountain", "portrait", "woman", "man",
	"vintage", "poster", "logo", "green", "tree", "snow", "street", "art", "drawing", "close-up"}

func main() {
	n := flag.Int("rows", 10_000_000, "rows")
	perGroup := flag.Int64("rowgroup", 1_000_000, "rows to a row group")
	out := flag.String("o", "", "the Parquet file to write")
	text := flag.String("text", "", "also write the URLs to this text list")
	host := flag.String("host", "127.0.0.1:1", "the URLs' host")
	flag.Parse()
	if *out == "" || *n < 1 || *perGroup < 1 {
		fmt.Fprintln(os.Stderr, "usage: mkparquet -o FILE.parquet [-rows N] [-rowgroup N] [-text FILE.txt] [-host HOST:PORT]")
		os.Exit(2)
	}
	if err := run(*out, *text, *host, *n, *perGroup); err != nil {
		fmt.Fprintln(os.Stderr, "mkparquet:", err)
		os.Exit(1)
	}
}

func run(out, text, host string, n int, perGroup int64) error {
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	defer f.Close()
	var tw *bufio.Writer
	if text != "" {
		tf, err := os.Create(text)
		if err != nil {
			return err
		}
		defer tf.Close()
		tw = bufio.NewWriterSize(tf, 1<<20)
	}
	w := parquet.NewGenericWriter[row](f, parquet.MaxRowsPerRowGroup(perGroup), parquet.Compression(&parquet.Zstd))
	rng := rand.New(rand.NewPCG(1, 2))
	batch := make([]row, 0, 4096)
	for i := range n {
		u := fmt.Sprintf("http://%s/img/%09d.jpg", host, i)
		r := row{URL: u, SampleID: int64(i), Width: int32(256 + rng.IntN(1024)), Height: int32(256 + rng.IntN(1024)),
			Similarity: 0.25 + rng.Float64()/4}
		if i%10 != 0 { // some captions are null
			var b []byte
			for k := range 6 + rng.IntN(10) {
				if k > 0 {
					b = append(b, ' ')
				}
				b = append(b, words[rng.IntN(len(words))]...)
			}
			s := string(b)
			r.Text = &s
		}
		batch = append(batch, r)
		if tw != nil {
			tw.WriteString(u)
			tw.WriteByte('\n')
		}
		if len(batch) == cap(batch) || i == n-1 {
			if _, err := w.Write(batch); err != nil {
				return err
			}
			batch = batch[:0]
		}
	}
	if err := w.Close(); err != nil {
		return err
	}
	if tw != nil {
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	return f.Close()
}
