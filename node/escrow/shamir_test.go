package escrow

import (
	"bytes"
	"errors"
	"testing"

	"github.com/bulwark-auth/bulwark/tpm"
)

func TestShareSplitCombineAnyK(t *testing.T) {
	secret := tpm.NewDataKey()
	for _, kn := range [][2]int{{1, 1}, {2, 2}, {2, 3}, {3, 5}, {5, 5}, {4, 7}} {
		k, n := kn[0], kn[1]
		shares, err := splitSecret(secret, k, n)
		if err != nil {
			t.Fatal(err)
		}
		// Every subset of size k recovers; every subset of size k-1 does not.
		for mask := 1; mask < 1<<n; mask++ {
			var sub []part
			for i := range n {
				if mask&(1<<i) != 0 {
					sub = append(sub, shares[i])
				}
			}
			got, err := combineShares(sub)
			if err != nil {
				t.Fatal(err)
			}
			switch {
			case len(sub) >= k && !bytes.Equal(got, secret):
				t.Fatalf("%d of %d: subset %b does not recover", k, n, mask)
			case len(sub) < k && bytes.Equal(got, secret):
				t.Fatalf("%d of %d: subset %b of %d shares recovers", k, n, mask, len(sub))
			}
		}
	}
}

func TestShareRefusals(t *testing.T) {
	for _, kn := range [][2]int{{0, 1}, {3, 2}, {2, 256}} {
		if _, err := splitSecret([]byte("0123456789abcdef"), kn[0], kn[1]); !errors.Is(err, ErrShares) {
			t.Errorf("split %v: %v", kn, err)
		}
	}
	shares, _ := splitSecret(tpm.NewDataKey(), 2, 3)
	for name, sub := range map[string][]part{
		"none":      nil,
		"twice":     {shares[0], shares[0]},
		"index 0":   {{index: 0, value: shares[0].value}, shares[1]},
		"lengths":   {shares[0], {index: 2, value: shares[1].value[:5]}},
		"empty val": {{index: 1}, {index: 2}},
	} {
		if _, err := combineShares(sub); !errors.Is(err, ErrShares) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestGF256(t *testing.T) {
	// x * x^-1 = 1 for every non-zero x; known AES products.
	for a := 1; a < 256; a++ {
		if gfMul(byte(a), gfInv(byte(a))) != 1 {
			t.Fatalf("%#x has no inverse", a)
		}
	}
	if gfMul(0x57, 0x83) != 0xc1 || gfMul(0x57, 0x13) != 0xfe {
		t.Error("GF(2^8) products differ from FIPS 197")
	}
}
