// Package download is haul's engine: it reads entries from a Source, runs at
// most Options.Jobs of them at a time over one shared HTTP client, and stores
// each body through a sink.Sink, reporting one Result per entry.
//
// It owns scheduling (the worker pool, shards, the parking of entries whose
// host asked for a pause), per-host state (--per-host slots, 429/503 pauses),
// the claims that keep two workers off one name, and the life of one entry
// (entry.go: claim, check the disk, open the staging file, attempts with
// retries and resume, verify, commit). Reading a list is package input's,
// naming files package naming's, the HTTP client package httpclient's, and
// where the bytes go package sink's.
//
// It never writes a file itself (every byte goes through the sink), never
// decides what a URL names on disk (naming), and never prints: results and
// Stats are for the caller to show.
//
// A minimal embedding:
//
//	client, _ := httpclient.New(httpclient.Options{Jobs: 16})
//	s, _ := sink.NewFile("mirror", sink.FileOptions{})
//	defer s.Close()
//	e := download.New(client, s, download.Options{OnResult: func(r *download.Result) { ... }})
//	err := e.Run(ctx, input.NewScanner(os.Stdin))
package download
