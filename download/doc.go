// Package download is haul's engine: it reads entries from a Source, runs at
// most Options.Jobs connections' worth of them at a time over one shared HTTP
// client, and stores each body through a sink.Sink, reporting one Result per
// entry.
//
// It owns scheduling: the reader of the list and its shards (engine.go), the
// worker pool and its runners (pool.go), the grant that is an entry's share
// of -j and of its host's --per-host slots (grant.go), per-host state
// (hosts.go: slots, 429/503 pauses, hosts that are down, whether a host
// speaks HTTP/2, learnt from the connection an attempt gets), the parking of
// entries whose host is paused or full (parking.go), and the claims that
// keep two entries off one name (claims.go). It owns the life of one entry
// (entry.go: claim, check the disk, open the staging file, attempts with
// retries and resume, verify, commit), one transfer's attempts
// (transfer.go), one request with its stall timer and paced body
// (exchange.go), and one body over several connections (split.go). Its
// retries follow the network's one policy (download/internal/retry).
//
// Reading a list is package input's, naming files package naming's, the HTTP
// client package httpclient's, and where the bytes go package sink's. A
// Source reports the items it could not turn into entries as SourceErrors:
// the engine knows no source but through that interface. It never writes a
// file itself (every byte goes through the sink), never decides what a URL
// names on disk (naming), and never prints: results and Stats are for the
// caller to show.
//
// A minimal embedding:
//
//	client, _ := httpclient.New(httpclient.Options{Jobs: 16})
//	s, _ := sink.NewFile("mirror", sink.FileOptions{})
//	defer s.Close()
//	e := download.New(client, s, download.Options{OnResult: func(r *download.Result) { ... }})
//	err := e.Run(ctx, input.NewScanner(os.Stdin))
package download
