package tpm

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
)

// ErrNoTPM reports that the TPM cannot be reached or opened: no device at the
// configured path, no permission to open it, nothing listening at a tcp: or
// unix: address, a connection lost mid-command, or a device that does not
// answer TPM2_Startup like a TPM 2.0. It is declared here, beside the TPM
// sealer, rather than in doc.go's block, because only the TPM sealer returns it.
var ErrNoTPM = errors.New("tpm: cannot reach the TPM")

const (
	// maxTPMSecret is the most a keyed-hash sealed data object holds
	// (MAX_SYM_DATA).
	maxTPMSecret = 128
	// maxPCR is the highest PCR a PC Client TPM must have.
	maxPCR = 23

	tpmNonceSize  = 16
	tpmRetryDelay = 10 * time.Millisecond
)

// TPMSealer seals with a TPM 2.0: the secret becomes a keyed-hash sealed data
// object under the owner hierarchy's standard ECC P-256 storage primary key
// (the TCG "SRK" template, recreated identically on every use, so nothing is
// stored in the TPM's NV memory), optionally bound by a TPM2_PolicyPCR policy
// to PCRs in the SHA-256 bank. The blob can be loaded only by the TPM that
// made it, and unsealed only while the PCRs hold the values they held at
// sealing. The secret crosses the bus to and from the TPM only encrypted, in
// AES-128-CFB parameter encryption under a session salted to the storage key.
//
// The owner hierarchy's authorisation must be empty, as it is unless an
// administrator set one. A TPMSealer is safe for concurrent use; commands to
// the TPM are serialised.
type TPMSealer struct {
	label string // the device, as named in errors
	pcrs  []int  // sorted, unique; empty for no PCR policy

	mu  sync.Mutex
	tpm transport.TPMCloser // nil after Close
}

var _ Sealer = (*TPMSealer)(nil)

// TPMOption configures NewTPMSealer.
type TPMOption func(*tpmOptions)

type tpmOptions struct {
	transport transport.TPMCloser
}

// WithTPMTransport makes NewTPMSealer use t, an already open TPM (such as an
// in-process simulator), instead of opening the device; the device string
// then only names the TPM in errors and may be empty. The sealer owns t: it
// closes t on Close, and when NewTPMSealer fails.
func WithTPMTransport(t transport.TPMCloser) TPMOption {
	return func(o *tpmOptions) { o.transport = t }
}

// NewTPMSealer opens the TPM at device, a string ParseDevice accepts: a
// character device such as /dev/tpmrm0 (the kernel's resource manager),
// "tcp:HOST:PORT" or "unix:PATH" for a raw TPM command channel such as
// swtpm's --server type=tcp or type=unixio. No platform (power) commands are
// sent; the TPM must be powered on.
//
// pcrs selects the SHA-256 PCRs (0-23) that later seals are bound to; nil or
// empty binds to none. Unseal uses the PCRs recorded in each blob.
//
// On open it sends TPM2_Startup(CLEAR), accepting TPM_RC_INITIALIZE from a
// TPM that has been started already, and flushes transient objects and
// sessions left loaded by an earlier process (a TPM with no resource manager,
// such as swtpm, keeps them until it restarts). An unreachable TPM yields an
// error wrapping ErrNoTPM; a bad device string one wrapping ErrInvalidDevice.
func NewTPMSealer(device string, pcrs []int, opts ...TPMOption) (*TPMSealer, error) {
	var o tpmOptions
	for _, opt := range opts {
		opt(&o)
	}
	pcrs, err := checkPCRs(pcrs)
	if err != nil {
		if o.transport != nil {
			o.transport.Close()
		}
		return nil, err
	}
	label := device
	t := o.transport
	if t == nil {
		d, err := ParseDevice(device)
		if err != nil {
			return nil, err
		}
		label = d.String()
		if t, err = openDevice(d); err != nil {
			return nil, err
		}
	} else if label == "" {
		label = "(in-process)"
	}
	rt := retryTPM{TPMCloser: t, delay: tpmRetryDelay}
	if err := startup(rt, label); err != nil {
		t.Close()
		return nil, err
	}
	if err := flushLeftovers(rt); err != nil {
		t.Close()
		return nil, fmt.Errorf("tpm: flush handles left loaded on the TPM at %s: %w", label, err)
	}
	return &TPMSealer{label: label, pcrs: pcrs, tpm: rt}, nil
}

// checkPCRs returns pcrs sorted, refusing duplicates and PCRs outside 0-23.
func checkPCRs(pcrs []int) ([]int, error) {
	out := slices.Clone(pcrs)
	slices.Sort(out)
	for i, p := range out {
		if p < 0 || p > maxPCR {
			return nil, fmt.Errorf("tpm: PCR %d is out of range 0-%d", p, maxPCR)
		}
		if i > 0 && out[i-1] == p {
			return nil, fmt.Errorf("tpm: PCR %d listed twice", p)
		}
	}
	return out, nil
}

func startup(t transport.TPM, label string) error {
	_, err := tpm2.Startup{StartupType: tpm2.TPMSUClear}.Execute(t)
	if err == nil || errors.Is(err, tpm2.TPMRCInitialize) {
		return nil
	}
	if errors.Is(err, ErrNoTPM) {
		return err
	}
	return fmt.Errorf("%w: TPM2_Startup on %s failed (is it a TPM 2.0?): %w", ErrNoTPM, label, err)
}

// flushLeftovers flushes every loaded transient object and session. Behind a
// resource manager (/dev/tpmrm0) the TPM lists only this connection's, which
// are none.
func flushLeftovers(t transport.TPM) error {
	ranges := []struct {
		first tpm2.TPMHandle
		types []tpm2.TPMHT
	}{
		{0x80000000, []tpm2.TPMHT{tpm2.TPMHTTransient}},
		// TPM_HT_LOADED_SESSION lists HMAC and policy sessions alike.
		{0x02000000, []tpm2.TPMHT{tpm2.TPMHTHMACSession, tpm2.TPMHTPolicySession}},
	}
	for _, r := range ranges {
		rsp, err := tpm2.GetCapability{
			Capability:    tpm2.TPMCapHandles,
			Property:      uint32(r.first),
			PropertyCount: 64,
		}.Execute(t)
		if err != nil {
			return fmt.Errorf("TPM2_GetCapability(handles %#x): %w", uint32(r.first), err)
		}
		list, err := rsp.CapabilityData.Data.Handles()
		if err != nil {
			return err
		}
		for _, h := range list.Handle {
			if !slices.Contains(r.types, tpm2.TPMHT(h>>24)) {
				continue
			}
			// Best effort: a handle that is gone already is fine.
			tpm2.FlushContext{FlushHandle: h}.Execute(t)
		}
	}
	return nil
}

// Mode returns ModeTPM.
func (s *TPMSealer) Mode() string { return ModeTPM }

// storageKey is the storage primary key, loaded as a transient object.
type storageKey struct {
	handle tpm2.TPMHandle
	name   tpm2.TPM2BName // computed from pub, not taken from the TPM's word
	pub    tpm2.TPMTPublic
}

// createStorageKey recreates the storage primary key. Callers hold s.mu and
// flush the key.
func (s *TPMSealer) createStorageKey() (*storageKey, error) {
	rsp, err := tpm2.CreatePrimary{
		PrimaryHandle: tpm2.TPMRHOwner,
		InPublic:      tpm2.New2B(tpm2.ECCSRKTemplate),
	}.Execute(s.tpm)
	if err != nil {
		return nil, s.explain("TPM2_CreatePrimary (the storage key, under the owner hierarchy)", err)
	}
	k := &storageKey{handle: rsp.ObjectHandle}
	pub, err := rsp.OutPublic.Contents()
	if err == nil {
		var name *tpm2.TPM2BName
		if name, err = tpm2.ObjectName(pub); err == nil {
			k.pub, k.name = *pub, *name
		}
	}
	if err != nil {
		s.flush(k.handle)
		return nil, fmt.Errorf("storage key from the TPM at %s: %w", s.label, err)
	}
	return k, nil
}

// flush unloads a transient object or session, best effort: a handle the TPM
// lost already needs nothing, and NewTPMSealer flushes stragglers.
func (s *TPMSealer) flush(h tpm2.TPMHandle) {
	tpm2.FlushContext{FlushHandle: h}.Execute(s.tpm)
}

// explain wraps err from a TPM command, step, with what it means.
func (s *TPMSealer) explain(step string, err error) error {
	if errors.Is(err, tpm2.TPMRCLockout) {
		return fmt.Errorf("TPM is in dictionary-attack lockout (%s on %s: %w); it leaves lockout after its "+
			"recovery interval, or at once with the lockout authorisation (tpm2_dictionarylockout --clear-lockout)",
			step, s.label, err)
	}
	return fmt.Errorf("%s on the TPM at %s: %w", step, s.label, err)
}

// sealedObjectTemplate is the public template of a sealed data object:
// fixed to this TPM and parent, usable with its empty auth value unless
// policy is set, in which case only the policy unseals it. NoDA: with an
// empty auth value there is no secret to guess, so dictionary-attack lockout
// must not stop a node from starting.
func sealedObjectTemplate(policy []byte) tpm2.TPMTPublic {
	return tpm2.TPMTPublic{
		Type:    tpm2.TPMAlgKeyedHash,
		NameAlg: tpm2.TPMAlgSHA256,
		ObjectAttributes: tpm2.TPMAObject{
			FixedTPM:     true,
			FixedParent:  true,
			NoDA:         true,
			UserWithAuth: len(policy) == 0,
		},
		AuthPolicy: tpm2.TPM2BDigest{Buffer: policy},
		Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgKeyedHash, &tpm2.TPMSKeyedHashParms{
			Scheme: tpm2.TPMTKeyedHashScheme{Scheme: tpm2.TPMAlgNull},
		}),
	}
}

// Seal seals secret (1-128 bytes) to this TPM and, if the sealer has PCRs,
// to their current values. The blob format is described at tpmBlobMagic.
func (s *TPMSealer) Seal(secret []byte) ([]byte, error) {
	if len(secret) == 0 || len(secret) > maxTPMSecret {
		return nil, fmt.Errorf("tpm: seal: secret is %d bytes, want 1-%d", len(secret), maxTPMSecret)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tpm == nil {
		return nil, ErrClosed
	}
	srk, err := s.createStorageKey()
	if err != nil {
		return nil, fmt.Errorf("tpm: seal: %w", err)
	}
	defer s.flush(srk.handle)

	sel := pcrSelection(s.pcrs)
	var policy []byte
	if len(s.pcrs) > 0 {
		if policy, err = s.pcrPolicyDigest(sel); err != nil {
			return nil, fmt.Errorf("tpm: seal: %w", err)
		}
	}
	rsp, err := tpm2.Create{
		ParentHandle: tpm2.AuthHandle{
			Handle: srk.handle,
			Name:   srk.name,
			// The secret is the first command parameter: encrypt it in.
			Auth: tpm2.HMAC(tpm2.TPMAlgSHA256, tpmNonceSize,
				tpm2.Salted(srk.handle, srk.pub), tpm2.AESEncryption(128, tpm2.EncryptIn)),
		},
		InSensitive: tpm2.TPM2BSensitiveCreate{Sensitive: &tpm2.TPMSSensitiveCreate{
			Data: tpm2.NewTPMUSensitiveCreate(&tpm2.TPM2BSensitiveData{Buffer: secret}),
		}},
		InPublic: tpm2.New2B(sealedObjectTemplate(policy)),
	}.Execute(s.tpm)
	if err != nil {
		return nil, fmt.Errorf("tpm: seal: %w", s.explain("TPM2_Create (the sealed object)", err))
	}
	b := tpmBlob{srkName: srk.name.Buffer, public: rsp.OutPublic, private: rsp.OutPrivate, pcrSel: sel}
	return b.marshal(), nil
}

// pcrPolicyDigest has the TPM compute, in a trial session, the digest of
// TPM2_PolicyPCR over the current values of the PCRs in sel.
func (s *TPMSealer) pcrPolicyDigest(sel tpm2.TPMLPCRSelection) ([]byte, error) {
	sess, closeSess, err := tpm2.PolicySession(s.tpm, tpm2.TPMAlgSHA256, tpmNonceSize, tpm2.Trial())
	if err != nil {
		return nil, s.explain("TPM2_StartAuthSession (trial policy)", err)
	}
	defer closeSess()
	if _, err := (tpm2.PolicyPCR{PolicySession: sess.Handle(), Pcrs: sel}).Execute(s.tpm); err != nil {
		return nil, s.explain(fmt.Sprintf("TPM2_PolicyPCR (trial, PCRs %v in the SHA-256 bank)", s.pcrs), err)
	}
	rsp, err := tpm2.PolicyGetDigest{PolicySession: sess.Handle()}.Execute(s.tpm)
	if err != nil {
		return nil, s.explain("TPM2_PolicyGetDigest", err)
	}
	return rsp.PolicyDigest.Buffer, nil
}

// Unseal returns the secret sealed in blob. It fails with an error wrapping
// ErrUnseal that says why: a blob sealed by a different TPM (or before the
// owner hierarchy was cleared), PCR values that changed since sealing, a TPM
// in dictionary-attack lockout, a corrupted or altered blob.
func (s *TPMSealer) Unseal(blob []byte) ([]byte, error) {
	b, err := parseTPMBlob(blob)
	if err != nil {
		return nil, err
	}
	contents, err := b.public.Contents()
	if err != nil {
		return nil, fmt.Errorf("%w: malformed TPM-sealed blob: %w", ErrUnseal, err)
	}
	objName, err := tpm2.ObjectName(contents)
	if err != nil {
		return nil, fmt.Errorf("%w: malformed TPM-sealed blob: %w", ErrUnseal, err)
	}
	fail := func(err error) ([]byte, error) {
		return nil, fmt.Errorf("%w: %w", ErrUnseal, err)
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tpm == nil {
		return nil, ErrClosed
	}
	srk, err := s.createStorageKey()
	if err != nil {
		return fail(err)
	}
	defer s.flush(srk.handle)
	if !bytes.Equal(srk.name.Buffer, b.srkName) {
		return fail(fmt.Errorf("sealed by a different TPM (or its owner hierarchy was cleared): the storage key "+
			"of the TPM at %s is not the one the blob was sealed under", s.label))
	}

	load, err := tpm2.Load{
		ParentHandle: tpm2.AuthHandle{Handle: srk.handle, Name: srk.name, Auth: tpm2.PasswordAuth(nil)},
		InPrivate:    b.private,
		InPublic:     b.public,
	}.Execute(s.tpm)
	switch {
	case errors.Is(err, tpm2.TPMRCIntegrity), errors.Is(err, tpm2.TPMRCBinding):
		// The storage key is the one the blob names, so the TPM is the
		// right one; it is the blob that does not verify.
		return fail(fmt.Errorf("the sealed object fails the integrity check of the TPM at %s that sealed it: "+
			"the blob is corrupted or was altered (%w)", s.label, err))
	case err != nil:
		return fail(s.explain("TPM2_Load (the sealed object)", err))
	}
	defer s.flush(load.ObjectHandle)

	// The unsealed secret is the first response parameter: encrypt it out,
	// under a session salted to the storage key whose Name the blob pins.
	salted := []tpm2.AuthOption{tpm2.Salted(srk.handle, srk.pub), tpm2.AESEncryption(128, tpm2.EncryptOut)}
	var auth tpm2.Session
	if len(b.pcrs) == 0 {
		auth = tpm2.HMAC(tpm2.TPMAlgSHA256, tpmNonceSize, salted...)
	} else {
		sess, closeSess, err := tpm2.PolicySession(s.tpm, tpm2.TPMAlgSHA256, tpmNonceSize, salted...)
		if err != nil {
			return fail(s.explain("TPM2_StartAuthSession (policy)", err))
		}
		defer closeSess()
		if _, err := (tpm2.PolicyPCR{PolicySession: sess.Handle(), Pcrs: b.pcrSel}).Execute(s.tpm); err != nil {
			return fail(s.explain(fmt.Sprintf("TPM2_PolicyPCR (PCRs %v in the SHA-256 bank)", b.pcrs), err))
		}
		auth = sess
	}
	rsp, err := tpm2.Unseal{
		ItemHandle: tpm2.AuthHandle{Handle: load.ObjectHandle, Name: *objName, Auth: auth},
	}.Execute(s.tpm)
	switch {
	case len(b.pcrs) > 0 && (errors.Is(err, tpm2.TPMRCPolicyFail) || errors.Is(err, tpm2.TPMRCValue)):
		return fail(fmt.Errorf("PCR values changed since sealing (PCRs %v): boot state differs "+
			"(firmware, bootloader or Secure Boot configuration) from when the key was sealed (%w)", b.pcrs, err))
	case err != nil:
		return fail(s.explain("TPM2_Unseal", err))
	}
	return rsp.OutData.Buffer, nil
}

// Close closes the connection to the TPM. Later calls to Seal and Unseal
// return ErrClosed; closing again does nothing.
func (s *TPMSealer) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tpm == nil {
		return nil
	}
	err := s.tpm.Close()
	s.tpm = nil
	return err
}
