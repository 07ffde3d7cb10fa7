// Package httpclient builds the one HTTP client a haul run shares: an
// http.Client, which owns the redirect policy (at most 10, http(s) only,
// credentials and Referer kept to their origin) and the cookie jar, over a
// router that sends each exchange to the client that makes it: plain http://
// through haul's lean HTTP/1.1 client (h1), https:// through its lean HTTP/2
// client (h2), which hands a host whose server picks HTTP/1.1 to h1 (so does
// --http1.1); through net/http whenever the environment names a proxy for the
// scheme.
//
// It owns connection pooling, TLS settings (--cacert, --insecure), proxies,
// --netrc and --cookies. It never retries, never reads a body and never
// decides what a status means: that is the engine's.
package httpclient
