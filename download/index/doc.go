// Package index walks HTML directory indexes for -r/--recursive, as
// wget -r -np does: it lists a URL ending in "/" and every index below it,
// and gives the files found as input entries, streamed into the engine's
// pipeline (a Walker is a download.Source, and wraps one: Expand).
//
// It owns the reading of listings (Links: nginx's autoindex, Apache's
// mod_autoindex, plain and FancyIndexing, lighttpd's mod_dirlisting, Caddy's
// file_server browse, python3 -m http.server, Go's http.FileServer, h2o's
// file.dirlisting, or any page of links), what counts as below the start,
// which links name directories (those written with a trailing "/", and, on
// a tree whose listings do not mark them, such as h2o's, a link whose HEAD
// the server redirects to the same path plus "/"), the order of the walk and
// its bounds (depth, page size, memory: the waiting directories spill to a
// temporary file), the requests for index pages and their retries (under
// the network's one retry policy), and --accept/--reject (Filter).
//
// It never downloads or writes a file (an index page goes through a
// temporary file, unlinked at once, and is never stored), never names one on
// disk (naming's), never de-duplicates files (the engine fetches a URL listed
// twice once), and never prints: a directory that fails is a *DirError, a
// download.SourceError that the engine reports as a failed entry. It never
// follows a link above its start, to another host, or with a query
// (Apache's and Caddy's sort links).
package index
