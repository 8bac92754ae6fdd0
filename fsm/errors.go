package fsm

import "errors"

// Sentinel errors, matched with errors.Is. Apply returns the domain ones in
// Result.Err, and results.go carries them across a forwarded write under a
// wire code; grouped by the file whose commands return them.
var (
	// Commands and the store (command.go, store.go, dispatch.go).

	// ErrMalformedCommand: a log entry that does not decode as a command.
	ErrMalformedCommand = errors.New("fsm: malformed command")
	// ErrUnknownCommand: a type or version this binary does not know.
	ErrUnknownCommand = errors.New("fsm: unknown command type or version")
	// ErrAboveLevel: a command of a feature level above the cluster's
	// (Proposable), refused before it is proposed: some member may not
	// apply it. node returns it, never Apply.
	ErrAboveLevel = errors.New("fsm: command above the cluster's feature level")
	// ErrCommandTooLarge: an entry over MaxCommandBytes.
	ErrCommandTooLarge = errors.New("fsm: command too large")
	// ErrCorrupt: state.db failed its consistency check or could not be
	// opened as a bbolt file; the caller rebuilds it from snapshot and log.
	ErrCorrupt = errors.New("fsm: state.db is corrupt")
	// ErrInvalidCommand: a well-formed command whose payload breaks a rule
	// (missing id, bad name).
	ErrInvalidCommand = errors.New("fsm: invalid command")
	// ErrUserExists: the username or id is taken.
	ErrUserExists = errors.New("fsm: user already exists")
	// ErrUserNotFound: no user with that id or name.
	ErrUserNotFound = errors.New("fsm: user not found")
	// ErrClosed: the store was closed.
	ErrClosed = errors.New("fsm: store closed")
	// ErrUnclean: state.db was not closed cleanly. It is written without
	// fsync (the Raft log is the durable record), so after a crash it may
	// lack writes the log has, or hold torn pages; the caller rebuilds it
	// from snapshot and log.
	ErrUnclean = errors.New("fsm: state.db was not closed cleanly")

	// Sessions (sessions.go).

	// ErrSessionLimit: the user holds max_per_user sessions and the policy
	// is "deny".
	ErrSessionLimit = errors.New("fsm: session limit reached")
	// ErrSessionNotFound: no live session with that id.
	ErrSessionNotFound = errors.New("fsm: session not found")
	// ErrInvalidGrant: the refresh token is unknown, expired, or its session
	// or user is gone or disabled.
	ErrInvalidGrant = errors.New("fsm: invalid refresh token")
	// ErrUserDisabled: the user is disabled.
	ErrUserDisabled = errors.New("fsm: user disabled")
	// ErrCredentialChanged: the credential a command was decided on (the
	// password generation it was checked against) is no longer the
	// user's: the decision was made on a stale read.
	ErrCredentialChanged = errors.New("fsm: credential changed since it was checked")
	// ErrRefreshMoved: user.set_password v3 carried a refresh-token
	// generation older than its session's: the session rotated since the
	// proposer read it. Nothing was written; read again and propose again.
	ErrRefreshMoved = errors.New("fsm: the session's refresh token rotated since it was read")

	// Second factors (mfa.go).

	// ErrFactorExists: the user has that factor already (a TOTP secret,
	// or a WebAuthn credential registered to anyone).
	ErrFactorExists = errors.New("fsm: second factor already registered")
	// ErrFactorNotFound: the user has no such factor (or recovery code).
	ErrFactorNotFound = errors.New("fsm: no such second factor")
	// ErrFactorReplayed: the factor's proof was used already: a TOTP step
	// not after the last accepted, a WebAuthn counter that did not grow,
	// a second-factor ticket exchanged before.
	ErrFactorReplayed = errors.New("fsm: second factor already used")

	// ErrLockedDown: an incident lockdown refuses new sessions
	// (incident.go).
	ErrLockedDown = errors.New("fsm: the cluster is locked down")

	// OpenID Connect (oidc.go).

	// ErrClientExists: a client with that id is registered already.
	ErrClientExists = errors.New("fsm: oidc client already exists")
	// ErrClientNotFound: no client with that id.
	ErrClientNotFound = errors.New("fsm: oidc client not found")
	// ErrAuthRequestNotFound: no pending authorization request with that
	// id (unknown, expired, or answered already).
	ErrAuthRequestNotFound = errors.New("fsm: authorization request not found")
	// ErrInvalidCode: the authorization code is unknown, expired, or not
	// the presenting client's or redirect_uri's.
	ErrInvalidCode = errors.New("fsm: invalid authorization code")
	// ErrConsentRequired: the client requires consent and the user's
	// grant does not cover the request (oidc_grants.go).
	ErrConsentRequired = errors.New("fsm: the user has not consented to this client and scopes")
	// ErrGrantNotFound: the user has given that client no consent.
	ErrGrantNotFound = errors.New("fsm: no consent grant to that client")

	// Lockout (lockout_v1.go, lockout.go).

	// ErrLocked: the name has used its attempts for this window.
	ErrLocked = errors.New("fsm: too many failed attempts")

	// Blocks (blocks.go).

	// ErrBlockNotFound: no live block of exactly that range.
	ErrBlockNotFound = errors.New("fsm: no such block")

	// The data key (escrow.go).

	// ErrNoDataKey: no data key fingerprint is registered yet.
	ErrNoDataKey = errors.New("fsm: no cluster data key is registered")
	// ErrEscrowExists: the data key is already escrowed to that public key.
	ErrEscrowExists = errors.New("fsm: the data key is already escrowed to that public key")
	// ErrSharesIssued: recovery shares were issued already.
	ErrSharesIssued = errors.New("fsm: recovery shares were already issued")

	// Join tokens (join.go).

	// ErrJoinTokenUnknown: no token with that secret (a wrong secret, a
	// forged token, another cluster's, or one pruned long after expiry).
	ErrJoinTokenUnknown = errors.New("fsm: join token unknown")
	// ErrJoinTokenUsed: the token was consumed already.
	ErrJoinTokenUsed = errors.New("fsm: join token already used")
	// ErrJoinTokenExpired: the token expired before the command's time.
	ErrJoinTokenExpired = errors.New("fsm: join token expired")

	// Signing keys (keys.go).

	// ErrKeyNotFound: no published signing key with that kid.
	ErrKeyNotFound = errors.New("fsm: signing key not found")

	// The CA key (cakey.go).

	// ErrNoCAKey: the CA key has not been shared through the state.
	ErrNoCAKey = errors.New("fsm: the cluster CA key is not in the state")

	// Issuers (issuer.go).

	// ErrIssuerConflict: the cluster has recorded another tokens.issuer.
	ErrIssuerConflict = errors.New("fsm: the cluster has another tokens.issuer")

	// The audit trail (audit.go).

	// ErrAuditChainBroken: an audit entry's hash does not match its contents,
	// its PrevHash does not match the previous entry's Hash, its seq is not the
	// previous seq plus one (an entry was deleted or inserted), or a stored
	// entry cannot be read. It comes wrapped in an *AuditChainError naming the
	// first bad seq.
	ErrAuditChainBroken = errors.New("fsm: audit chain broken")
)
