// Package httpclient builds the one HTTP client a haul run shares: an
// http.Client, which owns the redirect policy (checkRedirect: at most 10,
// http(s) only, credentials and Referer kept to their origin) and the cookie
// jar (--cookies), wrapped to add --netrc's credentials to the first request
// of a chain, over a router: an http.RoundTripper that sends each exchange, a
// first request or a redirect's hop alike, to the client that makes it.
// Plain http:// goes through haul's lean HTTP/1.1 client (h1); https://
// through its lean HTTP/2 client (h2), which hands a host whose server picks
// HTTP/1.1 in ALPN to h1 through its HTTP1 interface; the pieces of a split
// file over https://, and every https:// request with --http1.1, through h1.
// A request that an HTTP proxy takes (--proxy or the environment's, read as
// curl reads them: proxy.go), and one the lean clients refuse (another
// method, a body, a host that needs IDNA), go through net/http's Transport,
// as every request does with --http-client net/http. A request through a
// SOCKS5 proxy is routed as a direct one, to an h1 and h2 (and Transport) of
// that proxy's, which dial through it.
//
// Each client tells an httptrace.ClientTrace in the request's context the
// connection it got (GotConn), as net/http's Transport does: that is how the
// engine learns that a host speaks HTTP/2.
//
// It owns the clients' settings (pool sizes, --streams, the PING health
// check), TLS settings (--cacert, --insecure), proxies, the DNS cache,
// --netrc and --cookies. It never retries, never reads a body and never
// decides what a status means: that is the engine's.
package httpclient
