package tpm

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/google/go-tpm/tpm2"
)

// TPM sealing blob format, version 1:
//
//	"BWTP" | 0x01 | field(srkName) | field(TPM2B_PUBLIC) | field(TPM2B_PRIVATE) | field(TPML_PCR_SELECTION)
//
// where field(x) is a 2-byte big-endian length followed by x in the TPM's own
// marshalled form. srkName is the Name of the storage primary key the object
// was sealed under: Unseal recreates that key and refuses a TPM whose key has
// another Name (a different TPM, or a cleared owner hierarchy) before sending
// it anything, and uses the key only once its Name matches, so the salt of the
// session that carries the secret out is encrypted to the pinned key. The PCR
// selection is empty for a blob bound to no PCRs; otherwise it selects PCRs
// in the SHA-256 bank and the object's authPolicy is TPM2_PolicyPCR over them.
//
// The blob holds no secret in clear: TPM2B_PRIVATE is encrypted and
// integrity-protected under the storage primary key, which never leaves the
// TPM.
const (
	tpmBlobMagic   = "BWTP"
	tpmBlobVersion = 1
	maxTPMBlobLen  = 8 << 10 // far above what a sealed-data object needs
)

// tpmBlob is a parsed TPM sealing blob.
type tpmBlob struct {
	srkName []byte
	public  tpm2.TPM2BPublic
	private tpm2.TPM2BPrivate
	pcrSel  tpm2.TPMLPCRSelection
	pcrs    []int // the PCRs pcrSel selects, ascending
}

func (b *tpmBlob) marshal() []byte {
	var out bytes.Buffer
	out.WriteString(tpmBlobMagic)
	out.WriteByte(tpmBlobVersion)
	for _, f := range [][]byte{
		b.srkName,
		tpm2.Marshal(b.public),
		tpm2.Marshal(b.private),
		tpm2.Marshal(b.pcrSel),
	} {
		out.Write(binary.BigEndian.AppendUint16(nil, uint16(len(f))))
		out.Write(f)
	}
	return out.Bytes()
}

// parseTPMBlob decodes and checks a blob made by marshal. Every error wraps
// ErrUnseal.
func parseTPMBlob(data []byte) (b *tpmBlob, err error) {
	bad := func(format string, args ...any) (*tpmBlob, error) {
		return nil, fmt.Errorf("%w: malformed TPM-sealed blob: %s", ErrUnseal, fmt.Sprintf(format, args...))
	}
	hdr := len(tpmBlobMagic) + 1
	switch {
	case len(data) < hdr:
		return bad("%d bytes, too short", len(data))
	case len(data) > maxTPMBlobLen:
		return bad("%d bytes, more than %d", len(data), maxTPMBlobLen)
	case string(data[:len(tpmBlobMagic)]) != tpmBlobMagic:
		if string(data[:len(softwareMagic)]) == softwareMagic {
			return nil, fmt.Errorf("%w: the blob was sealed in software mode (%s), not by a TPM; "+
				"seal.mode must match the mode the key was sealed with", ErrUnseal, softwareMagic)
		}
		return bad("not a TPM-sealed blob (magic %q, want %q)", data[:len(tpmBlobMagic)], tpmBlobMagic)
	case data[len(tpmBlobMagic)] != tpmBlobVersion:
		return nil, fmt.Errorf("%w: unsupported TPM-sealed blob version %d (want %d)", ErrUnseal, data[len(tpmBlobMagic)], tpmBlobVersion)
	}
	fields, why := splitFields(data[hdr:], 4)
	if why != "" {
		return bad("%s", why)
	}
	b = &tpmBlob{srkName: bytes.Clone(fields[0])}
	if len(b.srkName) == 0 {
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
	sel, err := unmarshalExact[tpm2.TPMLPCRSelection](fields[3])
	if err != nil {
		return bad("PCR selection: %v", err)
	}
	b.public, b.private, b.pcrSel = *pub, *priv, *sel
	contents, err := b.public.Contents()
	if err != nil {
		return bad("public area: %v", err)
	}
	if contents.Type != tpm2.TPMAlgKeyedHash {
		return bad("object type %#x is not a keyed-hash sealed data object", uint16(contents.Type))
	}
	if len(b.private.Buffer) == 0 {
		return bad("empty private area")
	}
	if b.pcrs, err = selectedPCRs(b.pcrSel); err != nil {
		return bad("%v", err)
	}
	if len(b.pcrs) > 0 && contents.ObjectAttributes.UserWithAuth {
		return bad("PCR-bound object allows authorisation without its policy")
	}
	return b, nil
}

// unmarshalExact unmarshals a T from data and requires that it use all of
// data and marshal back to the same bytes.
func unmarshalExact[T tpm2.Marshallable, P interface {
	*T
	tpm2.Unmarshallable
}](data []byte) (v *T, err error) {
	// go-tpm's reflection-based decoder is not hardened against arbitrary
	// input; a blob from disk must never crash the node.
	defer func() {
		if r := recover(); r != nil {
			v, err = nil, fmt.Errorf("cannot decode: %v", r)
		}
	}()
	v, err = tpm2.Unmarshal[T, P](data)
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(tpm2.Marshal(*v), data) {
		return nil, errors.New("non-canonical encoding or trailing bytes")
	}
	return v, nil
}

// pcrSelection returns the SHA-256 bank selection of pcrs, or an empty list
// for no PCRs.
func pcrSelection(pcrs []int) tpm2.TPMLPCRSelection {
	if len(pcrs) == 0 {
		return tpm2.TPMLPCRSelection{}
	}
	idx := make([]uint, len(pcrs))
	for i, p := range pcrs {
		idx[i] = uint(p)
	}
	return tpm2.TPMLPCRSelection{PCRSelections: []tpm2.TPMSPCRSelection{{
		Hash:      tpm2.TPMAlgSHA256,
		PCRSelect: tpm2.PCClientCompatible.PCRs(idx...),
	}}}
}

// selectedPCRs is the inverse of pcrSelection: it accepts an empty list or a
// single SHA-256 selection of at least one PCR in 0-23.
func selectedPCRs(sel tpm2.TPMLPCRSelection) ([]int, error) {
	switch len(sel.PCRSelections) {
	case 0:
		return nil, nil
	case 1:
	default:
		return nil, fmt.Errorf("%d PCR banks selected, want 1", len(sel.PCRSelections))
	}
	s := sel.PCRSelections[0]
	if s.Hash != tpm2.TPMAlgSHA256 {
		return nil, fmt.Errorf("PCR bank %#x, want SHA-256", uint16(s.Hash))
	}
	if len(s.PCRSelect) != maxPCR/8+1 {
		return nil, fmt.Errorf("PCR bitmap of %d bytes, want %d", len(s.PCRSelect), maxPCR/8+1)
	}
	var pcrs []int
	for i, byt := range s.PCRSelect {
		for bit := range 8 {
			if byt&(1<<bit) != 0 {
				pcrs = append(pcrs, 8*i+bit)
			}
		}
	}
	if len(pcrs) == 0 {
		return nil, errors.New("empty PCR bitmap")
	}
	return pcrs, nil
}

// splitFields reads exactly count fields, each a 2-byte big-endian length
// and that many bytes, filling all of b; why says what is wrong otherwise.
// The TPM blob and key file formats share it.
func splitFields(b []byte, count int) (fields [][]byte, why string) {
	fields = make([][]byte, count)
	for i := range fields {
		if len(b) < 2 {
			return nil, fmt.Sprintf("truncated at field %d", i)
		}
		n := int(binary.BigEndian.Uint16(b))
		if len(b)-2 < n {
			return nil, fmt.Sprintf("field %d claims %d bytes, %d left", i, n, len(b)-2)
		}
		fields[i], b = b[2:2+n], b[2+n:]
	}
	if len(b) != 0 {
		return nil, fmt.Sprintf("%d trailing bytes", len(b))
	}
	return fields, ""
}
