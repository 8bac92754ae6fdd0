package authcore

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strings"

	"github.com/bulwark-auth/bulwark/fsm"
)

// Refresh tokens that name their session (level 5). A token of the first
// format is 256 random bits, found through a record per token in the
// replicated state, and every spent one kept its record for reuse
// detection. A token of this format carries its session id and
// generation (how many times the session had rotated when it was issued)
// under a MAC of the cluster data key:
//
//	bwr_ base64url( 1 | len(sid) | sid | generation (8, big endian) | 16 random bytes | MAC (16) )
//
// MAC = HMAC-SHA256 under the SecretBox's "refresh token" key over
// everything before it, truncated to 128 bits. A token whose MAC does not
// verify (forged, altered, another cluster's) is refused here with no
// Raft entry; one that verifies was minted by a member, and
// session.refresh v3 tells the session's live token (its generation and
// hash) from a dead one (an older generation, or the same with another
// hash) without any record of the dead ones (fsm/sessions.go).
const (
	refreshMACVersion = 1
	refreshRandBytes  = 16
	refreshMACBytes   = 16
	// maxRefreshSID bounds the session id a token carries (fsm's validID).
	maxRefreshSID = 64
	// refreshFixedBytes is a token's bytes besides its session id.
	refreshFixedBytes = 2 + 8 + refreshRandBytes + refreshMACBytes
	// randomRefreshChars is the length of a first-format token after its
	// prefix (randomToken); every token of this format is longer.
	randomRefreshChars = 43
)

// refreshClaims are what a refresh token of this format names.
type refreshClaims struct {
	sid string
	gen uint64
}

// mintRefresh returns a new refresh token of session sid at generation gen.
func (b *SecretBox) mintRefresh(sid string, gen uint64) (string, error) {
	if sid == "" || len(sid) > maxRefreshSID {
		return "", fmt.Errorf("authcore: session id of %d bytes in a refresh token", len(sid))
	}
	buf := make([]byte, 0, refreshFixedBytes+len(sid))
	buf = append(buf, refreshMACVersion, byte(len(sid)))
	buf = append(buf, sid...)
	buf = binary.BigEndian.AppendUint64(buf, gen)
	buf = buf[:len(buf)+refreshRandBytes]
	if _, err := rand.Read(buf[len(buf)-refreshRandBytes:]); err != nil {
		return "", err
	}
	buf = append(buf, b.mac(purposeRefresh, buf)[:refreshMACBytes]...)
	return refreshPrefix + base64.RawURLEncoding.EncodeToString(buf), nil
}

// namesSession reports whether tok has the form of a token that names its
// session (whether or not its MAC verifies): the prefix and more than a
// first-format token's length.
func namesSession(tok string) bool {
	return strings.HasPrefix(tok, refreshPrefix) && len(tok) > len(refreshPrefix)+randomRefreshChars
}

// refreshShaped reports whether tok has the form of a refresh token of
// either format.
func refreshShaped(tok string) bool {
	return namesSession(tok) || wellFormedToken(tok, refreshPrefix)
}

// errRefreshMAC: a refresh token of this format that this cluster did not
// mint (or that was altered).
var errRefreshMAC = errors.New("authcore: refresh token does not verify")

// openRefresh verifies tok and returns what it names.
func (b *SecretBox) openRefresh(tok string) (refreshClaims, error) {
	body, ok := strings.CutPrefix(tok, refreshPrefix)
	if !ok || base64.RawURLEncoding.DecodedLen(len(body)) > refreshFixedBytes+maxRefreshSID {
		return refreshClaims{}, errRefreshMAC
	}
	// One spelling per token: its hash is what the session holds, so
	// another spelling of the same bytes (the decoder skips line breaks)
	// would pass the MAC as a token of that generation with another hash.
	raw, err := base64.RawURLEncoding.Strict().DecodeString(body)
	if err != nil || strings.ContainsAny(body, "\r\n") || len(raw) < refreshFixedBytes+1 || raw[0] != refreshMACVersion ||
		len(raw) != refreshFixedBytes+int(raw[1]) {
		return refreshClaims{}, errRefreshMAC
	}
	signed, sum := raw[:len(raw)-refreshMACBytes], raw[len(raw)-refreshMACBytes:]
	if !hmac.Equal(sum, b.mac(purposeRefresh, signed)[:refreshMACBytes]) {
		return refreshClaims{}, errRefreshMAC
	}
	n := int(raw[1])
	c := refreshClaims{sid: string(raw[2 : 2+n]), gen: binary.BigEndian.Uint64(raw[2+n : 10+n])}
	if c.gen == math.MaxUint64 {
		return refreshClaims{}, errRefreshMAC // never minted: its successor could not be
	}
	return c, nil
}

// macRefresh reports whether refresh tokens issued now name their
// session: every member applies session.refresh v3 (level 5) and this
// node holds the cluster data key.
func (s *Service) macRefresh(level int) bool {
	return s.box != nil && fsm.Proposable(fsm.TypeSessionRefresh, 3, level)
}

// newRefresh mints the refresh token of a new session sid: one that names
// it (generation 0) when the cluster is at level 5, else a random one.
func (s *Service) newRefresh(sid string, level int) (string, error) {
	if s.macRefresh(level) {
		return s.box.mintRefresh(sid, 0)
	}
	return randomToken(refreshPrefix)
}

// refreshNamed is Refresh for a token that names its session: verified
// here, so a forged or altered one costs no Raft entry, then rotated by
// session.refresh v3.
func (s *Service) refreshNamed(ctx context.Context, refreshToken string) (Tokens, error) {
	if s.box == nil {
		return Tokens{}, ErrInvalidGrant // only a member holding the data key mints them
	}
	c, err := s.box.openRefresh(refreshToken)
	if err != nil {
		return Tokens{}, ErrInvalidGrant
	}
	if !s.proposable(fsm.TypeSessionRefresh, 3) {
		return Tokens{}, ErrUpgradePending // a token minted at a level this node has not seen yet
	}
	next, err := s.box.mintRefresh(c.sid, c.gen+1)
	if err != nil {
		return Tokens{}, err
	}
	ri := requestInfo(ctx)
	cmd, err := fsm.NewCommand(fsm.TypeSessionRefresh, 3, s.now().UnixNano(), fsm.SessionRefreshV3{
		SessionID: c.sid, Generation: c.gen,
		SessionRefresh: fsm.SessionRefresh{OldHash: hashToken(refreshToken), NewHash: hashToken(next), IP: ri.IP, UserAgent: ri.UserAgent}})
	if err != nil {
		return Tokens{}, err
	}
	res, err := proposeAs[fsm.RefreshResult](ctx, s, cmd)
	return s.refreshed(res, err, ri, next)
}

// sessionOfRefresh returns the session a refresh token belongs to, and
// whether it is that session's live token, from r: a token that names its
// session by its MAC and the session, another by its record.
func (s *Service) sessionOfRefresh(r fsm.Reader, tok string) (*fsm.Session, bool, error) {
	if !namesSession(tok) {
		if !wellFormedToken(tok, refreshPrefix) {
			return nil, false, ErrInvalidGrant
		}
		return r.SessionByRefresh(hashToken(tok))
	}
	if s.box == nil {
		return nil, false, ErrInvalidGrant
	}
	c, err := s.box.openRefresh(tok)
	if err != nil {
		return nil, false, ErrInvalidGrant
	}
	sess, err := r.Session(c.sid)
	if err != nil {
		return nil, false, ErrInvalidGrant
	}
	return sess, sess.RefreshGen == c.gen && sess.RefreshHash == hashToken(tok), nil
}
