// Package naming turns a URL into the relative path it is saved under, for
// each --layout: tree (DIR/HOST/PATH, as wget -x), flat (DIR/BASENAME) and
// hash (DIR/H[0:2]/H[2:4]/H.EXT).
//
// It owns escaping (queries, control bytes, "%", names ending in .part), the
// resolution of ".." below the host directory, and the shortening of name
// components too long for a filesystem. Its names are always local
// (filepath.IsLocal); it never touches the disk, so symbolic links are the
// sink's to refuse.
package naming
