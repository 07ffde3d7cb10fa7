// Package urlid says when two URLs name one resource, and how a URL is written
// down where others can read it: in the origin attribute of the file it was
// saved to (user.xdg.origin.url), in messages, and as the key of per-host state.
//
// It owns: the origin value (no user:password@, no #fragment, a short hashed
// form for long URLs), the comparison of a stored origin with a URL, password
// redaction for messages, and the normalized host:port key. It never touches
// the network or the disk, and imports nothing of haul's.
package urlid
