package dns

import (
	"errors"
	"net/netip"
	"slices"
	"testing"

	"golang.org/x/net/dns/dnsmessage"

	"github.com/haul/haul/download/internal/dns/dnstest"
)

const fuzzID = 0x1234

// question is the question of the fuzzed replies.
func question(aaaa bool) *dnsmessage.Question {
	q := &dnsmessage.Question{Name: dnsmessage.MustNewName("a.test."), Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET}
	if aaaa {
		q.Type = dnsmessage.TypeAAAA
	}
	return q
}

// replyTo packs an answer to question(aaaa) with h's flags (its ID and
// Response set), the answers and the authorities given.
func replyTo(t testing.TB, aaaa bool, h dnsmessage.Header, answers, authorities []dnsmessage.Resource) []byte {
	h.ID, h.Response = fuzzID, true
	m := dnsmessage.Message{Header: h, Questions: []dnsmessage.Question{*question(aaaa)}, Answers: answers, Authorities: authorities}
	b, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func soa() dnsmessage.Resource {
	return dnsmessage.Resource{
		Header: dnsmessage.ResourceHeader{Name: dnsmessage.MustNewName("test."), Type: dnsmessage.TypeSOA, Class: dnsmessage.ClassINET, TTL: 60},
		Body: &dnsmessage.SOAResource{NS: dnsmessage.MustNewName("ns.test."), MBox: dnsmessage.MustNewName("h.test."),
			Serial: 1, Refresh: 2, Retry: 3, Expire: 4, MinTTL: 5},
	}
}

// The parts of an answer parseReply reads: the records of the name asked
// and of its CNAMEs, of the type asked only; a question echoed in any case;
// a referral told from a forwarder's "no such record".
func TestParseReply(t *testing.T) {
	recursive := dnsmessage.Header{RecursionAvailable: true}
	msg := replyTo(t, false, recursive, []dnsmessage.Resource{
		dnstest.AAAA("a.test", 60, "2001:db8::1"), // not the type asked
		dnstest.A("A.TEST", 60, "192.0.2.1"),
		dnstest.A("a.test", 60, "192.0.2.1"), // twice: once
		dnstest.A("b.test", 60, "192.0.2.2"), // another name
	}, nil)
	rep, tc, err := parseReply(msg, fuzzID, question(false))
	if err != nil || tc || !slices.Equal(rep.addrs, []netip.Addr{netip.MustParseAddr("192.0.2.1")}) {
		t.Errorf("got %+v %v %v, want 192.0.2.1 alone", rep, tc, err)
	}
	q := question(false)
	q.Name = dnsmessage.MustNewName("A.Test.")
	if _, _, err := parseReply(msg, fuzzID, q); err != nil {
		t.Errorf("the question in another case: %v", err)
	}
	if _, _, err := parseReply(msg, fuzzID+1, question(false)); !errors.Is(err, errMismatch) {
		t.Errorf("another ID: %v, want errMismatch", err)
	}
	if _, _, err := parseReply(msg, fuzzID, question(true)); !errors.Is(err, errMismatch) {
		t.Errorf("another type asked: %v, want errMismatch", err)
	}
	rep, _, _ = parseReply(replyTo(t, false, dnsmessage.Header{}, nil, nil), fuzzID, question(false))
	if !rep.lame {
		t.Error("no record, no RA, no AA, no SOA: not taken for a referral")
	}
	rep, _, _ = parseReply(replyTo(t, false, dnsmessage.Header{}, nil, []dnsmessage.Resource{soa()}), fuzzID, question(false))
	if rep.lame {
		t.Error("no record with the zone's SOA taken for a referral")
	}
	if _, tc, _ := parseReply(replyTo(t, false, dnsmessage.Header{Truncated: true}, nil, nil), fuzzID, question(false)); !tc {
		t.Error("the TC bit not seen")
	}
}

// FuzzParseReply: whatever a server sends, parseReply does not panic, and
// what it returns holds together: addresses of the family asked, none
// repeated, and a name to ask next only where there is no address.
func FuzzParseReply(f *testing.F) {
	recursive := dnsmessage.Header{RecursionAvailable: true}
	for _, seed := range []struct {
		aaaa bool
		msg  []byte
	}{
		{false, replyTo(f, false, recursive, []dnsmessage.Resource{dnstest.A("a.test", 60, "192.0.2.1"), dnstest.A("a.test", 30, "192.0.2.2")}, nil)},
		{true, replyTo(f, true, recursive, []dnsmessage.Resource{dnstest.AAAA("a.test", 60, "2001:db8::1")}, nil)},
		{false, replyTo(f, false, recursive, []dnsmessage.Resource{dnstest.CNAME("a.test", 60, "b.test"), dnstest.CNAME("b.test", 60, "c.test"), dnstest.A("c.test", 60, "192.0.2.3")}, nil)},
		{false, replyTo(f, false, recursive, []dnsmessage.Resource{dnstest.CNAME("a.test", 60, "b.test")}, nil)},
		{false, replyTo(f, false, dnsmessage.Header{RCode: dnsmessage.RCodeNameError}, nil, []dnsmessage.Resource{soa()})},
		{false, replyTo(f, false, dnsmessage.Header{Truncated: true}, nil, nil)},
		{false, replyTo(f, false, dnsmessage.Header{}, nil, nil)},
	} {
		f.Add(seed.aaaa, seed.msg)
	}
	f.Fuzz(func(t *testing.T, aaaa bool, msg []byte) {
		q := question(aaaa)
		rep, tc, err := parseReply(msg, fuzzID, q)
		if err == nil {
			// What parseReply takes for the answer, the shared socket
			// hands to the query (and to no other).
			k, ok := keyOf(msg, true)
			if want := keyFor(fuzzID, q); !ok || k != want {
				t.Fatalf("keyOf = %+v, %v; want %+v", k, ok, want)
			}
		}
		if err != nil || tc {
			if tc && (err != nil || len(rep.addrs) > 0) {
				t.Fatalf("truncated with %+v, %v", rep, err)
			}
			return
		}
		for i, a := range rep.addrs {
			if !a.IsValid() || a.Is4() == aaaa || slices.Contains(rep.addrs[:i], a) {
				t.Fatalf("addresses %v for a question of type AAAA=%v", rep.addrs, aaaa)
			}
		}
		if rep.next != "" && (len(rep.addrs) > 0 || rep.next[len(rep.next)-1] != '.') {
			t.Fatalf("next %q with addresses %v", rep.next, rep.addrs)
		}
		if rep.rcode != dnsmessage.RCodeSuccess && (len(rep.addrs) > 0 || rep.next != "") {
			t.Fatalf("rcode %v with %+v", rep.rcode, rep)
		}
	})
}
