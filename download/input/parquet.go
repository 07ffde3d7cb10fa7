package input

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/big"
	"strconv"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/deprecated"
	"github.com/parquet-go/parquet-go/format"
)

// parquetBatch is how many rows are read at a time: their values are all
// that is held besides the pages being read (one per column).
const parquetBatch = 64

// parquetTable reads a Parquet file a row group at a time, and each row
// group a few rows at a time (parquet-go's row reader, which reads each
// column's pages one after the other, through a small buffer): never a
// whole column chunk, never the whole file.
type parquetTable struct {
	f      *parquet.File
	o      Options
	c      *columns
	top    []*parquet.Column // the top-level columns, in the file's order
	groups []parquet.RowGroup
	g      int           // the row group being read
	rows   parquet.Rows  // its reader, nil between row groups
	buf    []parquet.Row // rows read, buf[i:] still to return
	i      int
	eof    bool   // the row group's reader said io.EOF
	at     []int  // per leaf column, where its values start in the row
	isMeta []bool // per leaf column: one of the other columns
	row    int
	meta   []byte
}

// openParquet reads a Parquet file's footer and finds the fields among its
// top-level columns.
func openParquet(src parquetSource, o Options) (*parquetTable, error) {
	fi, err := src.Stat()
	if err != nil {
		return nil, err
	}
	// The page index and the bloom filters are for queries: not read. The
	// pages are read synchronously (no goroutine reading ahead), through
	// the default 4 KiB buffer.
	f, err := parquet.OpenFile(src, fi.Size(), parquet.SkipPageIndex(true), parquet.SkipBloomFilters(true))
	if err != nil {
		return nil, &ListError{Name: o.Name, Err: fmt.Errorf("not a Parquet file haul can read: %w", err)}
	}
	t := &parquetTable{f: f, o: o, top: f.Root().Columns(), groups: f.RowGroups()}
	names := make([]string, len(t.top))
	for i, c := range t.top {
		names[i] = c.Name()
	}
	if t.c, err = mapColumns(names, o); err != nil {
		return nil, &ListError{Name: o.Name, Err: err}
	}
	for fi, i := range t.c.field {
		if i < 0 {
			continue
		}
		col := t.top[i]
		if !col.Leaf() || col.Repeated() {
			return nil, &ListError{Name: o.Name, Err: fmt.Errorf("column %q (the %s) is not a plain value but a group or a list", col.Name(), Fields[fi])}
		}
		switch k := col.Type().Kind(); {
		case k == parquet.ByteArray:
		case (fi == fSize || fi == fKey) && (k == parquet.Int32 || k == parquet.Int64):
		default:
			want := "strings"
			if fi == fSize || fi == fKey {
				want = "strings or integers"
			}
			return nil, &ListError{Name: o.Name, Err: fmt.Errorf("column %q (the %s) holds %s values, not %s", col.Name(), Fields[fi], col.Type(), want)}
		}
	}
	t.at = make([]int, len(f.Schema().Columns()))
	t.isMeta = make([]bool, len(t.at))
	for _, i := range t.c.meta {
		first, n := t.top[i].Index(), 1
		if !t.top[i].Leaf() {
			first, n = firstLeaf(t.top[i]), leafCount(t.top[i])
		}
		for c := first; c >= 0 && c < first+n && c < len(t.isMeta); c++ {
			t.isMeta[c] = true
		}
	}
	t.buf = make([]parquet.Row, 0, parquetBatch)
	return t, nil
}

func (t *parquetTable) next() (Entry, error) {
	for t.i == len(t.buf) {
		if err := t.read(); err != nil {
			return Entry{}, err
		}
	}
	r := t.buf[t.i]
	t.i++
	t.row++
	e := Entry{Row: t.row, Index: t.row - 1}
	for i := range t.at {
		t.at[i] = -1
	}
	for j, v := range r {
		if c := v.Column(); c >= 0 && c < len(t.at) && t.at[c] < 0 {
			t.at[c] = j
		}
	}
	var v [nFields]string
	for f, i := range t.c.field {
		if i >= 0 {
			v[f] = t.text(r, t.top[i])
		}
	}
	if err := fill(&e, &v); err != nil {
		return Entry{}, &LineError{Row: t.row, Reason: err.Error()}
	}
	if t.metaSize(r) > MaxMetaLen {
		return Entry{}, &LineError{Row: t.row, Reason: metaTooLong}
	}
	if len(t.c.meta) > 0 && (t.o.Keep == nil || t.o.Keep(e.URL)) {
		b, err := t.appendMeta(t.meta[:0], r)
		if err != nil {
			return Entry{}, &LineError{Row: t.row, Reason: err.Error()}
		}
		e.Meta = string(b)
		t.meta = b
	}
	return e, nil
}

// metaSize is what the row's other columns hold: the bytes of its strings
// and binary values, eight for any other value.
func (t *parquetTable) metaSize(r parquet.Row) int {
	n := 0
	for _, v := range r {
		if c := v.Column(); c >= 0 && c < len(t.isMeta) && t.isMeta[c] {
			if k := v.Kind(); k == parquet.ByteArray || k == parquet.FixedLenByteArray {
				n += len(v.ByteArray())
			} else {
				n += 8
			}
		}
	}
	return n
}

// close releases the row group being read.
func (t *parquetTable) close() {
	if t.rows != nil {
		t.rows.Close()
		t.rows = nil
	}
	t.g = len(t.groups)
}

// read fills buf with the next rows, moving on to the next row group as
// one ends. At the end of the last it returns io.EOF.
func (t *parquetTable) read() error {
	t.buf, t.i = t.buf[:0], 0
	for t.rows == nil || t.eof {
		if t.rows != nil {
			t.rows.Close()
			t.rows = nil
		}
		if t.g == len(t.groups) {
			return io.EOF
		}
		t.rows, t.eof = t.groups[t.g].Rows(), false
		t.g++
	}
	n, err := t.rows.ReadRows(t.buf[:cap(t.buf)])
	t.buf = t.buf[:n]
	switch {
	case err == io.EOF:
		t.eof = true
	case err != nil:
		t.rows.Close()
		t.rows, t.g = nil, len(t.groups)
		return &CutError{Name: t.o.Name, After: fmt.Sprintf("row %d", t.row), Err: err}
	}
	return nil
}

// value returns the value of the plain (non-repeated leaf) column c in r.
func (t *parquetTable) value(r parquet.Row, c *parquet.Column) (parquet.Value, bool) {
	i := t.at[c.Index()]
	if i < 0 || r[i].IsNull() {
		return parquet.Value{}, false
	}
	return r[i], true
}

// text returns the value of a field's column as text, "" for null.
func (t *parquetTable) text(r parquet.Row, c *parquet.Column) string {
	v, ok := t.value(r, c)
	switch {
	case !ok:
		return ""
	case v.Kind() == parquet.ByteArray:
		return string(v.ByteArray())
	case v.Kind() == parquet.Int32:
		return strconv.FormatInt(int64(v.Int32()), 10)
	}
	return strconv.FormatInt(v.Int64(), 10)
}

// appendMeta appends the row's other columns as a JSON object.
func (t *parquetTable) appendMeta(b []byte, r parquet.Row) ([]byte, error) {
	b = append(b, '{')
	for k, i := range t.c.meta {
		if k > 0 {
			b = append(b, ',')
		}
		c := t.top[i]
		b = appendJSONString(b, c.Name())
		b = append(b, ':')
		if !c.Leaf() || c.Repeated() {
			var err error
			if b, err = appendNested(b, c, r); err != nil {
				return nil, fmt.Errorf("column %q: %w", c.Name(), err)
			}
			continue
		}
		v, ok := t.value(r, c)
		if !ok {
			b = append(b, "null"...)
			continue
		}
		b = appendValue(b, c.Type(), v)
	}
	return append(b, '}'), nil
}

// appendValue appends the JSON of a value of type typ: numbers as numbers,
// strings as strings, booleans; binary data in base64 (as encoding/json
// writes a []byte); a JSON column as its JSON.
func appendValue(b []byte, typ parquet.Type, v parquet.Value) []byte {
	lt := typ.LogicalType()
	var ct deprecated.ConvertedType = -1
	if p := typ.ConvertedType(); p != nil {
		ct = *p
	}
	if lt != nil {
		if d, ok := lt.Value.(*format.DecimalType); ok {
			return appendDecimal(b, v, d.Scale)
		}
	}
	switch v.Kind() {
	case parquet.Boolean:
		return strconv.AppendBool(b, v.Boolean())
	case parquet.Int32:
		if it, ok := logicalInt(lt); ok && !it.IsSigned {
			return strconv.AppendUint(b, uint64(uint32(v.Int32())), 10)
		}
		return strconv.AppendInt(b, int64(v.Int32()), 10)
	case parquet.Int64:
		if it, ok := logicalInt(lt); ok && !it.IsSigned {
			return strconv.AppendUint(b, uint64(v.Int64()), 10)
		}
		return strconv.AppendInt(b, v.Int64(), 10)
	case parquet.Float:
		return appendFloat(b, float64(v.Float()), 32)
	case parquet.Double:
		return appendFloat(b, v.Double(), 64)
	case parquet.Int96:
		return appendJSONString(b, v.Int96().String())
	case parquet.ByteArray:
		raw := v.ByteArray()
		switch {
		case isLogical[*format.JsonType](lt) || ct == deprecated.Json:
			var c bytes.Buffer
			if json.Compact(&c, raw) == nil {
				return append(b, c.Bytes()...)
			}
			return appendJSONString(b, string(raw))
		case isLogical[*format.StringType](lt) || isLogical[*format.EnumType](lt) || ct == deprecated.UTF8 || ct == deprecated.Enum:
			return appendJSONString(b, string(raw))
		}
		return appendBase64(b, raw)
	case parquet.FixedLenByteArray:
		raw := v.ByteArray()
		if isLogical[*format.UUIDType](lt) && len(raw) == 16 {
			return appendJSONString(b, uuid.UUID(raw).String())
		}
		return appendBase64(b, raw)
	}
	return appendJSONString(b, v.String())
}

func isLogical[T any](lt *format.LogicalType) bool {
	if lt == nil {
		return false
	}
	_, ok := lt.Value.(T)
	return ok
}

func logicalInt(lt *format.LogicalType) (*format.IntType, bool) {
	if lt == nil {
		return nil, false
	}
	it, ok := lt.Value.(*format.IntType)
	return it, ok
}

// appendFloat appends f as a JSON number; NaN and the infinities, which
// JSON has no numbers for, as null.
func appendFloat(b []byte, f float64, bits int) []byte {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return append(b, "null"...)
	}
	return strconv.AppendFloat(b, f, 'g', -1, bits)
}

func appendBase64(b []byte, raw []byte) []byte {
	b = append(b, '"')
	b = base64.StdEncoding.AppendEncode(b, raw)
	return append(b, '"')
}

// appendDecimal appends a DECIMAL value (an integer scaled by 10^-scale, in
// an INT32, an INT64 or big-endian two's complement bytes) as a JSON number,
// digit for digit.
func appendDecimal(b []byte, v parquet.Value, scale int32) []byte {
	n := new(big.Int)
	switch v.Kind() {
	case parquet.Int32:
		n.SetInt64(int64(v.Int32()))
	case parquet.Int64:
		n.SetInt64(v.Int64())
	default:
		raw := v.ByteArray()
		n.SetBytes(raw)
		if len(raw) > 0 && raw[0]&0x80 != 0 { // negative: two's complement
			n.Sub(n, new(big.Int).Lsh(big.NewInt(1), uint(8*len(raw))))
		}
	}
	digits := n.String()
	neg := len(digits) > 0 && digits[0] == '-'
	if neg {
		digits = digits[1:]
		b = append(b, '-')
	}
	if scale <= 0 {
		b = append(b, digits...)
		for range -scale {
			b = append(b, '0')
		}
		return b
	}
	for len(digits) <= int(scale) {
		digits = "0" + digits
	}
	cut := len(digits) - int(scale)
	b = append(b, digits[:cut]...)
	b = append(b, '.')
	return append(b, digits[cut:]...)
}

// appendNested appends a group or repeated column's value in r as JSON, as
// parquet-go reconstructs it: a group as an object, a list as an array, a
// map as an object.
func appendNested(b []byte, c *parquet.Column, r parquet.Row) (out []byte, err error) {
	defer func() {
		if p := recover(); p != nil {
			out, err = nil, fmt.Errorf("cannot read its value: %v", p)
		}
	}()
	schema := parquet.NewSchema("row", parquet.Group{c.Name(): nodeOf(c)})
	first := c.Index()
	if !c.Leaf() {
		first = firstLeaf(c)
	}
	n := leafCount(c)
	var sub parquet.Row
	for _, v := range r {
		if col := v.Column(); col >= first && col < first+n {
			sub = append(sub, v.Level(v.RepetitionLevel(), v.DefinitionLevel(), col-first))
		}
	}
	m := map[string]any{}
	if err := schema.Reconstruct(&m, sub); err != nil {
		return nil, err
	}
	j, err := json.Marshal(m[c.Name()])
	if err != nil {
		return nil, err
	}
	if !utf8.Valid(j) {
		return nil, errors.New("not valid UTF-8")
	}
	return append(b, j...), nil
}

// nodeOf is c as a schema node.
func nodeOf(c *parquet.Column) parquet.Node { return c }

func firstLeaf(c *parquet.Column) int {
	for !c.Leaf() {
		cs := c.Columns()
		if len(cs) == 0 {
			return -1
		}
		c = cs[0]
	}
	return c.Index()
}

func leafCount(c *parquet.Column) int {
	if c.Leaf() {
		return 1
	}
	n := 0
	for _, s := range c.Columns() {
		n += leafCount(s)
	}
	return n
}
