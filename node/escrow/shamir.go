package escrow

// Shamir's scheme over GF(2^8) (the AES field, x^8+x^4+x^3+x+1), byte by
// byte, share i being the polynomials evaluated at x = i. circl's
// secretsharing works over a prime-order group from circl/group, which
// needs a module (go-ristretto) this build does not carry; GF(2^8) is the
// classic choice for byte strings (Vault, ssss) and is done here in
// constant time, without tables.

import (
	"crypto/rand"
	"fmt"
)

// maxParts is how many shares GF(2^8) has room for (x = 1..255).
const maxParts = 255

// part is one share of a split: the polynomials evaluated at index.
type part struct {
	index byte   // 1..255, never 0 (x = 0 is the secret)
	value []byte // as long as the secret
}

// splitSecret splits secret into n parts of which any k recover it and
// any k-1 reveal nothing. 1 <= k <= n <= 255; part i has index i.
func splitSecret(secret []byte, k, n int) ([]part, error) {
	if k < 1 || n < k || n > maxParts {
		return nil, fmt.Errorf("%w: %d of %d: want 1 <= k <= n <= %d", ErrShares, k, n, maxParts)
	}
	if len(secret) == 0 {
		return nil, fmt.Errorf("%w: empty secret", ErrShares)
	}
	parts := make([]part, n)
	for i := range parts {
		parts[i] = part{index: byte(i + 1), value: make([]byte, len(secret))}
	}
	coef := make([]byte, k) // coef[0] is the secret byte, the rest random
	defer clear(coef)
	for j, s := range secret {
		coef[0] = s
		rand.Read(coef[1:])
		for i := range parts {
			parts[i].value[j] = gfEval(coef, parts[i].index)
		}
	}
	return parts, nil
}

// combineShares interpolates the parts at 0. Given at least k parts of
// one split it returns the secret; given fewer, or parts of different
// splits, it returns a wrong value without noticing: callers check the
// result (the recovery pad's AEAD does).
func combineShares(parts []part) ([]byte, error) {
	if len(parts) == 0 {
		return nil, fmt.Errorf("%w: no shares", ErrShares)
	}
	size := len(parts[0].value)
	seen := map[byte]bool{}
	for _, s := range parts {
		switch {
		case s.index == 0:
			return nil, fmt.Errorf("%w: share index 0", ErrShares)
		case seen[s.index]:
			return nil, fmt.Errorf("%w: share %d given twice", ErrShares, s.index)
		case len(s.value) != size || size == 0:
			return nil, fmt.Errorf("%w: shares of different lengths", ErrShares)
		}
		seen[s.index] = true
	}
	// Lagrange basis at 0: l_i = prod_{m != i} x_m / (x_m - x_i); in
	// characteristic 2, subtraction is XOR.
	basis := make([]byte, len(parts))
	for i, si := range parts {
		l := byte(1)
		for m, sm := range parts {
			if m != i {
				l = gfMul(l, gfMul(sm.index, gfInv(sm.index^si.index)))
			}
		}
		basis[i] = l
	}
	out := make([]byte, size)
	for j := range out {
		var v byte
		for i, s := range parts {
			v ^= gfMul(basis[i], s.value[j])
		}
		out[j] = v
	}
	return out, nil
}

// gfEval evaluates the polynomial with coefficients coef (constant first)
// at x, by Horner's rule.
func gfEval(coef []byte, x byte) byte {
	var y byte
	for i := len(coef) - 1; i >= 0; i-- {
		y = gfMul(y, x) ^ coef[i]
	}
	return y
}

// gfMul multiplies in GF(2^8) mod x^8+x^4+x^3+x+1 without branches or
// tables, so its time does not depend on the operands.
func gfMul(a, b byte) byte {
	var p byte
	for range 8 {
		p ^= -(b & 1) & a
		carry := -(a >> 7)
		a = a<<1 ^ 0x1b&carry
		b >>= 1
	}
	return p
}

// gfInv is a^254 = a^-1 (and 0 for 0).
func gfInv(a byte) byte {
	r, sq := byte(1), a
	for range 7 { // 254 = 2+4+...+128
		sq = gfMul(sq, sq)
		r = gfMul(r, sq)
	}
	return r
}
