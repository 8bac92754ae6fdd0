package authcore

import (
	"errors"
	"strings"
	"testing"
)

func TestNormalizeUsername(t *testing.T) {
	tests := []struct {
		name, in string
		want     string // "" means rejected
		reason   string // substring of the error when rejected
	}{
		{name: "lowercased", in: "Alice", want: "alice"},
		{name: "already canonical", in: "alice", want: "alice"},
		{name: "fullwidth to ASCII", in: "ＡＬＩＣＥ", want: "alice"},
		{name: "sharp s kept", in: "ß", want: "ß"},
		{name: "capital sigma", in: "Σ", want: "σ"},
		{name: "Greek word", in: "ΣΑΣ", want: "σασ"},
		{name: "precomposed é", in: "caf\u00e9", want: "caf\u00e9"},
		{name: "combining é becomes precomposed", in: "cafe\u0301", want: "caf\u00e9"},
		{name: "Kelvin-like: Angstrom sign", in: "\u212B", want: "\u00e5"},
		{name: "dotted capital I", in: "İ", want: "i\u0307"},
		{name: "email-like", in: "John.Doe@Example.com", want: "john.doe@example.com"},
		{name: "punctuation", in: "a_b-c", want: "a_b-c"},
		{name: "Hebrew (RTL only)", in: "\u05d0\u05d1", want: "\u05d0\u05d1"},
		{name: "Arabic with Arabic-Indic digit", in: "\u0627\u0661", want: "\u0627\u0661"},
		// ZWJ is allowed only in the context RFC 5892 gives it: after a virama.
		{name: "ZWJ after virama", in: "\u0915\u094d\u200d\u0937", want: "\u0915\u094d\u200d\u0937"},
		{name: "64 runes", in: strings.Repeat("a", 64), want: strings.Repeat("a", 64)},
		{name: "64 runes after width mapping", in: strings.Repeat("Ａ", 64), want: strings.Repeat("a", 64)},

		{name: "empty", in: "", reason: "empty"},
		{name: "inner space", in: "a b", reason: "PRECIS"},
		{name: "leading space", in: " alice", reason: "starts with white space"},
		{name: "trailing space", in: "alice ", reason: "ends with white space"},
		{name: "trailing newline", in: "alice\n", reason: "ends with white space"},
		{name: "no-break space", in: "alice\u00a0", reason: "white space"},
		{name: "ideographic space", in: "\u3000alice", reason: "white space"},
		{name: "NUL", in: "\u0000", reason: "PRECIS"},
		{name: "NUL inside", in: "ali\u0000ce", reason: "PRECIS"},
		{name: "tab", in: "ali\tce", reason: "PRECIS"},
		{name: "DEL", in: "ali\u007fce", reason: "PRECIS"},
		{name: "invalid UTF-8", in: "ali\xffce", reason: "UTF-8"},
		{name: "lone continuation byte", in: "\x80", reason: "UTF-8"},
		{name: "encoded surrogate", in: "\xed\xa0\x80", reason: "UTF-8"},
		{name: "65 runes", in: strings.Repeat("a", 65), reason: "more than 64"},
		{name: "65 runes after width mapping", in: strings.Repeat("Ａ", 65), reason: "more than 64"},
		{name: "huge input", in: strings.Repeat("a", 1<<20), reason: "longer than 64"},
		// Emoji are symbols, outside the IdentifierClass; x/text reports the
		// Bidi Rule failing first, either way the name is refused.
		{name: "emoji alone", in: "😀", reason: "PRECIS"},
		{name: "emoji in name", in: "alice😀", reason: "PRECIS"},
		{name: "ZWJ between letters", in: "a\u200db", reason: "PRECIS"},
		{name: "ZWNJ between letters", in: "a\u200cb", reason: "PRECIS"},
		{name: "zero-width space", in: "a\u200bb", reason: "PRECIS"},
		{name: "soft hyphen", in: "a\u00adb", reason: "PRECIS"},
		{name: "RTL override", in: "a\u202eb", reason: "PRECIS"},
		{name: "titlecase digraph", in: "ǅ", reason: "PRECIS"},
		{name: "ligature (compatibility char)", in: "ﬁ", reason: "PRECIS"},
		{name: "Roman numeral", in: "Ⅻ", reason: "PRECIS"},
		// The Bidi Rule (RFC 5893): an RTL label may not mix in left-to-right
		// letters nor start with a digit.
		{name: "bidi: Hebrew then Latin", in: "\u05d0a", reason: "Bidi"},
		{name: "bidi: Latin then Hebrew", in: "a\u05d0", reason: "Bidi"},
		{name: "bidi: digit then Hebrew", in: "1\u05d0", reason: "Bidi"},
		{name: "bidi: Latin then Arabic-Indic digit", in: "abc\u0660", reason: "Bidi"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := NormalizeUsername(tt.in)
			if tt.want != "" {
				if err != nil || got != tt.want {
					t.Fatalf("NormalizeUsername(%+q) = %+q, %v; want %+q", tt.in, got, err, tt.want)
				}
				// Normalisation is idempotent.
				if again, err := NormalizeUsername(got); err != nil || again != got {
					t.Fatalf("NormalizeUsername(%+q) = %+q, %v; not idempotent", got, again, err)
				}
				return
			}
			if got != "" || !errors.Is(err, ErrInvalidUsername) || !strings.Contains(err.Error(), tt.reason) {
				t.Fatalf("NormalizeUsername(%+q) = %+q, %v; want ErrInvalidUsername saying %q",
					tt.in, got, err, tt.reason)
			}
		})
	}
}

// Names that must be one account: NormalizeUsername maps them together.
func TestNormalizeUsernameCollisions(t *testing.T) {
	groups := [][]string{
		{"admin", "ADMIN", "Admin", "ａｄｍｉｎ", "ＡＤＭＩＮ"},
		{"caf\u00e9", "cafe\u0301", "CAFE\u0301", "CAF\u00c9"},
		{"σ", "Σ"},
	}
	for _, g := range groups {
		want, err := NormalizeUsername(g[0])
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range g[1:] {
			if got, err := NormalizeUsername(s); err != nil || got != want {
				t.Errorf("NormalizeUsername(%+q) = %+q, %v; want %+q like %+q", s, got, err, want, g[0])
			}
		}
	}
	// And names that must stay apart.
	if a, b := mustNormalize(t, "ß"), mustNormalize(t, "ss"); a == b {
		t.Errorf("ß and ss collide: %q", a)
	}
}

func mustNormalize(t *testing.T, s string) string {
	t.Helper()
	out, err := NormalizeUsername(s)
	if err != nil {
		t.Fatalf("NormalizeUsername(%+q): %v", s, err)
	}
	return out
}
