package main

import (
	"context"
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

// publishKey puts the signing key into the replicated JWKS once the node
// can write, retrying until it has or ctx ends.
func publishKey(ctx context.Context, core *authcore.Service, done *atomic.Bool, logger *slog.Logger) {
	for delay := 100 * time.Millisecond; ; delay = min(2*delay, 5*time.Second) {
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := core.PublishSigningKey(pctx)
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
