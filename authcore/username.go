package authcore

import (
	"fmt"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/secure/precis"
)

// MaxUsernameLength is the most runes a username may have after normalisation.
const MaxUsernameLength = 64

// maxUsernameInputBytes bounds the input before PRECIS looks at it. A username of
// MaxUsernameLength runes is at most 256 bytes of UTF-8; the slack covers forms
// that normalisation shortens (fullwidth letters, decomposed accents).
const maxUsernameInputBytes = 4 * 4 * MaxUsernameLength

// NormalizeUsername returns the canonical form of a username: the PRECIS
// UsernameCaseMapped profile of RFC 8265 (fullwidth to halfwidth, lowercase,
// NFC, the IdentifierClass's allowed runes, contextual rules and the Bidi Rule of
// RFC 5893). Two usernames are the same account exactly when their normalised
// forms are equal, so every lookup and every stored username goes through it.
//
// It never repairs its input: white space at either end, control characters,
// invalid UTF-8, an empty name or one longer than MaxUsernameLength runes after
// normalisation all fail. Every error wraps ErrInvalidUsername and says why.
func NormalizeUsername(s string) (string, error) {
	switch {
	case s == "":
		return "", invalidUsername("empty")
	case len(s) > maxUsernameInputBytes:
		return "", invalidUsername(fmt.Sprintf("longer than %d characters", MaxUsernameLength))
	case !utf8.ValidString(s):
		return "", invalidUsername("not valid UTF-8")
	}
	if r, _ := utf8.DecodeRuneInString(s); unicode.IsSpace(r) {
		return "", invalidUsername("starts with white space")
	}
	if r, _ := utf8.DecodeLastRuneInString(s); unicode.IsSpace(r) {
		return "", invalidUsername("ends with white space")
	}
	out, err := precis.UsernameCaseMapped.String(s)
	if err != nil {
		// precis's errors are not exported values; keep its text as the detail.
		return "", fmt.Errorf("%w: not allowed by the PRECIS username profile (RFC 8265): %w",
			ErrInvalidUsername, err)
	}
	if out == "" {
		return "", invalidUsername("empty after normalisation")
	}
	if n := utf8.RuneCountInString(out); n > MaxUsernameLength {
		return "", invalidUsername(fmt.Sprintf("%d characters, more than %d", n, MaxUsernameLength))
	}
	return out, nil
}

func invalidUsername(reason string) error {
	return fmt.Errorf("%w: %s", ErrInvalidUsername, reason)
}
