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
)
