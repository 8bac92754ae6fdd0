package tpm

// Seal modes returned by Sealer.Mode.
const (
	ModeTPM      = "tpm"
	ModeSoftware = "software"
)

// Sealer binds a small secret (the KEK) to something outside the data
// directory. Implementations must be safe for concurrent use.
//
// TPMSealer (go-tpm tpm2: sealed under a storage primary key,
// optionally bound to PCRs) opens the Device
// returned by ParseDevice; SoftwareSealer is the explicit, weaker fallback.
type Sealer interface {
	// Mode is ModeTPM or ModeSoftware; it is reported in logs, /readyz and
	// metrics.
	Mode() string
	// Seal returns a self-describing blob that only this sealer can open.
	Seal(secret []byte) ([]byte, error)
	// Unseal returns the secret sealed in blob, or an error wrapping
	// ErrUnseal.
	Unseal(blob []byte) ([]byte, error)
	// Close releases the sealer's resources (TPM handle, wrapping key).
	Close() error
}
