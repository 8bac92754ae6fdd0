package authcore

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"

	"github.com/bulwark-auth/bulwark/authcore/internal/argon2"
	"golang.org/x/text/unicode/norm"

	"github.com/bulwark-auth/bulwark/authcore/commonpw"
)

const (
	hashKeyLen = 32 // bytes of argon2id output HashPassword stores
	saltLen    = 16 // bytes of salt NewSalt returns

	// Bounds on what HashPassword accepts and VerifyPassword parses: generous
	// for any real deployment, but a corrupt or hostile stored hash can neither
	// make a verification allocate more than 4 GiB nor run for minutes.
	minSaltLen, maxSaltLen = 8, 64
	minHashLen, maxHashLen = 8, 64
	maxMemoryKiB           = 4 << 20 // 4 GiB
	maxIterations          = 100

	phcPrefix = "$argon2id$v=19$"
	// maxPHCLen exceeds the longest string the bounds above allow.
	maxPHCLen = 256
)

// HashParams are argon2id's cost parameters.
type HashParams struct {
	MemoryKiB   uint32 // m: memory in KiB
	Iterations  uint32 // t: passes over the memory
	Parallelism uint8  // p: lanes
}

// DefaultHashParams returns OWASP's recommended argon2id minimum: m=19456 (19 MiB),
// t=2, p=1: about 40 ms of one core per hash on the project's 2-core machines
// (BenchmarkHashDefault).
func DefaultHashParams() HashParams {
	return HashParams{MemoryKiB: 19456, Iterations: 2, Parallelism: 1}
}

// Validate reports every way p falls outside what bulwark accepts: at least one
// iteration and one lane, at least 8 KiB of memory per lane (RFC 9106), at most
// 4 GiB of memory and 100 iterations. Each error wraps ErrInvalidHashParams.
func (p HashParams) Validate() error {
	var errs []error
	if p.Iterations < 1 || p.Iterations > maxIterations {
		errs = append(errs, fmt.Errorf("%w: iterations (t) %d not in 1..%d",
			ErrInvalidHashParams, p.Iterations, maxIterations))
	}
	if p.Parallelism < 1 {
		errs = append(errs, fmt.Errorf("%w: parallelism (p) must be at least 1", ErrInvalidHashParams))
	}
	if p.MemoryKiB < 8*uint32(p.Parallelism) || p.MemoryKiB < 8 || p.MemoryKiB > maxMemoryKiB {
		errs = append(errs, fmt.Errorf("%w: memory (m) %d KiB not in %d..%d (8 KiB per lane, at most 4 GiB)",
			ErrInvalidHashParams, p.MemoryKiB, max(8, 8*uint32(p.Parallelism)), maxMemoryKiB))
	}
	return errors.Join(errs...)
}

// NewSalt returns a fresh random salt of 16 bytes for HashPassword. The node that
// proposes a password change calls it, so the replicated command carries the
// finished hash and no node ever hashes with randomness of its own.
func NewSalt() ([]byte, error) {
	salt := make([]byte, saltLen)
	if _, err := rand.Read(salt); err != nil {
		return nil, err
	}
	return salt, nil
}

// HashPassword hashes password with argon2id under p and salt and returns the PHC
// string, e.g. "$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>" with salt and hash in
// unpadded standard base64 and a 32-byte hash. salt must be 8 to 64 bytes; use
// NewSalt. The password is hashed as given: check it with PasswordPolicy.Check
// first.
func HashPassword(password string, p HashParams, salt []byte) (string, error) {
	if err := p.Validate(); err != nil {
		return "", err
	}
	if len(salt) < minSaltLen || len(salt) > maxSaltLen {
		return "", fmt.Errorf("%w: salt is %d bytes, want %d..%d",
			ErrInvalidHashParams, len(salt), minSaltLen, maxSaltLen)
	}
	key := argon2.IDKey([]byte(password), salt, p.Iterations, p.MemoryKiB, p.Parallelism, hashKeyLen)
	return encodePHC(p, salt, key), nil
}

// VerifyPassword reports whether password matches phc, a PHC string from
// HashPassword. The comparison takes constant time. A phc that is not argon2id
// v=19, does not parse, or has parameters outside HashParams.Validate's bounds or
// a salt or hash outside 8..64 bytes gives an error wrapping ErrUnsupportedHash or
// ErrMalformedHash, and ok false; such a string is never evaluated.
func VerifyPassword(password, phc string) (ok bool, err error) {
	h, err := parsePHC(phc)
	if err != nil {
		return false, err
	}
	key := argon2.IDKey([]byte(password), h.salt, h.params.Iterations, h.params.MemoryKiB,
		h.params.Parallelism, uint32(len(h.hash)))
	return subtle.ConstantTimeCompare(key, h.hash) == 1, nil
}

// NeedsRehash reports whether phc differs from what HashPassword would store today
// with p: other parameters (stronger or weaker), another salt or hash length, or a
// string that does not parse. After a successful login the caller rehashes the
// password it just verified and proposes the new hash.
func NeedsRehash(phc string, p HashParams) bool {
	h, err := parsePHC(phc)
	if err != nil {
		return true
	}
	return h.params != p || len(h.salt) != saltLen || len(h.hash) != hashKeyLen
}

// dummyHashes maps HashParams to a func() string computing that hash once.
var dummyHashes sync.Map

// dummySalt is fixed: the dummy hash protects no secret, only timing.
var dummySalt = func() []byte {
	s := sha256.Sum256([]byte("bulwark dummy password hash salt"))
	return s[:saltLen]
}()

// DummyHash returns a PHC string under p to verify against when a login names no
// existing (or a disabled) user, so that the answer takes as long as a real wrong
// password: VerifyPassword(password, DummyHash(p)) costs what a real check costs.
// It hashes a random password drawn once per process, so no known password
// matches it; the caller discards the result all the same. Each p is hashed once
// and cached. p must pass Validate (config loading checks it): DummyHash panics
// otherwise, like argon2 itself on impossible parameters.
func DummyHash(p HashParams) string {
	f, ok := dummyHashes.Load(p)
	if !ok {
		f, _ = dummyHashes.LoadOrStore(p, sync.OnceValue(func() string {
			phc, err := HashPassword(rand.Text(), p, dummySalt)
			if err != nil {
				panic("authcore: DummyHash: " + err.Error())
			}
			return phc
		}))
	}
	return f.(func() string)()
}

// phcHash is a parsed argon2id PHC string.
type phcHash struct {
	params     HashParams
	salt, hash []byte
}

func encodePHC(p HashParams, salt, key []byte) string {
	return fmt.Sprintf("%sm=%d,t=%d,p=%d$%s$%s", phcPrefix, p.MemoryKiB, p.Iterations, p.Parallelism,
		base64.RawStdEncoding.EncodeToString(salt), base64.RawStdEncoding.EncodeToString(key))
}

// parsePHC parses exactly the form encodePHC writes:
// $argon2id$v=19$m=<m>,t=<t>,p=<p>$<salt>$<hash>, decimal numbers without sign or
// leading zeros, unpadded standard base64 in canonical form. Optional PHC fields
// (keyid, data) are not accepted. Errors never quote the salt or hash.
func parsePHC(s string) (phcHash, error) {
	var h phcHash
	if len(s) > maxPHCLen {
		return h, malformedHash("longer than %d bytes", maxPHCLen)
	}
	fields := strings.Split(s, "$")
	if len(fields) != 6 || fields[0] != "" {
		return h, malformedHash("want 5 fields each after a '$', got %d", len(fields)-1)
	}
	if fields[1] != "argon2id" {
		return h, fmt.Errorf("%w: algorithm %.20q, want argon2id", ErrUnsupportedHash, fields[1])
	}
	if fields[2] != "v=19" {
		return h, fmt.Errorf("%w: version field %.20q, want v=19", ErrUnsupportedHash, fields[2])
	}
	params := strings.Split(fields[3], ",")
	if len(params) != 3 {
		return h, malformedHash("parameters: want m=,t=,p=")
	}
	var nums [3]uint64
	for i, name := range []string{"m", "t", "p"} {
		v, ok := strings.CutPrefix(params[i], name+"=")
		if !ok {
			return h, malformedHash("parameters: want m=,t=,p= in that order")
		}
		n, err := parseDecimal(v)
		if err != nil {
			return h, malformedHash("parameter %s: %v", name, err)
		}
		nums[i] = n
	}
	if nums[0] > maxMemoryKiB || nums[1] > maxIterations || nums[2] > 255 {
		return h, malformedHash("parameters m=%d,t=%d,p=%d out of range", nums[0], nums[1], nums[2])
	}
	h.params = HashParams{MemoryKiB: uint32(nums[0]), Iterations: uint32(nums[1]), Parallelism: uint8(nums[2])}
	if err := h.params.Validate(); err != nil {
		return h, fmt.Errorf("%w: %w", ErrMalformedHash, err)
	}
	var err error
	if h.salt, err = decodeB64(fields[4]); err != nil {
		return h, malformedHash("salt: %v", err)
	}
	if h.hash, err = decodeB64(fields[5]); err != nil {
		return h, malformedHash("hash: %v", err)
	}
	if n := len(h.salt); n < minSaltLen || n > maxSaltLen {
		return h, malformedHash("salt is %d bytes, want %d..%d", n, minSaltLen, maxSaltLen)
	}
	if n := len(h.hash); n < minHashLen || n > maxHashLen {
		return h, malformedHash("hash is %d bytes, want %d..%d", n, minHashLen, maxHashLen)
	}
	return h, nil
}

func malformedHash(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrMalformedHash, fmt.Sprintf(format, args...))
}

// parseDecimal accepts only canonical decimal: digits, no sign, no leading zero,
// at most 10 digits.
func parseDecimal(s string) (uint64, error) {
	if s == "" || len(s) > 10 || (len(s) > 1 && s[0] == '0') {
		return 0, errors.New("not a canonical decimal number")
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, errors.New("not a canonical decimal number")
		}
	}
	return strconv.ParseUint(s, 10, 64)
}

// decodeB64 decodes unpadded standard base64 and insists on the canonical
// encoding (the decoder alone would skip CR and LF and ignore stray low bits).
func decodeB64(s string) ([]byte, error) {
	b, err := base64.RawStdEncoding.DecodeString(s)
	if err != nil || base64.RawStdEncoding.EncodeToString(b) != s {
		return nil, errors.New("not canonical unpadded base64")
	}
	return b, nil
}

// PasswordPolicy is what a new password must satisfy, after NIST SP 800-63B:
// length limits counted in characters (runes) after NFKC normalisation, no
// password from the common-passwords list, none built on the username, and no
// composition rules (no "one digit, one symbol").
type PasswordPolicy struct {
	MinLength int // fewest runes, after NFKC
	MaxLength int // most runes, after NFKC
}

// DefaultPasswordPolicy returns 15 to 128 characters: SP 800-63B-4 asks for at
// least 15 where the password alone authenticates, and for at least 64 allowed.
func DefaultPasswordPolicy() PasswordPolicy {
	return PasswordPolicy{MinLength: 15, MaxLength: 128}
}

// Validate reports every way the policy is unusable: MinLength below 8 (the NIST
// floor), MaxLength below 64 or MinLength, or above 1024. Each error wraps
// ErrInvalidPasswordPolicy.
func (p PasswordPolicy) Validate() error {
	var errs []error
	if p.MinLength < 8 {
		errs = append(errs, fmt.Errorf("%w: min length %d, want at least 8", ErrInvalidPasswordPolicy, p.MinLength))
	}
	if p.MaxLength < 64 || p.MaxLength < p.MinLength || p.MaxLength > 1024 {
		errs = append(errs, fmt.Errorf("%w: max length %d, want %d..1024",
			ErrInvalidPasswordPolicy, p.MaxLength, max(64, p.MinLength)))
	}
	return errors.Join(errs...)
}

// minUsernameInPassword is the shortest username whose occurrence inside a
// password is refused; a shorter one ("al") is refused only as the whole password,
// or it would rule out countless unrelated passwords.
const minUsernameInPassword = 4

// Check reports whether password may be set for username (empty when there is no
// username yet to compare with). It refuses, with an error wrapping
// ErrWeakPassword and saying why, a password that is not valid UTF-8, contains a
// control character (NUL, newline, tab, DEL, C1), is shorter than MinLength or
// longer than MaxLength runes after NFKC, is one character repeated, is or
// contains the username (case-insensitively, after NFKC), or is on the
// common-passwords list (case-insensitively, after NFKC). Spaces and every other
// printable character are allowed; nothing about the mix of characters is
// required.
func (p PasswordPolicy) Check(password, username string) error {
	if !utf8.ValidString(password) {
		return weakPassword("not valid UTF-8")
	}
	for _, r := range password {
		if unicode.IsControl(r) {
			return weakPassword("contains a control character")
		}
	}
	n := utf8.RuneCountInString(norm.NFKC.String(password))
	if n < p.MinLength {
		return weakPassword(fmt.Sprintf("shorter than %d characters", p.MinLength))
	}
	if n > p.MaxLength {
		return weakPassword(fmt.Sprintf("longer than %d characters", p.MaxLength))
	}
	key := commonpw.Key(password)
	if first, _ := utf8.DecodeRuneInString(key); key != "" && strings.Trim(key, string(first)) == "" {
		return weakPassword("a single character repeated")
	}
	if user := commonpw.Key(username); user != "" {
		if key == user {
			return weakPassword("the same as the username")
		}
		if utf8.RuneCountInString(user) >= minUsernameInPassword && strings.Contains(key, user) {
			return weakPassword("contains the username")
		}
	}
	if commonpw.Contains(password) {
		return weakPassword("on the list of commonly used passwords")
	}
	return nil
}

func weakPassword(reason string) error {
	return fmt.Errorf("%w: %s", ErrWeakPassword, reason)
}
