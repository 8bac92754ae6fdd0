package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/bulwark-auth/bulwark/authcore"
	"github.com/bulwark-auth/bulwark/cmd/bulwark/config"
)

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

// issuerError names the key to fix when this node's tokens.issuer is not
// its cluster's; other errors pass unchanged.
func issuerError(err error) error {
	var c *authcore.IssuerConflictError
	if !errors.As(err, &c) {
		return err
	}
	is := fmt.Sprintf("is %q", c.Configured)
	if c.Configured == "" {
		is = "is empty"
	}
	return fmt.Errorf("tokens.issuer %s, but this node's cluster uses %q: every member signs with the cluster's issuer; "+
		"set tokens.issuer = %q in this node's configuration and start it again", is, c.Cluster, c.Cluster)
}

// publishKey puts the signing key into the replicated JWKS once the node
// can write, retrying until it has or ctx ends, and with it this node's
// issuer once the cluster's feature level records issuers: until then the
// key is published and the issuer is tried again every few seconds. Once
// the key is published, done is set and published closed. A tokens.issuer
// that is not the cluster's is fatal: the error goes to fatal and nothing
// is published.
func publishKey(ctx context.Context, core *authcore.Service, done *atomic.Bool, published chan<- struct{}, fatal chan<- error, logger *slog.Logger) {
	markDone := func() {
		if !done.Swap(true) {
			close(published)
		}
	}
	for delay := 100 * time.Millisecond; ; delay = min(2*delay, 5*time.Second) {
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := core.PublishSigningKey(pctx)
		cancel()
		switch {
		case err == nil:
			markDone()
			return
		case errors.Is(err, authcore.ErrIssuerConflict):
			fatal <- issuerError(err)
			return
		case errors.Is(err, authcore.ErrIssuerNotRecorded):
			markDone()
			delay = 2 * time.Second
		}
		logger.Debug("signing key or issuer not published yet", "error", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(delay):
		}
	}
}
