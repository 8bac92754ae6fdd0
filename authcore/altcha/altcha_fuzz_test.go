package altcha

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"testing"
	"time"
)

// FuzzVerify: no solution text panics Verify; every refusal is one of its
// three errors; what it accepts solves a challenge signed under the key,
// unexpired, and verifies again once re-encoded. Many texts carry one
// solution (either base64 alphabet, any JSON spelling), so whoever makes a
// solution good once must key that on its challenge, not on its text.
func FuzzVerify(f *testing.F) {
	key := []byte("fuzz key for altcha signatures!!")
	now := time.Unix(1_800_000_000, 0)
	salt := "00112233445566778899aabb?expires=1800000600"
	ch := hashOf(salt, 4242)
	good := Payload{Algorithm: Algorithm, Challenge: ch, Number: 4242, Salt: salt, Signature: sign(key, ch)}
	enc := func(p Payload) string {
		b, err := json.Marshal(p)
		if err != nil {
			f.Fatal(err)
		}
		return base64.StdEncoding.EncodeToString(b)
	}
	expired := good
	expired.Salt = "00?expires=1700000000"
	expired.Challenge = hashOf(expired.Salt, 1)
	expired.Number, expired.Signature = 1, sign(key, expired.Challenge)
	forged := good
	forged.Number = 4243
	raw, _ := json.Marshal(good)
	for _, s := range []string{enc(good), base64.RawURLEncoding.EncodeToString(raw), enc(expired), enc(forged),
		base64.StdEncoding.EncodeToString([]byte(`{"algorithm":"SHA-256","number":-1}`)), "", "e30=", "!!"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, exp, err := Verify(key, s, now)
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrForged) && !errors.Is(err, ErrExpired) {
				t.Fatalf("refusal %v is none of Verify's errors", err)
			}
			return
		}
		if p.Algorithm != Algorithm || sign(key, p.Challenge) != p.Signature || hashOf(p.Salt, p.Number) != p.Challenge || !now.Before(exp) {
			t.Fatalf("accepted %+v expiring %v", p, exp)
		}
		again, exp2, err := Verify(key, enc(p), now)
		if err != nil || again != p || !exp2.Equal(exp) {
			t.Fatalf("%+v re-encoded: %+v %v %v", p, again, exp2, err)
		}
	})
}
