package fsm

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

const testKid = "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"

func testJWK(kid, alg string) json.RawMessage {
	return json.RawMessage(`{"kty":"EC","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",` +
		`"y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0","kid":"` + kid + `","alg":"` + alg + `","use":"sig"}`)
}

func keyPublish(t testing.TB, index uint64, at time.Time, p KeyPublish) Entry {
	t.Helper()
	return Entry{Index: index, Term: 1, Command: true, Data: mustEncode(t, TypeKeyPublish, at, p)}
}

func TestKeyPublishAndRotate(t *testing.T) {
	s := openTestStore(t)
	jwk := testJWK(testKid, "ES256")
	notAfter, retire := t0.Add(720*time.Hour), t0.Add(721*time.Hour)
	res := s.ApplyBatch([]Entry{
		keyPublish(t, 1, t0, KeyPublish{Kid: testKid, Node: "node1", Alg: "ES256", JWK: jwk}),
		keyPublish(t, 2, t0.Add(time.Hour), KeyPublish{Kid: "k2", Node: "node2", Alg: "EdDSA",
			JWK: json.RawMessage(`{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","kid":"k2","alg":"EdDSA"}`)}),
		// Rotation marks the first key; its JWK is the same, spaced differently.
		keyPublish(t, 3, notAfter, KeyPublish{Kid: testKid, Node: "node1", Alg: "ES256",
			JWK:      json.RawMessage(strings.ReplaceAll(string(jwk), ",", ", ")),
			NotAfter: notAfter.UnixNano(), Retire: retire.UnixNano()}),
	})
	for i, r := range res {
		if r.Err != nil {
			t.Fatalf("entry %d: %v", i+1, r.Err)
		}
	}
	if k, ok := res[2].Value.(*PublicKey); !ok || !k.NotAfter.Equal(notAfter) {
		t.Fatalf("rotate result = %#v", res[2].Value)
	}
	err := s.View(func(r Reader) error {
		k, err := r.PublicKey(testKid)
		if err != nil {
			return err
		}
		if !k.PublishedAt.Equal(t0) || !k.NotAfter.Equal(notAfter) || !k.Retire.Equal(retire) ||
			k.Node != "node1" || k.Alg != "ES256" || string(k.JWK) != string(jwk) {
			t.Errorf("rotated key = %+v", k)
		}
		if !k.Signing(notAfter.Add(-1)) || k.Signing(notAfter) || !k.Published(retire.Add(-1)) || k.Published(retire) {
			t.Errorf("Signing/Published wrong around %v/%v", notAfter, retire)
		}
		if _, err := r.PublicKey("nope"); !errors.Is(err, ErrKeyNotFound) {
			t.Errorf("unknown kid: %v, want ErrKeyNotFound", err)
		}
		var kids []string
		if err := r.PublicKeys(func(k *PublicKey) bool { kids = append(kids, k.Kid); return true }); err != nil {
			return err
		}
		if strings.Join(kids, ",") != testKid+",k2" {
			t.Errorf("kids = %v", kids)
		}
		n := 0
		if err := r.PublicKeys(func(*PublicKey) bool { n++; return false }); err != nil || n != 1 {
			t.Errorf("stopping early: n = %d, err = %v", n, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestKeyPublishRefusals(t *testing.T) {
	jwk := testJWK(testKid, "ES256")
	ok := KeyPublish{Kid: testKid, Node: "node1", Alg: "ES256", JWK: jwk}
	with := func(f func(*KeyPublish)) KeyPublish { p := ok; f(&p); return p }
	cases := map[string]KeyPublish{
		"empty kid":       with(func(p *KeyPublish) { p.Kid = "" }),
		"long kid":        with(func(p *KeyPublish) { p.Kid = strings.Repeat("a", 129) }),
		"kid with space":  with(func(p *KeyPublish) { p.Kid = "a b" }),
		"no node":         with(func(p *KeyPublish) { p.Node = "" }),
		"unknown alg":     with(func(p *KeyPublish) { p.Alg = "HS256" }),
		"alg none":        with(func(p *KeyPublish) { p.Alg = "none" }),
		"jwk array":       with(func(p *KeyPublish) { p.JWK = json.RawMessage(`[1]`) }),
		"jwk string":      with(func(p *KeyPublish) { p.JWK = json.RawMessage(`"x"`) }),
		"jwk kid differs": with(func(p *KeyPublish) { p.JWK = testJWK("other", "ES256") }),
		"jwk alg differs": with(func(p *KeyPublish) { p.JWK = testJWK(testKid, "RS256") }),
		"jwk no kty": with(func(p *KeyPublish) {
			p.JWK = json.RawMessage(`{"kid":"` + testKid + `","alg":"ES256"}`)
		}),
		"private member": with(func(p *KeyPublish) {
			p.JWK = json.RawMessage(strings.Replace(string(jwk), `"use"`, `"d":"AAAA","use"`, 1))
		}),
		"jwk too large": with(func(p *KeyPublish) {
			p.JWK = json.RawMessage(strings.Replace(string(jwk), `"use"`, `"pad":"`+strings.Repeat("a", MaxJWKBytes)+`","use"`, 1))
		}),
		"retire without not_after": with(func(p *KeyPublish) { p.Retire = 5 }),
		"retire before not_after":  with(func(p *KeyPublish) { p.NotAfter, p.Retire = 10, 5 }),
		"negative":                 with(func(p *KeyPublish) { p.NotAfter = -1 }),
	}
	for name, p := range cases {
		t.Run(name, func(t *testing.T) {
			s := openTestStore(t)
			res := s.ApplyBatch([]Entry{keyPublish(t, 1, t0, p)})
			if !errors.Is(res[0].Err, ErrInvalidCommand) {
				t.Fatalf("err = %v, want ErrInvalidCommand", res[0].Err)
			}
			if n := countKeys(t, s); n != 0 {
				t.Fatalf("a refused command stored %d keys", n)
			}
		})
	}

	// Republishing changes the marks, never the key.
	s := openTestStore(t)
	marked := with(func(p *KeyPublish) { p.NotAfter, p.Retire = t0.UnixNano(), t0.UnixNano() })
	res := s.ApplyBatch([]Entry{
		keyPublish(t, 1, t0, ok),
		keyPublish(t, 2, t0, with(func(p *KeyPublish) {
			p.JWK = json.RawMessage(strings.Replace(string(jwk), `"x":"f`, `"x":"g`, 1))
		})),
		keyPublish(t, 3, t0, with(func(p *KeyPublish) { p.Node = "node2" })),
		keyPublish(t, 4, t0, marked),
		keyPublish(t, 5, t0, ok), // cannot become current again
		{Index: 6, Term: 1, Command: true, Data: []byte(`{"type":"key.publish","v":1,"at":1,"p":{"kid":"a","node":"n","alg":"ES256","jwk":{},"extra":1}}`)},
		{Index: 7, Term: 1, Command: true, Data: []byte(`{"type":"key.publish","v":3,"at":1,"p":{}}`)},
	})
	want := []error{nil, ErrInvalidCommand, ErrInvalidCommand, nil, ErrInvalidCommand, ErrMalformedCommand, ErrUnknownCommand}
	for i, w := range want {
		if !errors.Is(res[i].Err, w) {
			t.Errorf("entry %d: err = %v, want %v", i+1, res[i].Err, w)
		}
	}
	if err := s.View(func(r Reader) error {
		k, err := r.PublicKey(testKid)
		if err == nil && (k.Node != "node1" || k.NotAfter.IsZero()) {
			t.Errorf("key after refusals = %+v", k)
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
}

func countKeys(t testing.TB, s *Store) int {
	t.Helper()
	n := 0
	if err := s.View(func(r Reader) error {
		return r.PublicKeys(func(*PublicKey) bool { n++; return true })
	}); err != nil {
		t.Fatal(err)
	}
	return n
}
