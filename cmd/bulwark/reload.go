package main

import (
	"context"
	"crypto/tls"
	"log/slog"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"

	"github.com/bulwark-auth/bulwark/cmd/bulwark/config"
)

// certReloader serves the API certificate through tls.Config's
// GetCertificate, so SIGHUP can replace it: new handshakes get the new
// certificate, connections already open carry on with theirs.
type certReloader struct {
	cur  atomic.Pointer[tls.Certificate]
	load func() (tls.Certificate, error)
}

func newCertReloader(first tls.Certificate, load func() (tls.Certificate, error)) *certReloader {
	r := &certReloader{load: load}
	r.cur.Store(&first)
	return r
}

func (r *certReloader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return r.cur.Load(), nil
}

func (r *certReloader) reload() error {
	c, err := r.load()
	if err != nil {
		return err
	}
	r.cur.Store(&c)
	return nil
}

// reloadOnHUP re-reads, on each SIGHUP, the log level from the config
// file and the API certificate (the operator's files, or the node
// certificate, re-issued if it nears expiry), without dropping
// connections. A config or certificate that fails to load is reported and
// the running values stay.
func reloadOnHUP(ctx context.Context, configFile string, level *slog.LevelVar, certs *certReloader, logger *slog.Logger) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
		}
		if configFile != "" {
			cfg, err := config.Load(configFile)
			if err == nil {
				err = cfg.Validate()
			}
			var l slog.Level
			if err == nil {
				err = l.UnmarshalText([]byte(cfg.Log.Level))
			}
			if err != nil {
				logger.Error("SIGHUP: configuration not reloaded; keeping the running log level", "file", configFile, "error", err)
			} else if l != level.Level() {
				level.Set(l)
				logger.Info("SIGHUP: log level changed", "level", l.String())
				logger.Debug("debug logging is on")
			}
		}
		if err := certs.reload(); err != nil {
			logger.Error("SIGHUP: TLS certificate not reloaded; keeping the running one", "error", err)
		} else {
			logger.Info("SIGHUP: TLS certificate reloaded; open connections keep theirs")
		}
	}
}
