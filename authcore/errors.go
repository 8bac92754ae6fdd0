package authcore

import (
	"errors"

	"github.com/bulwark-auth/bulwark/fsm"
)

// Errors returned by authcore. Every error returned by NormalizeUsername,
// PasswordPolicy.Check, HashPassword, VerifyPassword, the Validate methods
// and the Service wraps one of these, with a reason a person can read after
// it; match them with errors.Is. The api package maps each to its HTTP
// answer.
var (
	// ErrInvalidUsername: a username is not acceptable under the PRECIS
	// UsernameCaseMapped profile or bulwark's length limit.
	ErrInvalidUsername = errors.New("invalid username")

	// ErrWeakPassword: a new password fails the PasswordPolicy.
	ErrWeakPassword = errors.New("weak password")

	// ErrInvalidPasswordPolicy: a PasswordPolicy's limits are unusable.
	ErrInvalidPasswordPolicy = errors.New("invalid password policy")

	// ErrInvalidHashParams: argon2id parameters or a salt outside the accepted
	// ranges (see HashParams.Validate).
	ErrInvalidHashParams = errors.New("invalid password hash parameters")

	// ErrUnsupportedHash: a well-formed PHC string of another algorithm or
	// argon2 version than argon2id v=19.
	ErrUnsupportedHash = errors.New("unsupported password hash")

	// ErrMalformedHash: a stored password hash is not a valid argon2id PHC string.
	ErrMalformedHash = errors.New("malformed password hash")

	// ErrUserExists: the normalised username is taken.
	ErrUserExists = fsm.ErrUserExists

	// ErrUserNotFound: no user by that name or id.
	ErrUserNotFound = fsm.ErrUserNotFound

	// ErrInvalidInput: a field other than username or password is
	// unacceptable (an email address, a role name).
	ErrInvalidInput = errors.New("invalid input")

	// ErrBusy: too many password hashes are waiting; try again shortly.
	ErrBusy = errors.New("server busy")

	// ErrInvalidCredentials: the username or password is wrong, or the
	// account is disabled; the three are not told apart.
	ErrInvalidCredentials = errors.New("invalid username or password")

	// ErrTooManyAttempts: the name is locked; the error is a *LockedError
	// carrying how long.
	ErrTooManyAttempts = errors.New("too many failed attempts")

	// ErrInvalidGrant: a refresh token that is unknown, used, expired, or
	// whose session ended.
	ErrInvalidGrant = errors.New("invalid or expired refresh token")

	// ErrSessionLimit: the user holds the most sessions allowed and the
	// policy is to deny more.
	ErrSessionLimit = fsm.ErrSessionLimit

	// ErrNotFound: no such session (or not the caller's).
	ErrNotFound = errors.New("not found")

	// ErrStepUpRequired: the action needs a recent second factor (RFC
	// 9470); the error is a *StepUpError carrying the window.
	ErrStepUpRequired = errors.New("insufficient user authentication")

	// ErrChallengeRequired: the login needs a solved proof-of-work
	// challenge; the error is a *ChallengeError carrying one.
	ErrChallengeRequired = errors.New("challenge required")

	// ErrLockedDown: an incident lockdown refuses the login.
	ErrLockedDown = fsm.ErrLockedDown

	// ErrInvalidMFAToken: an mfa_token that is forged, expired, from
	// another client address, or whose user changed since it was issued.
	ErrInvalidMFAToken = errors.New("invalid or expired mfa_token")

	// ErrMFAUnavailable: this node holds no cluster data key to seal or
	// check second factors with.
	ErrMFAUnavailable = errors.New("second factors are not available on this node")

	// ErrPasskeysUnavailable: no WebAuthn relying party is configured
	// (the issuer's host is no domain name and mfa.webauthn_rp_id is
	// unset).
	ErrPasskeysUnavailable = errors.New("passkeys are not configured on this node")

	// ErrUpgradePending: the request needs a command the cluster does not
	// apply yet: some member runs an older release (fsm/level.go).
	ErrUpgradePending = errors.New("not available until every cluster member runs this release")

	// ErrConflict: the request conflicts with the current state (a factor
	// already on, an enrolment to confirm that is not there).
	ErrConflict = errors.New("conflict")

	// ErrInvalidToken: an access token that is malformed, forged, signed by
	// an unknown or mismatched key, expired, not yet valid, or meant for
	// another issuer or audience. The api package answers 401
	// invalid_token; the reason after it is for logs, not for the client.
	ErrInvalidToken = errors.New("invalid token")

	// ErrIssuerConflict: this node's tokens.issuer is not the one its
	// cluster recorded; the error is an *IssuerConflictError naming both.
	ErrIssuerConflict = fsm.ErrIssuerConflict

	// ErrIssuerNotRecorded: this node's signing key is published, but the
	// cluster is below the feature level that records issuers, so the
	// other members accept its tokens only if they share its tokens.issuer.
	// Publish again once the level has risen.
	ErrIssuerNotRecorded = errors.New("issuer not recorded: the cluster is below feature level 3")

	// ErrInvalidKey: a signing key or JWK that bulwark does not accept: a
	// key type that does not match its alg, an RSA key under 2048 bits, a
	// JWK with private members or whose kid is not its thumbprint.
	ErrInvalidKey = errors.New("invalid signing key")
)
