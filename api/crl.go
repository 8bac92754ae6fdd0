package api

import (
	"net/http"
	"strconv"
)

// CRLPath is where the API serves the cluster CA's CRL; the node
// certificates the cluster CA issues name it as their CRL distribution
// point (node/pki.CRLPath, the same path).
const CRLPath = "/pki/cluster-ca.crl"

// CRLFunc returns the cluster CA's last published CRL (DER); nil with a
// nil error when none is published yet.
type CRLFunc func() ([]byte, error)

// serveCRL answers the CRL as application/pkix-crl (RFC 5280, 4.2.1.13),
// public like the JWKS: a relying party checks the API certificate with
// it before it has any credential. None published yet: 503 unavailable.
func serveCRL(fn CRLFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		der, err := fn()
		switch {
		case err != nil:
			writeError(w, r, err)
			return
		case der == nil:
			writeError(w, r, &Error{Status: http.StatusServiceUnavailable, Code: CodeUnavailable,
				Description: "the cluster has published no CRL yet", RetryAfter: retryBusy})
			return
		}
		h := w.Header()
		h.Set("Content-Type", "application/pkix-crl")
		h.Set("Content-Length", strconv.Itoa(len(der)))
		h.Set("Cache-Control", "max-age=60")
		w.WriteHeader(http.StatusOK)
		w.Write(der)
	}
}
