package authcore

import (
	"encoding/base64"
	"encoding/hex"
	"errors"
	"strings"
	"sync"
	"testing"

	"golang.org/x/crypto/argon2"
)

// testParams are argon2id's cheapest valid costs: the tests check encoding and
// parsing, not strength. Only TestHashPasswordKnownVectors and
// BenchmarkHashDefault pay for DefaultHashParams.
var testParams = HashParams{MemoryKiB: 8, Iterations: 1, Parallelism: 1}

func mustHash(t testing.TB, password string, p HashParams, salt []byte) string {
	t.Helper()
	phc, err := HashPassword(password, p, salt)
	if err != nil {
		t.Fatalf("HashPassword(%q, %+v): %v", password, p, err)
	}
	return phc
}

// The expected strings come from the reference implementation's command line
// tool (phc-winner-argon2, Debian package argon2 0~20171227), not from the Go code
// under test, e.g.
//
//	echo -n password | argon2 somesaltsomesalt -id -t 2 -k 19456 -p 1 -l 32 -e
func TestHashPasswordKnownVectors(t *testing.T) {
	tests := []struct {
		name, password, salt string
		p                    HashParams
		want                 string
		hex                  string // raw hash as the reference tool prints it
	}{
		{
			name: "default params", password: "password", salt: "somesaltsomesalt", p: DefaultHashParams(),
			want: "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$K13EBUiG7JV+9ZxztmHFTdb7J0WQsnj2V8bZaqyPptE",
			hex:  "2b5dc4054886ec957ef59c73b661c54dd6fb274590b278f657c6d96aac8fa6d1",
		},
		{
			name: "spaces", password: "correct horse battery staple", salt: "somesalt12345678",
			p:    HashParams{MemoryKiB: 1024, Iterations: 2, Parallelism: 1},
			want: "$argon2id$v=19$m=1024,t=2,p=1$c29tZXNhbHQxMjM0NTY3OA$4KlJyBbEDXcoISiOzs6ivYpCydsHQ9k7s71f7NjbzhE",
			hex:  "e0a949c816c40d772821288ececea2bd8a42c9db0743d93bb3bd5fecd8dbce11",
		},
		{
			// m not a multiple of 4p: argon2 rounds it down internally, but the
			// hash and the PHC string carry the value given.
			name: "non-ASCII, two lanes, odd memory", password: "pässwörd", salt: "saltsaltsaltsalt",
			p:    HashParams{MemoryKiB: 1001, Iterations: 3, Parallelism: 2},
			want: "$argon2id$v=19$m=1001,t=3,p=2$c2FsdHNhbHRzYWx0c2FsdA$t+YZ1hYaWBVKB3A9K49JRj+7SnVrAKtn+hYnfxQ7tac",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := mustHash(t, tt.password, tt.p, []byte(tt.salt))
			if got != tt.want {
				t.Fatalf("HashPassword:\n got %s\nwant %s", got, tt.want)
			}
			// The encoded hash is argon2.IDKey's output, unpadded standard base64.
			key := argon2.IDKey([]byte(tt.password), []byte(tt.salt), tt.p.Iterations, tt.p.MemoryKiB, tt.p.Parallelism, 32)
			if enc := base64.RawStdEncoding.EncodeToString(key); !strings.HasSuffix(got, "$"+enc) {
				t.Errorf("hash field is not IDKey %x", key)
			}
			if tt.hex != "" && hex.EncodeToString(key) != tt.hex {
				t.Errorf("IDKey = %x, want %s", key, tt.hex)
			}
			if ok, err := VerifyPassword(tt.password, got); !ok || err != nil {
				t.Errorf("VerifyPassword(right password) = %v, %v; want true, nil", ok, err)
			}
		})
	}
}

func TestHashPasswordRoundTrip(t *testing.T) {
	salt, err := NewSalt()
	if err != nil {
		t.Fatal(err)
	}
	if len(salt) != 16 {
		t.Fatalf("NewSalt: %d bytes, want 16", len(salt))
	}
	other, _ := NewSalt()
	if string(salt) == string(other) {
		t.Fatal("two NewSalt calls returned the same salt")
	}
	for _, pw := range []string{"hunter2 hunter2", "", "日本語のパスワード", "pass\x00word", strings.Repeat("x", 4096)} {
		phc := mustHash(t, pw, testParams, salt)
		if !strings.HasPrefix(phc, "$argon2id$v=19$m=8,t=1,p=1$") {
			t.Errorf("PHC %q: wrong prefix", phc)
		}
		if ok, err := VerifyPassword(pw, phc); !ok || err != nil {
			t.Errorf("VerifyPassword(%.10q, own hash) = %v, %v; want true, nil", pw, ok, err)
		}
		for _, wrong := range []string{pw + "x", strings.ToUpper(pw) + "!", "wrong"} {
			if ok, err := VerifyPassword(wrong, phc); ok || err != nil {
				t.Errorf("VerifyPassword(%.10q, hash of %.10q) = %v, %v; want false, nil", wrong, pw, ok, err)
			}
		}
		// Another salt gives another hash of the same password.
		if phc2 := mustHash(t, pw, testParams, other); phc2 == phc {
			t.Errorf("same PHC for different salts")
		}
	}
}

func TestHashPasswordRejects(t *testing.T) {
	salt := make([]byte, 16)
	tests := []struct {
		name string
		p    HashParams
		salt []byte
	}{
		{"zero params", HashParams{}, salt},
		{"zero iterations", HashParams{MemoryKiB: 64, Iterations: 0, Parallelism: 1}, salt},
		{"101 iterations", HashParams{MemoryKiB: 64, Iterations: 101, Parallelism: 1}, salt},
		{"zero parallelism", HashParams{MemoryKiB: 64, Iterations: 1, Parallelism: 0}, salt},
		{"memory below 8 KiB per lane", HashParams{MemoryKiB: 31, Iterations: 1, Parallelism: 4}, salt},
		{"memory over 4 GiB", HashParams{MemoryKiB: 4<<20 + 1, Iterations: 1, Parallelism: 1}, salt},
		{"nil salt", testParams, nil},
		{"7-byte salt", testParams, make([]byte, 7)},
		{"65-byte salt", testParams, make([]byte, 65)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			phc, err := HashPassword("password", tt.p, tt.salt)
			if !errors.Is(err, ErrInvalidHashParams) || phc != "" {
				t.Fatalf("HashPassword = %q, %v; want error wrapping ErrInvalidHashParams", phc, err)
			}
		})
	}
	// The bounds themselves are accepted.
	for _, n := range []int{8, 64} {
		mustHash(t, "password", testParams, make([]byte, n))
	}
}

func TestHashParamsValidate(t *testing.T) {
	if err := DefaultHashParams().Validate(); err != nil {
		t.Fatalf("default params: %v", err)
	}
	if got := DefaultHashParams(); got != (HashParams{MemoryKiB: 19456, Iterations: 2, Parallelism: 1}) {
		t.Fatalf("DefaultHashParams = %+v, want OWASP m=19456,t=2,p=1", got)
	}
	for _, p := range []HashParams{
		testParams,
		{MemoryKiB: 4 << 20, Iterations: 100, Parallelism: 255},
		{MemoryKiB: 8 * 255, Iterations: 1, Parallelism: 255},
	} {
		if err := p.Validate(); err != nil {
			t.Errorf("%+v: %v", p, err)
		}
	}
	// Every problem is reported at once.
	err := HashParams{}.Validate()
	if !errors.Is(err, ErrInvalidHashParams) {
		t.Fatalf("zero params: %v; want ErrInvalidHashParams", err)
	}
	for _, part := range []string{"iterations", "parallelism", "memory"} {
		if !strings.Contains(err.Error(), part) {
			t.Errorf("zero params error %q does not mention %s", err, part)
		}
	}
}

// validPHC is a well-formed hash of "password" under testParams for the
// malformed-string tests to mutate.
func validPHC(t testing.TB) string {
	t.Helper()
	return mustHash(t, "password", testParams, []byte("0123456789abcdef"))
}

func TestVerifyPasswordMalformed(t *testing.T) {
	good := validPHC(t)
	fields := strings.Split(good, "$") // "", alg, v, params, salt, hash
	salt, hash := fields[4], fields[5]
	b64 := base64.RawStdEncoding.EncodeToString
	join := func(f ...string) string { return strings.Join(f, "$") }

	tests := []struct {
		name string
		phc  string
		want error
	}{
		{"empty", "", ErrMalformedHash},
		{"garbage", "not a hash", ErrMalformedHash},
		{"no leading $", strings.TrimPrefix(good, "$"), ErrMalformedHash},
		{"argon2i", join("", "argon2i", "v=19", "m=8,t=1,p=1", salt, hash), ErrUnsupportedHash},
		{"argon2d", join("", "argon2d", "v=19", "m=8,t=1,p=1", salt, hash), ErrUnsupportedHash},
		{"ARGON2ID", join("", "ARGON2ID", "v=19", "m=8,t=1,p=1", salt, hash), ErrUnsupportedHash},
		{"bcrypt", "$2a$10$N9qo8uLOickgx2ZMRZoMyeIjZAgcfl7p92ldGxad68LJZdL17lhWy", ErrMalformedHash},
		{"scrypt", join("", "scrypt", "ln=16,r=8,p=1", salt, hash), ErrMalformedHash},
		{"version 16", join("", "argon2id", "v=16", "m=8,t=1,p=1", salt, hash), ErrUnsupportedHash},
		{"version 0x13 spelled", join("", "argon2id", "v=0x13", "m=8,t=1,p=1", salt, hash), ErrUnsupportedHash},
		{"no version", join("", "argon2id", "m=8,t=1,p=1", salt, hash), ErrMalformedHash},
		{"no hash", join("", "argon2id", "v=19", "m=8,t=1,p=1", salt), ErrMalformedHash},
		{"no salt or hash", join("", "argon2id", "v=19", "m=8,t=1,p=1"), ErrMalformedHash},
		{"extra field", good + "$" + hash, ErrMalformedHash},
		{"trailing $", good + "$", ErrMalformedHash},
		{"empty salt", join("", "argon2id", "v=19", "m=8,t=1,p=1", "", hash), ErrMalformedHash},
		{"empty hash", join("", "argon2id", "v=19", "m=8,t=1,p=1", salt, ""), ErrMalformedHash},
		{"bad base64 salt", join("", "argon2id", "v=19", "m=8,t=1,p=1", "!!!!"+salt, hash), ErrMalformedHash},
		{"bad base64 hash", join("", "argon2id", "v=19", "m=8,t=1,p=1", salt, hash[:len(hash)-2]+"*"), ErrMalformedHash},
		{"padded base64", join("", "argon2id", "v=19", "m=8,t=1,p=1", salt, hash+"="), ErrMalformedHash},
		{"URL base64", join("", "argon2id", "v=19", "m=8,t=1,p=1", salt, strings.NewReplacer("+", "-", "/", "_").Replace(b64([]byte{0xfb, 0xff, 0xfe, 0xfb, 0xff, 0xfe, 0xfb, 0xff, 0xfe}))), ErrMalformedHash},
		{"newline in base64", join("", "argon2id", "v=19", "m=8,t=1,p=1", salt[:4]+"\n"+salt[4:], hash), ErrMalformedHash},
		{"non-canonical trailing bits", join("", "argon2id", "v=19", "m=8,t=1,p=1", salt[:len(salt)-1]+"R", hash), ErrMalformedHash},
		{"salt 7 bytes", join("", "argon2id", "v=19", "m=8,t=1,p=1", b64(make([]byte, 7)), hash), ErrMalformedHash},
		{"salt 65 bytes", join("", "argon2id", "v=19", "m=8,t=1,p=1", b64(make([]byte, 65)), hash), ErrMalformedHash},
		{"hash 7 bytes", join("", "argon2id", "v=19", "m=8,t=1,p=1", salt, b64(make([]byte, 7))), ErrMalformedHash},
		{"hash 65 bytes", join("", "argon2id", "v=19", "m=8,t=1,p=1", salt, b64(make([]byte, 65))), ErrMalformedHash},
		{"m over 4 GiB", join("", "argon2id", "v=19", "m=4194305,t=1,p=1", salt, hash), ErrMalformedHash},
		{"m overflows uint32", join("", "argon2id", "v=19", "m=4294967296,t=1,p=1", salt, hash), ErrMalformedHash},
		{"m huge", join("", "argon2id", "v=19", "m=99999999999999999999,t=1,p=1", salt, hash), ErrMalformedHash},
		{"m below 8 per lane", join("", "argon2id", "v=19", "m=15,t=1,p=2", salt, hash), ErrMalformedHash},
		{"m zero", join("", "argon2id", "v=19", "m=0,t=1,p=1", salt, hash), ErrMalformedHash},
		{"t zero", join("", "argon2id", "v=19", "m=8,t=0,p=1", salt, hash), ErrMalformedHash},
		{"t 101", join("", "argon2id", "v=19", "m=8,t=101,p=1", salt, hash), ErrMalformedHash},
		{"p zero", join("", "argon2id", "v=19", "m=8,t=1,p=0", salt, hash), ErrMalformedHash},
		{"p 256", join("", "argon2id", "v=19", "m=4096,t=1,p=256", salt, hash), ErrMalformedHash},
		{"negative", join("", "argon2id", "v=19", "m=-8,t=1,p=1", salt, hash), ErrMalformedHash},
		{"plus sign", join("", "argon2id", "v=19", "m=+8,t=1,p=1", salt, hash), ErrMalformedHash},
		{"leading zero", join("", "argon2id", "v=19", "m=08,t=1,p=1", salt, hash), ErrMalformedHash},
		{"hex number", join("", "argon2id", "v=19", "m=0x8,t=1,p=1", salt, hash), ErrMalformedHash},
		{"params reordered", join("", "argon2id", "v=19", "t=1,m=8,p=1", salt, hash), ErrMalformedHash},
		{"param missing", join("", "argon2id", "v=19", "m=8,t=1", salt, hash), ErrMalformedHash},
		{"param extra (keyid)", join("", "argon2id", "v=19", "m=8,t=1,p=1,keyid=abc", salt, hash), ErrMalformedHash},
		{"param empty value", join("", "argon2id", "v=19", "m=,t=1,p=1", salt, hash), ErrMalformedHash},
		{"space in params", join("", "argon2id", "v=19", "m=8, t=1,p=1", salt, hash), ErrMalformedHash},
		{"too long", good + strings.Repeat("A", 300), ErrMalformedHash},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ok, err := VerifyPassword("password", tt.phc)
			if ok || !errors.Is(err, tt.want) {
				t.Fatalf("VerifyPassword(%q) = %v, %v; want false and %v", tt.phc, ok, err, tt.want)
			}
			if !NeedsRehash(tt.phc, testParams) {
				t.Errorf("NeedsRehash(%q) = false for an unusable hash", tt.phc)
			}
			if strings.Contains(err.Error(), hash) {
				t.Errorf("error %q quotes the stored hash", err)
			}
		})
	}
	// The unmutated string is fine, so the failures above are the mutations'.
	if ok, err := VerifyPassword("password", good); !ok || err != nil {
		t.Fatalf("VerifyPassword(good) = %v, %v", ok, err)
	}
}

func TestNeedsRehash(t *testing.T) {
	salt := []byte("0123456789abcdef")
	phc := mustHash(t, "password", testParams, salt)
	if NeedsRehash(phc, testParams) {
		t.Error("NeedsRehash with the params it was hashed with = true")
	}
	for _, p := range []HashParams{
		{MemoryKiB: 16, Iterations: 1, Parallelism: 1}, // stronger
		{MemoryKiB: 8, Iterations: 2, Parallelism: 1},
		{MemoryKiB: 16, Iterations: 1, Parallelism: 2},
		DefaultHashParams(),
	} {
		if !NeedsRehash(phc, p) {
			t.Errorf("NeedsRehash(m=8,t=1,p=1 hash, %+v) = false", p)
		}
	}
	// Weaker target params also trigger a rehash: the operator's setting wins.
	strong := mustHash(t, "password", HashParams{MemoryKiB: 64, Iterations: 2, Parallelism: 1}, salt)
	if !NeedsRehash(strong, testParams) {
		t.Error("NeedsRehash(stronger hash, weaker params) = false")
	}
	// Same params but a salt or hash length HashPassword no longer writes.
	shortSalt := mustHash(t, "password", testParams, salt[:8])
	if !NeedsRehash(shortSalt, testParams) {
		t.Error("NeedsRehash(8-byte salt) = false")
	}
	key := argon2.IDKey([]byte("password"), salt, 1, 8, 1, 16)
	shortKey := encodePHC(testParams, salt, key)
	if ok, err := VerifyPassword("password", shortKey); !ok || err != nil {
		t.Fatalf("VerifyPassword(16-byte hash) = %v, %v", ok, err)
	}
	if !NeedsRehash(shortKey, testParams) {
		t.Error("NeedsRehash(16-byte hash) = false")
	}
	if !NeedsRehash("garbage", testParams) {
		t.Error("NeedsRehash(garbage) = false")
	}
}

func TestDummyHash(t *testing.T) {
	p := HashParams{MemoryKiB: 16, Iterations: 1, Parallelism: 1}
	var wg sync.WaitGroup
	got := make([]string, 4)
	for i := range got {
		wg.Go(func() { got[i] = DummyHash(p) })
	}
	wg.Wait()
	for _, g := range got[1:] {
		if g != got[0] {
			t.Fatalf("DummyHash differs between calls: %q vs %q", g, got[0])
		}
	}
	d := got[0]
	if NeedsRehash(d, p) {
		t.Errorf("DummyHash(%+v) = %q: not in the form HashPassword writes for p", p, d)
	}
	for _, pw := range []string{"", "password", "bulwark dummy password hash salt"} {
		if ok, err := VerifyPassword(pw, d); ok || err != nil {
			t.Errorf("VerifyPassword(%q, dummy) = %v, %v; want false, nil", pw, ok, err)
		}
	}
	if d2 := DummyHash(testParams); d2 == d || NeedsRehash(d2, testParams) {
		t.Errorf("DummyHash(testParams) = %q", d2)
	}
	defer func() {
		if recover() == nil {
			t.Error("DummyHash(invalid params) did not panic")
		}
	}()
	DummyHash(HashParams{})
}

func TestPasswordPolicyValidate(t *testing.T) {
	def := DefaultPasswordPolicy()
	if err := def.Validate(); err != nil {
		t.Fatalf("default policy: %v", err)
	}
	if def.MinLength < 8 || def.MaxLength < 64 {
		t.Fatalf("default policy %+v below NIST SP 800-63B", def)
	}
	for _, p := range []PasswordPolicy{
		{MinLength: 7, MaxLength: 64},
		{MinLength: 8, MaxLength: 63},
		{MinLength: 100, MaxLength: 90},
		{MinLength: 8, MaxLength: 1025},
		{},
	} {
		if err := p.Validate(); !errors.Is(err, ErrInvalidPasswordPolicy) {
			t.Errorf("%+v.Validate() = %v; want ErrInvalidPasswordPolicy", p, err)
		}
	}
	if err := (PasswordPolicy{}).Validate(); !strings.Contains(err.Error(), "min") || !strings.Contains(err.Error(), "max") {
		t.Errorf("zero policy: %q does not report both problems", err)
	}
}

func TestPasswordPolicyCheck(t *testing.T) {
	p8 := PasswordPolicy{MinLength: 8, MaxLength: 64}
	p12 := PasswordPolicy{MinLength: 12, MaxLength: 64}
	def := DefaultPasswordPolicy()
	tests := []struct {
		name     string
		policy   PasswordPolicy
		password string
		username string
		reason   string // substring of the error; "" means accepted
	}{
		{"ok", p8, "tulip-orbit-canal", "alice", ""},
		{"spaces allowed, no composition rules", def, "correct horse battery staple", "alice", ""},
		{"emoji allowed", p8, "🔑🔒 my vault!", "alice", ""},
		{"too short", p8, "tulip", "", "shorter than 8"},
		{"too short default", def, "tulip-orbit", "", "shorter than 15"},
		{"exactly min", p8, "tulipcan", "", ""},
		{"exactly max", p8, strings.Repeat("ab", 32), "", ""},
		{"too long", p8, strings.Repeat("ab", 32) + "c", "", "longer than 64"},
		{"invalid UTF-8", p8, "tulip\xffcanal", "", "UTF-8"},
		{"NUL", p8, "tulip\x00canal", "", "control"},
		{"newline", p8, "tulip\ncanal", "", "control"},
		{"tab", p8, "tulip\tcanal", "", "control"},
		{"DEL", p8, "tulip\x7fcanal", "", "control"},
		{"C1 control", p8, "tulip\u0085canal", "", "control"},
		{"repeated", p8, "aaaaaaaaaaaaaaaa", "", "repeated"},
		{"repeated mixed case", p8, "aAaAaAaAaA", "", "repeated"},
		{"repeated non-ASCII", p8, "ééééééééé", "", "repeated"},
		{"repeated composed by NFKC", p8, strings.Repeat("e\u0301", 8), "", "repeated"},
		{"two characters alternating", p8, "abababababab", "", ""},
		{"common", p8, "password", "", "common"},
		{"common upper case", p8, "PASSWORD", "", "common"},
		{"common fullwidth (NFKC)", p8, "ｐａｓｓｗｏｒｄ", "", "common"},
		{"common with digits", p8, "password123", "", "common"},
		{"common 12 chars", p12, "qwerty123456", "", "common"},
		// The list is matched whole, not as a substring.
		{"common word inside", p8, "password123456", "", ""},
		{"common word inside a phrase", def, "my password is long enough", "", ""},
		{"is the username", p8, "alice.smith", "alice.smith", "same as the username"},
		{"is the username, other case", p8, "Alice.Smith", "alice.smith", "same as the username"},
		{"contains the username", p8, "xx-alice.smith-42", "alice.smith", "contains the username"},
		{"contains the username, other case", p8, "ALICE.SMITH rules", "alice.smith", "contains the username"},
		{"contains fullwidth username", p8, "my ａｌｉｃｅ.ｓｍｉｔｈ pw", "alice.smith", "contains the username"},
		{"contains short username", p8, "tulip-al-canal", "al", ""},
		{"is a short username", PasswordPolicy{MinLength: 1, MaxLength: 64}, "Al", "al", "same as the username"},
		{"no username yet", p8, "alice.smith", "", ""},
		// Length counts runes after NFKC, not bytes.
		{"12 CJK runes (36 bytes)", p12, "我的密码是非常安全的东西", "", ""},
		{"11 CJK runes", p12, "我的密码是非常安全的东", "", "shorter than 12"},
		{"ligatures expand", p8, "ﬁﬂﬁﬂ", "", ""}, // NFKC: "fiflfifl", 8 runes
		{"ligatures over max", PasswordPolicy{MinLength: 1, MaxLength: 6}, "ﬁﬂﬁﬂ", "", "longer than 6"},
		{"combining marks compose", PasswordPolicy{MinLength: 1, MaxLength: 10}, "cafe\u0301 cre\u0300me", "", ""}, // 12 runes raw, 10 after NFKC
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.policy.Check(tt.password, tt.username)
			if tt.reason == "" {
				if err != nil {
					t.Fatalf("Check(%q, %q) = %v; want nil", tt.password, tt.username, err)
				}
				return
			}
			if !errors.Is(err, ErrWeakPassword) || !strings.Contains(err.Error(), tt.reason) {
				t.Fatalf("Check(%q, %q) = %v; want ErrWeakPassword saying %q", tt.password, tt.username, err, tt.reason)
			}
		})
	}
}

// FuzzVerifyPassword feeds arbitrary strings to the PHC parser. It must never
// panic; whatever it accepts must be exactly the canonical form HashPassword
// writes, and whatever it rejects must wrap one of the hash sentinels.
func FuzzVerifyPassword(f *testing.F) {
	good := validPHC(f)
	for _, s := range []string{
		good,
		DummyHash(testParams),
		"",
		"$",
		"$$$$$",
		"$argon2id$v=19$m=8,t=1,p=1$$",
		"$argon2id$v=19$m=4194304,t=100,p=255$AAAAAAAAAAA$AAAAAAAAAAA",
		"$argon2i$v=19$m=65536,t=3,p=4$c29tZXNhbHQ$RdescudvJCsgt3ub+b+dWRWJTmaaJObG",
		"$argon2id$v=19$m=8,t=1,p=1$MDEyMzQ1Njc4OWFiY2RlZg$" + strings.Repeat("/", 86),
		strings.Replace(good, "m=8", "m=08", 1),
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, phc string) {
		h, perr := parsePHC(phc)
		ok, err := VerifyPassword("password", phcIfCheap(h, perr, phc))
		if perr != nil {
			if !errors.Is(perr, ErrMalformedHash) && !errors.Is(perr, ErrUnsupportedHash) {
				t.Fatalf("parsePHC(%q): %v wraps no hash sentinel", phc, perr)
			}
			if ok || err == nil {
				t.Fatalf("VerifyPassword(%q) = %v, %v for a string parsePHC rejects", phc, ok, err)
			}
			if !NeedsRehash(phc, testParams) {
				t.Fatalf("NeedsRehash(%q) = false for a string parsePHC rejects", phc)
			}
			return
		}
		if got := encodePHC(h.params, h.salt, h.hash); got != phc {
			t.Fatalf("parsePHC accepted non-canonical %q (canonical %q)", phc, got)
		}
		if err != nil {
			t.Fatalf("VerifyPassword(%q): %v for a string parsePHC accepts", phc, err)
		}
	})
}

// phcIfCheap returns phc when it is cheap to evaluate, else a valid cheap hash: the
// parser rightly accepts up to 4 GiB and 100 passes, far too costly per fuzz input.
func phcIfCheap(h phcHash, perr error, phc string) string {
	if perr == nil && (h.params.MemoryKiB > 256 || h.params.Iterations > 2) {
		return encodePHC(HashParams{MemoryKiB: 8 * uint32(h.params.Parallelism), Iterations: 1, Parallelism: h.params.Parallelism}, h.salt, h.hash)
	}
	return phc
}

// BenchmarkHashDefault measures one hash under DefaultHashParams: the CPU a login
// costs the node that receives it.
func BenchmarkHashDefault(b *testing.B) {
	salt, err := NewSalt()
	if err != nil {
		b.Fatal(err)
	}
	p := DefaultHashParams()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := HashPassword("correct horse battery staple", p, salt); err != nil {
			b.Fatal(err)
		}
	}
}
