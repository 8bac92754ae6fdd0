package escrow

import "errors"

// Sentinel errors, matched with errors.Is.
var (
	// ErrShares reports recovery shares that cannot be combined: too few,
	// of different lengths, a zero or repeated index.
	ErrShares = errors.New("escrow: invalid recovery shares")
)
