package main

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/bulwark-auth/bulwark/api"
	"github.com/bulwark-auth/bulwark/api/webhook"
	"github.com/bulwark-auth/bulwark/authcore"
	"github.com/bulwark-auth/bulwark/cmd/bulwark/config"
	"github.com/bulwark-auth/bulwark/fsm"
	"github.com/bulwark-auth/bulwark/internal/clock"
	"github.com/bulwark-auth/bulwark/node"
	"github.com/bulwark-auth/bulwark/node/pki"
	"github.com/bulwark-auth/bulwark/tpm"
)

// defaultConfigFile is read by serve and the admin commands when no
// --config is given and the file exists.
const defaultConfigFile = "/etc/bulwark/bulwark.toml"

// shutdownGrace bounds the drain on SIGTERM; API.md promises exit within 15 s.
const shutdownGrace = 10 * time.Second

func cmdServe(args []string, stderr io.Writer) error {
	spareProcs()
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	configFile := fs.String("config", "", "configuration file")
	dataDir := fs.String("data-dir", "", "data directory (overrides data_dir)")
	dev := fs.Bool("dev", false, "single dev node on loopback with software sealing")
	join := fs.String("join", "", "join token of an existing cluster")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("serve takes no arguments, got %q", pos[0])
	}
	if *join != "" && *dev {
		return usagef("serve: --join and --dev do not go together (--dev runs a single node)")
	}
	cfg, err := loadConfig(*configFile, !*dev)
	if err != nil {
		return err
	}
	if *dataDir != "" {
		cfg.DataDir = *dataDir
	}
	if *dev {
		cfg.ApplyDev(*dataDir)
	}
	if err := cfg.Resolve(); err != nil {
		return err
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	sink := newLogSink(stderr)
	defer sink.Close()
	level := new(slog.LevelVar)
	logger, err := newLogger(cfg.Log, level, sink)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	return serve(ctx, cfg, *dev, *join, logger, stderr, reloadable{configFile: *configFile, level: level})
}

// loadConfig reads the named file, or the default file when it exists and
// useDefault is set, or the built-in defaults.
func loadConfig(path string, useDefault bool) (config.Config, error) {
	if path != "" {
		return config.Load(path)
	}
	if useDefault {
		if _, err := os.Stat(defaultConfigFile); err == nil {
			return config.Load(defaultConfigFile)
		}
	}
	return config.Default(), nil
}

// newLogger builds the daemon's logger; level holds its level so SIGHUP
// can change it.
func newLogger(c config.Log, level *slog.LevelVar, w io.Writer) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(c.Level)); err != nil {
		return nil, fmt.Errorf("log.level: %w", err)
	}
	level.Set(l)
	opts := &slog.HandlerOptions{Level: level}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return slog.New(slog.NewTextHandler(w, opts)), nil
}

// serve starts every part of a node, in dependency order, and runs until
// ctx ends; then it drains and stops them in reverse.
// reloadable is what SIGHUP re-reads: the config file (for the log level)
// and the level it sets.
type reloadable struct {
	configFile string
	level      *slog.LevelVar
}

func serve(ctx context.Context, cfg config.Config, dev bool, joinToken string, logger *slog.Logger, stderr io.Writer, hup reloadable) error {
	// The one clock the node and the auth service decide by (lockout
	// windows, expiries, rotation, renewal): the system's.
	clk := clock.Real{}
	// --join: only into an empty data directory, and a refused join leaves
	// it as it was (node.BeginJoin).
	var joining *node.JoinAttempt
	if joinToken != "" {
		var err error
		if joining, err = node.BeginJoin(cfg.DataDir, joinToken); err != nil {
			return err
		}
		defer joining.Abandon()
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	sealer, err := newSealer(cfg, logger)
	if err != nil {
		return err
	}
	defer sealer.Close()
	ks, err := tpm.OpenKeystore(cfg.DataDir, sealer)
	if err != nil {
		return err
	}
	if joining != nil {
		advertise, err := advertiseAddr(cfg)
		if err != nil {
			return err
		}
		req := node.JoinRequest{NodeID: cfg.NodeName, Advertise: advertise, Hosts: certHosts(cfg, advertise),
			CRLURL: crlURL(cfg, advertise), Clock: clk}
		if err := joining.Run(ctx, ks, req, logger); err != nil {
			return err
		}
	}
	if err := node.EnsureDataKey(ks); err != nil {
		return err
	}
	box, err := secretBox(ks)
	if err != nil {
		return err
	}
	// Signing keys live in the keystore, or, with seal.signing =
	// "tpm-resident", are made in the TPM and never leave it.
	var vault authcore.KeyVault = ks
	if cfg.Seal.Signing == "tpm-resident" {
		ts, ok := sealer.(*tpm.TPMSealer)
		if !ok {
			return fmt.Errorf("seal.signing = \"tpm-resident\" needs seal.mode = \"tpm\"")
		}
		v := tpm.NewResidentKeys(ks, ts, cfg.DataDir)
		defer v.Close() // before the sealer closes
		vault = v
	}

	advertise, err := advertiseAddr(cfg)
	if err != nil {
		return err
	}
	nodeCert, caPool, err := nodeCertificate(cfg, ks, advertise)
	if err != nil {
		return err
	}
	cert, err := apiCertificate(cfg, nodeCert)
	if err != nil {
		return err
	}

	clusterCert, caCert, err := node.ClusterCertificate(cfg.DataDir, nodeCert)
	if err != nil {
		return err
	}
	clusterTLS := &node.ClusterTLS{Cert: clusterCert, CA: caPool}
	n, err := node.Open(node.Config{ID: cfg.NodeName, DataDir: cfg.DataDir, Advertise: advertise,
		Listen: cfg.Cluster.Listen, TLS: clusterTLS, Join: node.HasJoined(ks), Logger: logger, Clock: clk,
		MaxStaleness: cfg.Cluster.MaxStaleness.Duration, HeartbeatTimeout: cfg.Cluster.HeartbeatTimeout.Duration,
		ElectionTimeout: cfg.Cluster.HeartbeatTimeout.Duration})
	if err != nil {
		return err
	}
	defer func() {
		if err := n.Close(); err != nil {
			logger.Error("raft shutdown", "error", err)
		}
	}()

	iss, err := issuer(cfg, advertise)
	if err != nil {
		return err
	}
	sec, sess := cfg.Auth.Security, cfg.Auth.Sessions
	// Counters of requests and security events, fed as they happen.
	metrics := api.NewMetrics()
	// The memory limit, and the password hashes at once that fit in it.
	cpus, hashBytes := runtime.NumCPU(), int64(cfg.Auth.Password.Argon2MemoryKiB)<<10
	mem, err := planMemory(cfg.Server.MemoryLimit.Bytes, os.Getenv("GOMEMLIMIT"), os.Getenv("GOGC"), ownCgroupMemoryMax(), cpus, hashBytes)
	if err != nil {
		return err
	}
	mem.apply()
	mem.log(logger, cpus, hashBytes)
	core, err := authcore.New(n, authcore.Config{
		Hash: authcore.HashParams{
			MemoryKiB:   uint32(cfg.Auth.Password.Argon2MemoryKiB),
			Iterations:  uint32(cfg.Auth.Password.Argon2Iterations),
			Parallelism: uint8(cfg.Auth.Password.Argon2Parallelism),
		},
		Policy:             authcore.PasswordPolicy{MinLength: cfg.Auth.Password.MinLength, MaxLength: cfg.Auth.Password.MaxLength},
		Issuer:             iss,
		ClusterIssuer:      cfg.Tokens.Issuer,
		AccessTTL:          sec.JWTExpiry.Duration,
		RefreshTTL:         sec.RefreshTokenExpiry.Duration,
		IdleTimeout:        sess.IdleTimeout.Duration,
		MaxFailedAttempts:  sec.MaxFailedAttempts,
		LockoutDuration:    sec.LockoutDuration.Duration,
		MaxSessionsPerUser: sess.MaxPerUser,
		RequireMFAForAdmin: sec.RequireMFAForAdmin,
		StepUpWindow:       cfg.MFA.StepUpWindow.Duration,
		IncidentExempt:     prefixes(cfg.Incident.Exempt),
		ChallengeAfter:     cfg.Incident.ChallengeAfterFailures,
		WebAuthnRPID:       cfg.MFA.WebAuthnRPID,
		WebAuthnOrigins:    cfg.MFA.WebAuthnOrigins,
		OnLimit:            sess.OnLimit,
		NodeID:             cfg.NodeName,
		SigningAlg:         cfg.Tokens.Algorithm,

		// 0 in the file turns the cap off; authcore reads 0 as its default.
		MaxFailedNamesPerAddress: cmp.Or(sec.MaxFailedNamesPerAddress, -1),

		// As many as fit in the memory limit (planMemory).
		MaxConcurrentHashes: mem.hashes,
		Incident: authcore.IncidentConfig{
			Window: cfg.Incident.Window.Duration, BlockFor: cfg.Incident.BlockFor.Duration,
			// 0 in the file turns a rule off; authcore reads 0 as its default.
			BlockAfterFailures:   cmp.Or(cfg.Incident.BlockAfterFailures, -1),
			BlockAfterUsernames:  cmp.Or(cfg.Incident.BlockAfterUsernames, -1),
			RevokeAfterForbidden: cmp.Or(cfg.Incident.RevokeAfterForbidden, -1),
		},
		Retention: authcore.RetentionConfig{
			Audit:           cfg.Retention.Audit.Duration,
			ExpiredSessions: cfg.Retention.ExpiredSessions.Duration,
			// 0 in the file turns the cap off; authcore reads 0 as its default.
			UnknownNameEntries: cmp.Or(cfg.Retention.UnknownNameEntries, -1),
			UnknownNameWindow:  cfg.Retention.UnknownNameWindow.Duration,
		},
	}, authcore.WithClock(clk), authcore.WithKeyVault(vault), authcore.WithLogger(logger.With("component", "auth")),
		authcore.WithSecretBox(box),
		authcore.WithHashThreads(cfg.Auth.Password.PinHashThreads), authcore.WithSecurityObserver(metrics.SecurityEvent),
		authcore.WithFreshness(func() error { return n.Fresh(cfg.Cluster.MaxStaleness.Duration) }),
		authcore.WithCatchUp(n.CatchUp),
		authcore.WithLeader(func() bool { return n.Status().State == "Leader" }))
	if err != nil {
		return err
	}
	defer core.Close() // after the listeners have drained, below
	// A member restarted with another tokens.issuer than its cluster's
	// stops here; a joining node learns its cluster's from the log, when
	// it publishes its key (below).
	if err := core.CheckIssuer(); err != nil {
		return issuerError(err)
	}
	// As leader, it records its issuer before it admits a joiner, unless
	// the cluster has one: a joiner configured with another then finds
	// the cluster's, whenever this node's publishKey runs.
	n.BeforeAdmit(func(ctx context.Context) error {
		if err := core.RecordIssuer(ctx); !errors.Is(err, authcore.ErrIssuerNotRecorded) {
			return err
		}
		return nil
	})
	logHashThreads(logger, core.HashStats())
	var keyPublished atomic.Bool
	published, fatal := make(chan struct{}), make(chan error, 1)
	go publishKey(ctx, core, &keyPublished, published, fatal, logger)
	go stopIfDamaged(ctx, n, fatal)
	go core.RunSweeper(ctx, time.Minute)
	hooks, err := webhooks(&cfg, core, n, logger)
	if err != nil {
		return err
	}
	go hooks.Run(ctx)
	go core.RunKeyRotation(ctx, cfg.Tokens.RotateEvery.Duration, min(cfg.Tokens.RotateEvery.Duration/10, 10*time.Minute))
	go core.RunAuditVerifier(ctx, auditCheckEvery)
	go publishAuditKeys(ctx, core, logger)
	go core.RunAuditCheckpoints(ctx, cfg.Audit.CheckpointEntries, cfg.Audit.CheckpointInterval.Duration,
		min(5*time.Second, cfg.Audit.CheckpointInterval.Duration))
	ready := readiness{n, &keyPublished}

	certs := newCertReloader(cert, func() (tls.Certificate, error) {
		nodeCert, _, err := nodeCertificate(cfg, ks, advertise)
		if err != nil {
			return tls.Certificate{}, err
		}
		return apiCertificate(cfg, nodeCert)
	})
	// bulwark doctor and GET /v1/admin/scorecard: one report.
	doctor := scorecardFunc(scorecardSources(cfg, sealer.Mode(), clk, certs, n, core))

	rl := cfg.Auth.RateLimit
	handler := api.NewHandler(api.Options{
		Logger:         logger,
		MaxBodyBytes:   cfg.API.MaxBodyBytes,
		TrustedProxies: prefixes(cfg.API.TrustedProxies),
		SealMode:       sealer.Mode(),
		NodeID:         cfg.NodeName,
		IsNoLeader:     isNoLeader,
		Cluster:        clusterService{n: n},
		Metrics:        metrics,
		OIDC:           core,
		Blocklist:      core,
		Scorecard:      doctor,
		DataSubject:    core,
		CRL:            clusterCRL(n),
		RateLimit: api.NewRateLimiter(api.RateLimitConfig{
			PerIP: float64(rl.PerIP), PerIPBurst: rl.PerIPBurst,
			PerUsername: float64(rl.PerUsername), PerUsernameBurst: rl.PerUsernameBurst,
			Exempt: prefixes(rl.Exempt), TrustedProxies: prefixes(cfg.API.TrustedProxies),
		}),
	}, ready, core, core)
	rawAPILn, err := net.Listen("tcp", cfg.API.Listen)
	if err != nil {
		return fmt.Errorf("api.listen: %w", err)
	}
	apiLn := api.NewConnLimiter(rawAPILn, api.ConnLimits{Max: cfg.API.MaxConnections, PerClient: cfg.API.MaxConnectionsPerClient,
		Exempt: append(prefixes(cfg.API.TrustedProxies), prefixes(rl.Exempt)...)}, logger)
	apiTLS := pki.ServerTLSConfig(cert, cfg.TLSMinVersion())
	apiTLS.Certificates, apiTLS.GetCertificate = nil, certs.GetCertificate
	go reloadOnHUP(ctx, hup.configFile, hup.level, certs, logger)
	renewer := n.NewCertRenewer(ks, certHosts(cfg, advertise), crlURL(cfg, advertise), certs.reload)
	apiSrv := api.NewServer(cfg.API.Listen, handler, apiTLS, logger)
	apiSrv.ConnState = apiLn.ConnState

	adminLn, err := api.ListenAdmin(cfg.AdminSocketPath(), api.ListenLogger(logger))
	if err != nil {
		apiLn.Close()
		return fmt.Errorf("admin socket: %w", err)
	}
	// The node's background work, each until ctx ends or its work is done:
	// admitting joiners when this node holds the CA key, registering the
	// data key, sharing (or adopting) the CA key, marking a node that has
	// peers as a member, its own promotion to voter once its key is
	// published, and the renewal of its certificate.
	n.EnableJoin(caCert, ks)
	dataKeys := node.NewDataKeys(ks, n, logger)
	go dataKeys.RunRegistration(ctx)
	go n.ShareCAKey(ctx, ks, caCert)
	go n.MarkWhenClustered(ctx, ks)
	go becomeVoter(ctx, n, published, logger)
	go renewer.Run(ctx)
	adminSrv := &http.Server{
		Handler: api.NewAdminHandler(core, core, func() any { return nodeStatus(n) }, logger,
			api.AdminIsNoLeader(isNoLeader), adminBackupOption(ctx, n, core, logger), forensicsOption(ctx, n, core, cfg.DataDir), api.AdminDataKey(dataKeyAdmin{dataKeys}),
			api.AdminCluster(clusterService{n: n, renewer: renewer, keys: core}), api.AdminClients(core), api.AdminBlocklist(core),
			api.AdminScorecard(doctor), api.AdminDataSubject(core)),
		ReadHeaderTimeout: 5 * time.Second,
	}

	metricsLn, err := net.Listen("tcp", cfg.Metrics.Listen)
	if err != nil {
		apiLn.Close()
		adminLn.Close()
		return fmt.Errorf("metrics.listen: %w", err)
	}
	metricsSrv := &http.Server{Handler: metrics.Handler(metricsSources(n, core, sealer.Mode(), clusterTLS, cfg.Tokens.RotateEvery.Duration, apiLn),
		cfg.Metrics.Pprof), ReadHeaderTimeout: 5 * time.Second}

	errc := make(chan error, 3)
	go func() { errc <- serveUntilClosed(apiSrv.ServeTLS(apiLn, "", "")) }()
	go func() { errc <- serveUntilClosed(adminSrv.Serve(adminLn)) }()
	go func() { errc <- serveUntilClosed(metricsSrv.Serve(metricsLn)) }()
	logger.Info("bulwark serving", "version", buildVersion(), "node", cfg.NodeName, "issuer", iss,
		"api", apiLn.Addr().String(), "admin_socket", cfg.AdminSocketPath(),
		"metrics", metricsLn.Addr().String(), "seal", sealer.Mode(), "data_dir", cfg.DataDir)
	if dev {
		go announceDev(ctx, ready, cfg, apiLn.Addr(), stderr)
	}
	// systemd: the keys are unsealed and the listeners serve. Readiness for
	// traffic (a leader, the log caught up) is /readyz's to say.
	if err := notifyReady("serving; see /readyz for readiness"); err != nil {
		logger.Warn("sd_notify READY failed", "error", err)
	}
	go runWatchdog(ctx, func() bool { return alive(n) })

	var runErr error
	select {
	case <-ctx.Done():
		logger.Info("shutting down: draining connections")
		notifyStopping()
	case runErr = <-errc:
		logger.Error("a listener failed; shutting down", "error", runErr)
		notifyStopping()
	case runErr = <-fatal:
		logger.Error("shutting down", "error", runErr)
		notifyStopping()
	}
	sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	for _, s := range []*http.Server{apiSrv, adminSrv, metricsSrv} {
		if err := s.Shutdown(sctx); err != nil {
			logger.Warn("shutdown", "error", err)
		}
	}
	finalCheckpoint(core, n, logger)
	os.Remove(cfg.AdminSocketPath())
	return runErr
}

// publishAuditKeys records this node's audit keys once the cluster's
// feature level allows (4), so that whichever member leads later signs
// checkpoints with keys every verifier already finds; it retries until it
// has, or ctx ends.
func publishAuditKeys(ctx context.Context, core *authcore.Service, logger *slog.Logger) {
	for delay := 500 * time.Millisecond; ; delay = min(2*delay, 10*time.Second) {
		pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := core.PublishAuditKeys(pctx)
		cancel()
		if err == nil {
			return
		}
		if !errors.Is(err, authcore.ErrAuditKeysNotRecorded) {
			logger.Debug("audit keys not published yet", "error", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(delay):
		}
	}
}

// stopIfDamaged stops the daemon when the node's background check of
// state.db finds a damaged page (node.Damaged): the next start rebuilds it.
func stopIfDamaged(ctx context.Context, n *node.Node, fatal chan<- error) {
	select {
	case <-n.Damaged():
		select {
		case fatal <- errors.New("state.db is damaged (see the log above); the next start moves it aside and rebuilds it"):
		default: // already stopping for another reason
		}
	case <-ctx.Done():
	}
}

// finalCheckpoint has a leader that stops sign the entries added since the
// last audit checkpoint, so a stopped cluster's trail is vouched for to its
// end (`bulwark audit verify --data-dir`). Best effort, briefly: a stop is
// not held up by it.
func finalCheckpoint(core *authcore.Service, n *node.Node, logger *slog.Logger) {
	if n.Status().State != "Leader" {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if cp, err := core.CheckpointAudit(ctx); err != nil && !errors.Is(err, authcore.ErrAuditKeysNotRecorded) {
		logger.Warn("no audit checkpoint at shutdown", "error", err)
	} else if cp != nil {
		logger.Info("audit checkpoint at shutdown", "seq", cp.Seq)
	}
}

// logHashThreads says at start where password hashes run.
func logHashThreads(log *slog.Logger, st authcore.HashStats) {
	if st.PinError == nil {
		log.Info("password hashes run on dedicated threads, each pinned to a CPU", "threads", st.Threads)
		return
	}
	log.Info("password hashes run on dedicated threads", "threads", st.Threads, "pinned", st.PinnedThreads, "not_pinned_because", st.PinError)
}

// alive is the watchdog's question: does this process still work? Its Raft
// member runs and its state answers a read. Not readiness: a node waiting
// for a quorum is alive.
func alive(n *node.Node) bool {
	if n.Status().State == "Shutdown" {
		return false
	}
	return n.View(func(fsm.Reader) error { return nil }) == nil
}

// readiness adds to the node's own readiness that this node's signing key
// is in the replicated JWKS, so no token it signs fails to verify.
type readiness struct {
	n            *node.Node
	keyPublished *atomic.Bool
}

func (r readiness) Ready() (bool, string) {
	if ok, why := r.n.Ready(); !ok {
		return false, why
	}
	if !r.keyPublished.Load() {
		return false, "signing key not yet published"
	}
	return true, ""
}

func serveUntilClosed(err error) error {
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// newSealer builds the sealer seal.mode names. The software sealer runs
// only when chosen, and says so.
func newSealer(cfg config.Config, logger *slog.Logger) (tpm.Sealer, error) {
	switch cfg.Seal.Mode {
	case tpm.ModeSoftware:
		logger.Warn("SOFTWARE SEALING: keys are protected by a key file on this disk, not by a TPM; anyone who copies the data directory has them. Use seal.mode = \"tpm\" in production.",
			"key_file", filepath.Join(cfg.DataDir, "tpm", "software.key"))
		return tpm.NewSoftwareSealer(filepath.Join(cfg.DataDir, "tpm", "software.key"))
	case tpm.ModeTPM:
		s, err := tpm.NewTPMSealer(cfg.Seal.Device, cfg.Seal.PCRs)
		if err != nil {
			return nil, fmt.Errorf("seal.mode = \"tpm\": %w (set seal.mode = \"software\" explicitly to run without a TPM)", err)
		}
		logger.Info("keys sealed by the TPM", "device", cfg.Seal.Device, "pcrs", cfg.Seal.PCRs)
		return s, nil
	}
	return nil, fmt.Errorf("seal.mode: unknown mode %q", cfg.Seal.Mode)
}

func prefixes(cs []config.CIDR) []netip.Prefix {
	out := make([]netip.Prefix, len(cs))
	for i, c := range cs {
		out[i] = c.Prefix
	}
	return out
}

func isNoLeader(err error) bool {
	return errors.Is(err, node.ErrNoLeader) || errors.Is(err, node.ErrNotLeader) || errors.Is(err, node.ErrShutdown)
}

// announceDev tells a newcomer, once the node is ready, how to reach it.
func announceDev(ctx context.Context, ready api.Readiness, cfg config.Config, apiAddr net.Addr, w io.Writer) {
	for {
		if ok, _ := ready.Ready(); ok {
			break
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(20 * time.Millisecond):
		}
	}
	_, port, _ := net.SplitHostPort(apiAddr.String())
	fmt.Fprintf(w, `
bulwark dev node is ready (software sealing, loopback only).
  CA certificate: %[1]s
  admin socket:   %[2]s
  check it:       curl --cacert %[1]s https://127.0.0.1:%[3]s/readyz
  add a user:     echo 'a-long-passphrase-here' | %[4]s user add alice --admin --socket %[2]s --password-stdin

`, filepath.Join(cfg.DataDir, pki.CAFile), cfg.AdminSocketPath(), port, os.Args[0])
}

// secretBox derives the keys that seal second factors from the cluster
// data key in the keystore; the key itself is cleared from memory here.
func secretBox(ks *tpm.Keystore) (*authcore.SecretBox, error) {
	key, ok := ks.Secret(tpm.DataKeyName)
	if !ok {
		return nil, fmt.Errorf("the keystore holds no cluster data key (%s)", tpm.DataKeyName)
	}
	defer clear(key)
	return authcore.NewSecretBox(key)
}

// webhooks builds the dispatcher of [[incident.webhooks]], reading each
// secret file, which must not be readable by every user.
func webhooks(cfg *config.Config, core *authcore.Service, n *node.Node, logger *slog.Logger) (*webhook.Dispatcher, error) {
	var targets []webhook.Target
	for i, w := range cfg.Incident.Webhooks {
		fi, err := os.Stat(w.SecretFile)
		if err != nil {
			return nil, fmt.Errorf("incident.webhooks %d: secret_file: %w", i+1, err)
		}
		if fi.Mode().Perm()&0o004 != 0 {
			return nil, fmt.Errorf("incident.webhooks %d: secret_file %s is readable by every user (mode %v): chmod o-r it",
				i+1, w.SecretFile, fi.Mode().Perm())
		}
		b, err := os.ReadFile(w.SecretFile)
		if err != nil {
			return nil, fmt.Errorf("incident.webhooks %d: secret_file: %w", i+1, err)
		}
		targets = append(targets, webhook.Target{URL: w.URL, Secret: strings.TrimSpace(string(b)),
			MinSeverity: cmp.Or(w.MinSeverity, "critical")})
	}
	return webhook.New(targets, core, func() bool { return n.Status().State == "Leader" },
		webhook.Options{Logger: logger.With("component", "webhook")})
}
