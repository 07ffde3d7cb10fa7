// Package parquettest writes Parquet lists for tests (apart from package
// testutil, so that only the tests that read Parquet link parquet-go).
package parquettest

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/parquet-go/parquet-go"
)

// Write writes rows to NAME in a new temporary directory, perRowGroup rows a
// row group, with opts (a compression codec, ...), and returns its path.
func Write[T any](t testing.TB, name string, rows []T, perRowGroup int64, opts ...parquet.WriterOption) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w := parquet.NewGenericWriter[T](f, append([]parquet.WriterOption{parquet.MaxRowsPerRowGroup(perRowGroup)}, opts...)...)
	if _, err := w.Write(rows); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}
