package main

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/cloudflare/circl/sign/mldsa/mldsa65"

	"github.com/bulwark-auth/bulwark/authcore"
	"github.com/bulwark-auth/bulwark/cmd/bulwark/config"
	"github.com/bulwark-auth/bulwark/tpm"
)

// signingKey returns this node's signing key for alg from the keystore,
// creating it on first use. The private key never leaves the keystore;
// its public half is published through the log by publishKey.
func signingKey(ks *tpm.Keystore, alg string) (*authcore.Signer, error) {
	name := "signing/" + alg
	key, ok := ks.PrivateKey(name)
	if !ok {
		var err error
		switch alg {
		case authcore.AlgES256:
			key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		case authcore.AlgEdDSA:
			_, key, err = ed25519.GenerateKey(rand.Reader)
		case authcore.AlgRS256:
			key, err = rsa.GenerateKey(rand.Reader, 3072)
		case authcore.AlgMLDSA65:
			_, key, err = mldsa65.GenerateKey(rand.Reader) // kept as its seed
		default:
			return nil, fmt.Errorf("tokens.algorithm = %q is not supported; use ES256, EdDSA, RS256 or ML-DSA-65", alg)
		}
		if err != nil {
			return nil, err
		}
		if err := ks.Put(name, key.(crypto.Signer)); err != nil {
			return nil, fmt.Errorf("store signing key: %w", err)
		}
	}
	return authcore.NewSigner(key, alg)
}

// issuer is tokens.issuer, or https://<advertised host, else API host>:<API port>.
func issuer(cfg config.Config, advertise string) (string, error) {
	if cfg.Tokens.Issuer != "" {
		return cfg.Tokens.Issuer, nil
	}
	apiHost, apiPort, err := net.SplitHostPort(cfg.API.Listen)
	if err != nil {
		return "", fmt.Errorf("api.listen: %w", err)
	}
	host := apiHost
	if cfg.Cluster.Advertise != "" || host == "" || host == "0.0.0.0" || host == "::" {
		if host, _, err = net.SplitHostPort(advertise); err != nil {
			return "", err
		}
	}
	if _, err := strconv.Atoi(apiPort); err != nil {
		return "", fmt.Errorf("api.listen port %q", apiPort)
	}
	return (&url.URL{Scheme: "https", Host: net.JoinHostPort(host, apiPort)}).String(), nil
}

// publishKey puts the signing key into the replicated JWKS once the node
// can write, retrying until it has or ctx ends.
func publishKey(ctx context.Context, core *authcore.Service, nodeID string, done *atomic.Bool, logger *slog.Logger) {
	for delay := 100 * time.Millisecond; ; delay = min(2*delay, 5*time.Second) {
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := core.PublishSigningKey(pctx, nodeID)
		cancel()
		if err == nil {
			done.Store(true)
			return
		}
		logger.Debug("signing key not published yet", "error", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(delay):
		}
	}
}
