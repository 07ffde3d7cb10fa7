package h1

import (
	"net/http"
	"testing"
)

// TestRedirectOverChain checks Redirect on a chain another client may have
// begun: credentials are dropped once any hop left the first domain, even when
// the next one returns to it, and kept while the chain stays within it.
func TestRedirectOverChain(t *testing.T) {
	req := func(rawURL string) *http.Request {
		r, _ := http.NewRequest(http.MethodGet, rawURL, nil)
		return r
	}
	redirect := func(loc string) *http.Response {
		return &http.Response{StatusCode: http.StatusFound, Header: http.Header{"Location": {loc}}}
	}
	first := req("https://example.com/a")
	first.Header.Set("Authorization", "Bearer t")
	first.Header.Set("X-Keep", "yes")
	for _, tc := range []struct {
		name     string
		via      []*http.Request
		loc      string
		wantAuth string
	}{
		{"Subdomain", []*http.Request{first, req("https://cdn.example.com/b")}, "https://example.com/c", "Bearer t"},
		{"BackFromOffDomain", []*http.Request{first, req("https://other.test/b")}, "https://example.com/c", ""},
		{"OffDomain", []*http.Request{first}, "https://other.test/c", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			next, loc, err := Redirect(tc.via, redirect(tc.loc))
			if err != nil || next == nil || loc != tc.loc || next.URL.String() != tc.loc {
				t.Fatalf("next %v, loc %q, error %v", next, loc, err)
			}
			if got := next.Header.Get("Authorization"); got != tc.wantAuth {
				t.Errorf("Authorization %q, want %q", got, tc.wantAuth)
			}
			if next.Header.Get("X-Keep") != "yes" || next.Response == nil {
				t.Errorf("header %v, Response %v", next.Header, next.Response)
			}
		})
	}
	for _, resp := range []*http.Response{
		{StatusCode: http.StatusOK, Header: http.Header{"Location": {"/x"}}},
		{StatusCode: http.StatusFound, Header: http.Header{}},
		{StatusCode: http.StatusNotModified, Header: http.Header{"Location": {"/x"}}},
	} {
		if next, _, err := Redirect([]*http.Request{first}, resp); next != nil || err != nil {
			t.Errorf("%d %v: next %v, error %v", resp.StatusCode, resp.Header, next, err)
		}
	}
}
