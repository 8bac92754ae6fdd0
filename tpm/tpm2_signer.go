package tpm

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"encoding/asn1"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/big"
	"os"
	"path/filepath"
	"strconv"

	"github.com/google/go-tpm/tpm2"

	"github.com/bulwark-auth/bulwark/tpm/atomicfile"
)

// TPM-resident signing keys (seal.signing = "tpm-resident").
//
// A TPMKey is an ECDSA P-256 key made by the TPM (TPM2_Create under the same
// storage primary key the sealer recreates for every seal) that never leaves
// it: its private half exists outside the TPM only as the TPM2B_PRIVATE the
// TPM encrypted and integrity-protected under the storage key, so the key file
// is no secret, yet only this TPM can load it. Every signature is a
// TPM2_Sign.
//
// The key stays loaded between signatures (one TPM command per signature).
// A TPM that lost it (reset, swtpm restarted, a handle evicted) answers
// TPM_RC_HANDLE or TPM_RC_REFERENCE_H0; the key is then loaded again and the
// signature retried. A handle the TPM has since given to another object would
// sign with the wrong key, so every signature is verified against the key's
// public half before it is returned (about 50 µs, against a millisecond or
// more for TPM2_Sign on hardware); a signature that does not verify is
// treated as a lost handle. When loading finds the TPM's object slots full
// (TPM_RC_OBJECT_MEMORY: a TPM with no resource manager holds three), every
// transient object is flushed, which is safe because, while the sealer's
// lock is held, the only objects this process has loaded are cached signing
// keys, and each of those reloads on its next signature.

// TPM signing-key file format, version 1:
//
//	"BWTK" | 0x01 | field(srkName) | field(TPM2B_PUBLIC) | field(TPM2B_PRIVATE)
//
// with field(x) as in the sealing blob (tpmBlobMagic): a 2-byte big-endian
// length, then x in the TPM's marshalled form. srkName pins the storage key
// the key was made under, so another TPM is refused by name before it is
// sent anything. The public area must be exactly signingKeyTemplate's apart
// from the point.
const (
	tpmKeyMagic   = "BWTK"
	tpmKeyVersion = 1
	maxTPMKeyLen  = 4 << 10 // far above what a P-256 key needs

	// signAttempts bounds the load-and-sign rounds of one Sign: a lost
	// connection, then a lost handle, then success.
	signAttempts = 3
)

// errWrongSignature reports a TPM signature that does not verify under the
// key's public half: the cached handle names another object now.
var errWrongSignature = errors.New("the TPM's signature does not verify under the key's public half")

// TPMKey is an ECDSA P-256 signing key held by the TPM; it implements
// crypto.Signer. Signatures are serialised with the sealer's other TPM
// commands. Close it before closing the sealer.
type TPMKey struct {
	s    *TPMSealer
	path string // the key file, named in errors
	file tpmKeyFile
	name tpm2.TPM2BName // computed from the public area
	pub  *ecdsa.PublicKey

	// Guarded by s.mu.
	loaded bool
	handle tpm2.TPMHandle // valid while loaded
	closed bool
}

var _ crypto.Signer = (*TPMKey)(nil)

// SigningKeyPath is where generation gen of a TPM-resident signing key
// lives: <dataDir>/tpm/signing-<gen>.key.
func SigningKeyPath(dataDir string, gen int) string {
	return filepath.Join(dataDir, "tpm", "signing-"+strconv.Itoa(gen)+".key")
}

// signingKeyTemplate is the public template of a signing key: an
// unrestricted ECDSA P-256 key for SHA-256 digests, made inside this TPM and
// fixed to it and to the storage key, usable with its empty auth value. NoDA
// for the reason sealedObjectTemplate gives: with no secret to guess,
// dictionary-attack lockout must not stop a node from issuing tokens.
func signingKeyTemplate() tpm2.TPMTPublic {
	return tpm2.TPMTPublic{
		Type:    tpm2.TPMAlgECC,
		NameAlg: tpm2.TPMAlgSHA256,
		ObjectAttributes: tpm2.TPMAObject{
			FixedTPM:            true,
			FixedParent:         true,
			SensitiveDataOrigin: true,
			UserWithAuth:        true,
			NoDA:                true,
			SignEncrypt:         true,
		},
		Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgECC, &tpm2.TPMSECCParms{
			Symmetric: tpm2.TPMTSymDefObject{Algorithm: tpm2.TPMAlgNull},
			Scheme: tpm2.TPMTECCScheme{
				Scheme:  tpm2.TPMAlgECDSA,
				Details: tpm2.NewTPMUAsymScheme(tpm2.TPMAlgECDSA, &tpm2.TPMSSigSchemeECDSA{HashAlg: tpm2.TPMAlgSHA256}),
			},
			CurveID: tpm2.TPMECCNistP256,
			KDF:     tpm2.TPMTKDFScheme{Scheme: tpm2.TPMAlgNull},
		}),
		Unique: tpm2.NewTPMUPublicID(tpm2.TPMAlgECC, &tpm2.TPMSECCPoint{}),
	}
}

// NewSigningKey has the TPM make a new signing key, loads it, and writes its
// file to path, which must not exist yet (a generation is never replaced; an
// existing file gives an error satisfying errors.Is(err, fs.ErrExist)). The
// directory is created if needed.
func (s *TPMSealer) NewSigningKey(path string) (*TPMKey, error) {
	fail := func(err error) (*TPMKey, error) {
		return nil, fmt.Errorf("tpm: new signing key %s: %w", path, err)
	}
	if _, err := os.Lstat(path); err == nil {
		return fail(fmt.Errorf("%w: the file exists already", os.ErrExist))
	}
	s.mu.Lock()
	f, err := s.createSigningKey()
	if err != nil {
		s.mu.Unlock()
		return fail(err)
	}
	k, err := newTPMKey(s, path, f)
	if err == nil {
		err = k.load()
	}
	s.mu.Unlock()
	if err != nil {
		return fail(err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		k.Close()
		return fail(err)
	}
	if err := atomicfile.CreateExclusive(path, f.marshal(), 0o600); err != nil {
		k.Close()
		return fail(err)
	}
	return k, nil
}

// createSigningKey runs TPM2_Create for a signing key. Callers hold s.mu.
func (s *TPMSealer) createSigningKey() (tpmKeyFile, error) {
	if s.tpm == nil {
		return tpmKeyFile{}, ErrClosed
	}
	var f tpmKeyFile
	err := s.withObjectRoom(func() error {
		srk, err := s.createStorageKey()
		if err != nil {
			return err
		}
		defer s.flush(srk.handle)
		rsp, err := tpm2.Create{
			ParentHandle: tpm2.AuthHandle{
				Handle: srk.handle,
				Name:   srk.name,
				// Nothing secret goes in or out, but a session salted to
				// the storage key authenticates the response.
				Auth: tpm2.HMAC(tpm2.TPMAlgSHA256, tpmNonceSize, tpm2.Salted(srk.handle, srk.pub)),
			},
			InPublic: tpm2.New2B(signingKeyTemplate()),
		}.Execute(s.tpm)
		if err != nil {
			return s.explain("TPM2_Create (the signing key)", err)
		}
		f = tpmKeyFile{srkName: bytes.Clone(srk.name.Buffer), public: rsp.OutPublic, private: rsp.OutPrivate}
		return nil
	})
	return f, err
}

// LoadSigningKey loads the signing key whose file NewSigningKey wrote at
// path. A file made by another TPM (or before the owner hierarchy was
// cleared), altered, or not a signing-key file gives an error wrapping
// ErrUnseal that says which; an unreachable TPM one wrapping ErrNoTPM.
func (s *TPMSealer) LoadSigningKey(path string) (*TPMKey, error) {
	fail := func(err error) (*TPMKey, error) {
		return nil, fmt.Errorf("tpm: load signing key %s: %w", path, err)
	}
	data, err := readTPMKeyFile(path)
	if err != nil {
		return fail(err)
	}
	f, err := parseTPMKeyFile(data)
	if err != nil {
		return fail(err)
	}
	k, err := newTPMKey(s, path, f)
	if err != nil {
		return fail(err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tpm == nil {
		return fail(ErrClosed)
	}
	if err := k.load(); err != nil {
		return fail(err)
	}
	return k, nil
}

// readTPMKeyFile reads at most maxTPMKeyLen+1 bytes of path.
func readTPMKeyFile(path string) ([]byte, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	return io.ReadAll(io.LimitReader(fh, maxTPMKeyLen+1))
}

func newTPMKey(s *TPMSealer, path string, f tpmKeyFile) (*TPMKey, error) {
	pub, name, err := f.check()
	if err != nil {
		return nil, fmt.Errorf("%w: malformed TPM key file: %w", ErrUnseal, err)
	}
	return &TPMKey{s: s, path: path, file: f, name: name, pub: pub}, nil
}

// check returns the public key and the Name of a key file's object, or why
// the file holds no bulwark signing key.
func (f *tpmKeyFile) check() (_ *ecdsa.PublicKey, _ tpm2.TPM2BName, err error) {
	defer func() { // see unmarshalExact
		if r := recover(); r != nil {
			err = fmt.Errorf("cannot decode the public area: %v", r)
		}
	}()
	contents, err := f.public.Contents()
	if err != nil {
		return nil, tpm2.TPM2BName{}, fmt.Errorf("public area: %w", err)
	}
	pub, err := signingPublicKey(contents)
	if err != nil {
		return nil, tpm2.TPM2BName{}, err
	}
	name, err := tpm2.ObjectName(contents)
	if err != nil {
		return nil, tpm2.TPM2BName{}, err
	}
	return pub, *name, nil
}

// signingPublicKey checks that pub is signingKeyTemplate with a point on
// P-256, and returns the point.
func signingPublicKey(pub *tpm2.TPMTPublic) (*ecdsa.PublicKey, error) {
	point, err := pub.Unique.ECC()
	if err != nil || pub.Type != tpm2.TPMAlgECC {
		return nil, fmt.Errorf("object type %#x is not an ECC key", uint16(pub.Type))
	}
	want := signingKeyTemplate()
	got := *pub
	got.Unique = want.Unique
	if !bytes.Equal(tpm2.Marshal(got), tpm2.Marshal(want)) {
		return nil, errors.New("the public area is not that of a bulwark signing key " +
			"(ECDSA P-256, SHA-256, made in and fixed to the TPM)")
	}
	const size = 32
	if len(point.X.Buffer) > size || len(point.Y.Buffer) > size {
		return nil, errors.New("the public point is not on P-256")
	}
	uncompressed := make([]byte, 1+2*size)
	uncompressed[0] = 4
	copy(uncompressed[1+size-len(point.X.Buffer):], point.X.Buffer)
	copy(uncompressed[1+2*size-len(point.Y.Buffer):], point.Y.Buffer)
	k, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), uncompressed)
	if err != nil {
		return nil, fmt.Errorf("the public point is not on P-256: %w", err)
	}
	return k, nil
}

// load loads the key into the TPM and caches its handle. Callers hold s.mu
// and have checked that the sealer is open.
func (k *TPMKey) load() error {
	s := k.s
	return s.withObjectRoom(func() error {
		srk, err := s.createStorageKey()
		if err != nil {
			return err
		}
		defer s.flush(srk.handle)
		if !bytes.Equal(srk.name.Buffer, k.file.srkName) {
			return fmt.Errorf("%w: made by a different TPM (or its owner hierarchy was cleared): the storage key "+
				"of the TPM at %s is not the one the key was made under", ErrUnseal, s.label)
		}
		rsp, err := tpm2.Load{
			ParentHandle: tpm2.AuthHandle{Handle: srk.handle, Name: srk.name, Auth: tpm2.PasswordAuth(nil)},
			InPrivate:    k.file.private,
			InPublic:     k.file.public,
		}.Execute(s.tpm)
		switch {
		case errors.Is(err, tpm2.TPMRCIntegrity), errors.Is(err, tpm2.TPMRCBinding):
			return fmt.Errorf("%w: the key fails the integrity check of the TPM at %s that made it: "+
				"the file is corrupted or was altered (%w)", ErrUnseal, s.label, err)
		case err != nil:
			return s.explain("TPM2_Load (the signing key)", err)
		}
		if !bytes.Equal(rsp.Name.Buffer, k.name.Buffer) {
			s.flush(rsp.ObjectHandle)
			return fmt.Errorf("TPM2_Load on the TPM at %s returned the Name %x, want %x", s.label, rsp.Name.Buffer, k.name.Buffer)
		}
		k.handle, k.loaded = rsp.ObjectHandle, true
		return nil
	})
}

// withObjectRoom runs f, and if the TPM has no room for another object
// (TPM_RC_OBJECT_MEMORY), flushes every transient object and runs f again.
// Callers hold s.mu: then the only objects this process has loaded are
// cached signing keys, and each reloads when it finds its handle gone.
func (s *TPMSealer) withObjectRoom(f func() error) error {
	err := f()
	if !errors.Is(err, tpm2.TPMRCObjectMemory) {
		return err
	}
	if ferr := flushLeftovers(s.tpm); ferr != nil {
		return fmt.Errorf("%w (and flushing to make room failed: %w)", err, ferr)
	}
	return f()
}

// Public returns the key's *ecdsa.PublicKey.
func (k *TPMKey) Public() crypto.PublicKey { return k.pub }

// Path is the key file.
func (k *TPMKey) Path() string { return k.path }

// Sign signs digest, a SHA-256 digest (opts must say crypto.SHA256), with
// TPM2_Sign, and returns the ASN.1 DER ECDSA signature crypto.Signer
// promises. rand is not used: the TPM draws the nonce itself.
func (k *TPMKey) Sign(_ io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	if opts == nil || opts.HashFunc() != crypto.SHA256 || len(digest) != sha256.Size {
		return nil, fmt.Errorf("tpm: sign with %s: want a %d-byte SHA-256 digest", k.path, sha256.Size)
	}
	s := k.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tpm == nil || k.closed {
		return nil, ErrClosed
	}
	var err error
	for range signAttempts {
		if !k.loaded {
			if err = k.load(); err != nil {
				break
			}
		}
		var der []byte
		if der, err = k.signLoaded(digest); err == nil {
			return der, nil
		}
		if !handleLost(err) {
			break
		}
		k.loaded = false
		if errors.Is(err, tpm2.TPMRCInitialize) {
			// The TPM was reset and awaits TPM2_Startup, which clears
			// every transient object.
			if err = startup(s.tpm, s.label); err != nil {
				break
			}
		}
	}
	return nil, fmt.Errorf("tpm: sign with %s: %w", k.path, err)
}

// handleLost reports whether a TPM2_Sign failed because the cached handle no
// longer names the key, so that loading it again may help.
func handleLost(err error) bool {
	return errors.Is(err, tpm2.TPMRCHandle) || errors.Is(err, tpm2.TPMRCReferenceH0) ||
		errors.Is(err, tpm2.TPMRCInitialize) || errors.Is(err, errWrongSignature) ||
		errors.Is(err, ErrNoTPM) // a connection redialled: the TPM may have restarted
}

// signLoaded signs with the loaded key and checks the signature. Callers
// hold s.mu.
func (k *TPMKey) signLoaded(digest []byte) ([]byte, error) {
	s := k.s
	rsp, err := tpm2.Sign{
		KeyHandle: tpm2.AuthHandle{Handle: k.handle, Name: k.name, Auth: tpm2.PasswordAuth(nil)},
		Digest:    tpm2.TPM2BDigest{Buffer: digest},
		InScheme: tpm2.TPMTSigScheme{
			Scheme:  tpm2.TPMAlgECDSA,
			Details: tpm2.NewTPMUSigScheme(tpm2.TPMAlgECDSA, &tpm2.TPMSSchemeHash{HashAlg: tpm2.TPMAlgSHA256}),
		},
		// The null ticket: an unrestricted key signs any digest.
		Validation: tpm2.TPMTTKHashCheck{Tag: tpm2.TPMSTHashCheck, Hierarchy: tpm2.TPMRHNull},
	}.Execute(s.tpm)
	if err != nil {
		return nil, s.explain("TPM2_Sign", err)
	}
	sig, err := rsp.Signature.Signature.ECDSA()
	if err != nil || rsp.Signature.SigAlg != tpm2.TPMAlgECDSA || sig.Hash != tpm2.TPMAlgSHA256 {
		return nil, fmt.Errorf("TPM2_Sign on the TPM at %s: not an ECDSA SHA-256 signature (%#x)",
			s.label, uint16(rsp.Signature.SigAlg))
	}
	der, err := asn1.Marshal(struct{ R, S *big.Int }{
		new(big.Int).SetBytes(sig.SignatureR.Buffer),
		new(big.Int).SetBytes(sig.SignatureS.Buffer),
	})
	if err != nil {
		return nil, err
	}
	if !ecdsa.VerifyASN1(k.pub, digest, der) {
		return nil, fmt.Errorf("TPM2_Sign on the TPM at %s with handle %#x: %w", s.label, uint32(k.handle), errWrongSignature)
	}
	return der, nil
}

// Close unloads the key from the TPM. Later calls to Sign return ErrClosed;
// closing again, or after the sealer, does nothing.
func (k *TPMKey) Close() error {
	s := k.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if k.loaded && s.tpm != nil {
		s.flush(k.handle)
	}
	k.loaded, k.closed = false, true
	return nil
}

// tpmKeyFile is a parsed signing-key file.
type tpmKeyFile struct {
	srkName []byte
	public  tpm2.TPM2BPublic
	private tpm2.TPM2BPrivate
}

func (f *tpmKeyFile) marshal() []byte {
	var out bytes.Buffer
	out.WriteString(tpmKeyMagic)
	out.WriteByte(tpmKeyVersion)
	for _, field := range [][]byte{f.srkName, tpm2.Marshal(f.public), tpm2.Marshal(f.private)} {
		out.Write(binary.BigEndian.AppendUint16(nil, uint16(len(field))))
		out.Write(field)
	}
	return out.Bytes()
}

// parseTPMKeyFile decodes and checks a file made by marshal. Every error
// wraps ErrUnseal.
func parseTPMKeyFile(data []byte) (tpmKeyFile, error) {
	bad := func(format string, args ...any) (tpmKeyFile, error) {
		return tpmKeyFile{}, fmt.Errorf("%w: malformed TPM key file: %s", ErrUnseal, fmt.Sprintf(format, args...))
	}
	hdr := len(tpmKeyMagic) + 1
	switch {
	case len(data) < hdr:
		return bad("%d bytes, too short", len(data))
	case len(data) > maxTPMKeyLen:
		return bad("more than %d bytes", maxTPMKeyLen)
	case string(data[:len(tpmKeyMagic)]) != tpmKeyMagic:
		return bad("not a TPM key file (magic %q, want %q)", data[:len(tpmKeyMagic)], tpmKeyMagic)
	case data[len(tpmKeyMagic)] != tpmKeyVersion:
		return tpmKeyFile{}, fmt.Errorf("%w: unsupported TPM key file version %d (want %d)", ErrUnseal, data[len(tpmKeyMagic)], tpmKeyVersion)
	}
	fields, why := splitFields(data[hdr:], 3)
	if why != "" {
		return bad("%s", why)
	}
	f := tpmKeyFile{srkName: bytes.Clone(fields[0])}
	if len(f.srkName) == 0 {
		return bad("empty storage key name")
	}
	pub, err := unmarshalExact[tpm2.TPM2BPublic](fields[1])
	if err != nil {
		return bad("public area: %v", err)
	}
	priv, err := unmarshalExact[tpm2.TPM2BPrivate](fields[2])
	if err != nil {
		return bad("private area: %v", err)
	}
	f.public, f.private = *pub, *priv
	if len(f.private.Buffer) == 0 {
		return bad("empty private area")
	}
	if _, _, err := f.check(); err != nil {
		return bad("%v", err)
	}
	return f, nil
}
