// Package node runs one Raft member of a bulwark cluster: it opens the
// durable state (raft log, snapshots, state.db), bootstraps or rejoins the
// cluster, proposes commands, serves local read views and reports
// readiness. It owns the cluster's protocols around that member too: the
// mTLS transport, forwarding and membership, both sides of a join
// (join.go, joindir.go), certificate issue and renewal (certify.go,
// certrenew.go), the CA key's sharing (cakey.go), the cluster data key's
// registration, escrow and recovery shares (datakey.go), backups, and the
// offline read of a stopped node's state (offline.go).
//
// It imports fsm (the state machine it drives), tpm (sealing and the key
// wraps), internal/clock (the time it decides by: Config.Clock) and its
// own node/pki and node/escrow; cmd/bulwark builds it and
// hands it, behind small interfaces, to authcore and api. Nothing outside
// node opens the Raft log or touches *raft.Raft. See DESIGN.md in this
// directory.
package node

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"

	"github.com/bulwark-auth/bulwark/fsm"
	"github.com/bulwark-auth/bulwark/internal/clock"
)

// NotLeaderError carries the leader hint of a refused write.
type NotLeaderError struct {
	LeaderID   string
	LeaderAddr string
}

func (e *NotLeaderError) Error() string {
	return fmt.Sprintf("node: not the leader (leader is %s at %s)", e.LeaderID, e.LeaderAddr)
}

// Is makes errors.Is(err, ErrNotLeader) true.
func (e *NotLeaderError) Is(target error) bool { return target == ErrNotLeader }

// Config is what a node needs to start.
type Config struct {
	// ID names this node in the cluster (node_name).
	ID string
	// DataDir holds raft/, state.db and the rest.
	DataDir string
	// Advertise is the host:port other members dial (cluster.advertise).
	Advertise string
	// Listen is the cluster port (cluster.listen): Raft over mutual TLS.
	Listen string
	// TLS is this node's certificate and the cluster CA. Without it the
	// node runs on an in-memory transport and cannot reach peers (unit
	// tests of a single node).
	TLS *ClusterTLS
	// InitialPeers are the other voters of a cluster bootstrapped from
	// several nodes at once (tests; operators join nodes one by one).
	InitialPeers []Peer
	// Join: on an empty data directory, do not bootstrap; wait for the
	// cluster's leader to add this node (join.go). A node that joined
	// sets it on every start, so lost state never makes it a cluster of
	// its own.
	Join bool
	// Logger receives the node's and Raft's logs.
	Logger *slog.Logger
	// Clock is the time the node decides by: the stamp on the commands it
	// proposes (its own, and, as leader, every forwarded one: forward.go),
	// a join token's expiry, when the leader looks again at the feature
	// level, when the certificate is renewed. nil is the system clock.
	// Raft's timers, connection deadlines, timeouts and retries run on
	// the system clock whatever it is.
	Clock clock.Clock

	// Tuning; zero values take the defaults below.
	HeartbeatTimeout  time.Duration
	ElectionTimeout   time.Duration
	SnapshotThreshold uint64
	SnapshotInterval  time.Duration
	TrailingLogs      uint64
	ApplyTimeout      time.Duration
	// MaxStaleness is how long a follower may go without hearing from the
	// leader before it asks again how far to catch up (catchup.go);
	// cluster.max_staleness, 2 s unless set.
	MaxStaleness time.Duration

	// level is the feature level this node reports from its start; zero
	// is fsm.MaxLevel (tests set an earlier release's).
	level int32
	// storeFault, when set, is called before each write to raft.db and
	// each probe write of the space guard; an error it returns is the
	// write's answer (tests: a disk or quota that fills under Raft,
	// diskspace_test.go).
	storeFault func() error
	// spaceFree, when set, measures the data directory's disk instead of
	// statfs (tests: a disk that looks full).
	spaceFree func(dir string) (avail, total int64, err error)
}

func (c *Config) setDefaults() {
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Clock == nil {
		c.Clock = clock.Real{}
	}
	// A follower stands for election once it has not heard from the
	// leader for HeartbeatTimeout (Raft checks at random intervals of 1×
	// to 2× it; the leader sends a heartbeat every tenth of it), and the
	// other follower votes only once it has timed out too: a dead leader
	// is replaced after about 1× to 3× it. 300 ms (was 500 ms) brings
	// kill -9 of the leader to a login on a survivor from about 0.94 s
	// to 0.7 s (make chaos); the cost is that a node stalled for longer
	// (an overloaded host, swap, a long pause) starts a spurious
	// election, and the leader steps down after half of it without a
	// majority's answer (LeaderLeaseTimeout). cluster.heartbeat_timeout.
	if c.HeartbeatTimeout == 0 {
		c.HeartbeatTimeout = 300 * time.Millisecond
	}
	if c.ElectionTimeout == 0 {
		c.ElectionTimeout = 300 * time.Millisecond
	}
	if c.SnapshotThreshold == 0 {
		c.SnapshotThreshold = 8192
	}
	// The interval is how often Raft checks the threshold (randomised
	// between 1× and 2×); it bounds how far a write burst grows raft.db,
	// which bbolt never shrinks.
	if c.SnapshotInterval == 0 {
		c.SnapshotInterval = 30 * time.Second
	}
	// Entries kept behind a snapshot: a follower that was down briefly (a
	// reboot, an upgrade) catches up from the log, and one installing a
	// snapshot has this many writes' time to finish before the entries
	// after it are compacted (about 11 minutes at 100 writes/s). Longer
	// outages catch up by snapshot (catchup_test.go).
	if c.TrailingLogs == 0 {
		c.TrailingLogs = 65536
	}
	if c.ApplyTimeout == 0 {
		c.ApplyTimeout = 5 * time.Second
	}
	if c.MaxStaleness == 0 {
		c.MaxStaleness = 2 * time.Second
	}
}

// Peer is a cluster member: its node id and advertised cluster address.
type Peer struct {
	ID, Address string
}

// Node is one running Raft member and its state.
type Node struct {
	cfg    Config
	log    *slog.Logger
	raft   *raft.Raft
	store  *fsm.Store
	logs   *raftboltdb.BoltStore
	snaps  *raft.FileSnapshotStore
	trans  raft.Transport
	closer func() error

	// startIndex is the last log index present at start; the node is not
	// caught up until it has applied at least that far.
	startIndex uint64

	cluster *clusterListener // nil on the in-memory transport
	fwd     forwarder
	// joinAuth admits joining nodes (EnableJoin, join.go); nil until set.
	joinAuth atomic.Pointer[joinAuthority]
	// beforeAdmit, when set (BeforeAdmit), runs on the leader before it
	// adds a joining node.
	beforeAdmit atomic.Pointer[func(context.Context) error]

	appliedMu sync.Mutex
	appliedCh chan struct{} // closed and replaced after every applied batch

	catchUp               // catchup.go
	done    chan struct{} // closed by Close
	// crlNudge wakes publishCRL (crl.go) after a removal.
	crlNudge chan struct{}
	// level is the feature level this node reports (fsm.MaxLevel; tests
	// lower it to act as a member of an earlier release, Config.level).
	level atomic.Int32
	// levelLooks counts raiseLevel's looks at the feature level (tests
	// wait for the next one).
	levelLooks atomic.Int64
	// lastApply is when state.db last applied a batch, Unix nanoseconds.
	lastApply atomic.Int64
	// leaderChanges counts the leaders this node has seen take over
	// (LeaderChanges); leaderTimes holds when, the latest few
	// (LeaderChangesWithin).
	leaderChanges atomic.Uint64
	leaderTimes   leaderTimes
	// leaderEvents wakes writes waiting for the next leader; warm asks
	// warmForwarding to open forwarding connections to the voters;
	// handover refuses proposals while Close hands leadership over
	// (handover.go).
	leaderEvents leaderEvents
	warm         chan struct{}
	handover     handover
	// space refuses writes while the data directory's disk is full
	// (diskspace.go).
	space *spaceGuard
	// erasing is the erasure watcher (erase.go), which Close waits for.
	erasing sync.WaitGroup
	// checking is the background page check of state.db (checkState),
	// which Close waits for; damaged is closed if it finds damage.
	checking sync.WaitGroup
	damaged  chan struct{}

	closeOnce sync.Once
	closeErr  error
}

// Open opens (or creates) the node's state under cfg.DataDir and starts
// Raft. On an empty data directory it bootstraps a one-node cluster; on an
// existing one it rejoins the cluster its log describes.
func Open(cfg Config) (*Node, error) {
	cfg.setDefaults()
	if cfg.ID == "" || cfg.Advertise == "" || cfg.DataDir == "" {
		return nil, fmt.Errorf("node: ID, Advertise and DataDir are required")
	}
	n := &Node{cfg: cfg, log: cfg.Logger.With("component", "node"), appliedCh: make(chan struct{}), done: make(chan struct{}),
		crlNudge: make(chan struct{}, 1), damaged: make(chan struct{}), warm: make(chan struct{}, 1)}
	n.level.Store(cmp.Or(cfg.level, fsm.MaxLevel))
	raftDir := filepath.Join(cfg.DataDir, "raft")
	if err := os.MkdirAll(raftDir, 0o700); err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			n.closeStores()
		}
	}()

	if err := compactRaftDB(raftDir, n.log); err != nil { // erase.go
		return nil, err
	}
	var err error
	n.logs, err = raftboltdb.New(raftboltdb.Options{Path: filepath.Join(raftDir, "raft.db")})
	if err != nil {
		return nil, fmt.Errorf("node: open raft log: %w", err)
	}
	n.space = newSpaceGuard(cfg.DataDir, n.log, cfg.spaceFree, cfg.storeFault)
	logs := spaceStore{BoltStore: n.logs, db: boltOf(n.logs), pages: new(raftPages), g: n.space, done: n.done, fault: cfg.storeFault}
	hlog := newHCLogger(cfg.Logger, "raft")
	n.snaps, err = raft.NewFileSnapshotStoreWithLogger(raftDir, 2, hlog)
	if err != nil {
		return nil, fmt.Errorf("node: open snapshots: %w", err)
	}
	if n.store, err = openState(filepath.Join(cfg.DataDir, "state.db"), n.snaps, n.log); err != nil {
		return nil, err
	}
	n.store.SetNoSpace(n.space.stateNoSpace)

	if cfg.TLS != nil {
		cl, err := listenCluster(cfg.Listen, cfg.TLS, n.log)
		if err != nil {
			return nil, err
		}
		addr, err := tcpAddr(cfg.Advertise)
		if err != nil {
			cl.Close()
			return nil, fmt.Errorf("cluster.advertise %s: %w", cfg.Advertise, err)
		}
		// MaxRPCsInFlight 1 turns raft's pipelined replication off. With
		// pipelining (raft v1.8.0), a follower's refusal or a newer term
		// ends the pipeline's decoder while its sender may still be
		// blocked handing one more request to it: replication to that
		// follower stops for good and raft.Shutdown waits on it forever
		// (a leader that transferred its leadership before stopping hung
		// a test for 11 minutes). Each AppendEntries then waits for the
		// answer to the one before, which batches what arrived meanwhile.
		// hashicorp/raft#541 found no or very little pipelining best on a
		// LAN; here BenchmarkClusterWrites moved by less than its noise.
		trans := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
			Stream: &raftLayer{l: cl, advertise: addr}, MaxPool: 3, Timeout: 10 * time.Second, Logger: hlog,
			MaxRPCsInFlight: 1})
		n.trans, n.closer, n.cluster = trans, trans.Close, cl
		n.fwd.tls, n.fwd.check = cfg.TLS, n.serverIs
	} else {
		// In-memory: a single node that dials no one. The address recorded in
		// the configuration is the advertised one all the same.
		_, trans := raft.NewInmemTransport(raft.ServerAddress(cfg.Advertise))
		n.trans, n.closer = trans, trans.Close
	}

	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.ID)
	rc.Logger = hlog
	rc.HeartbeatTimeout = cfg.HeartbeatTimeout
	rc.ElectionTimeout = cfg.ElectionTimeout
	rc.LeaderLeaseTimeout = cfg.HeartbeatTimeout / 2
	// Followers learn a commit with the next AppendEntries; sent every 5 ms
	// instead of 50, a follower applies (and a forwarding follower answers,
	// and sees a revocation) that much sooner.
	rc.CommitTimeout = 5 * time.Millisecond
	rc.SnapshotThreshold = cfg.SnapshotThreshold
	rc.SnapshotInterval = cfg.SnapshotInterval
	rc.TrailingLogs = cfg.TrailingLogs
	// Applies from many handlers share one log write and one state.db
	// transaction.
	rc.BatchApplyCh = true
	rc.MaxAppendEntries = 256
	// state.db is durable and knows its applied index: Raft must not wipe
	// it with the last snapshot at start, only replay the log after it.
	rc.NoSnapshotRestoreOnStart = true

	has, err := raft.HasExistingState(logs, logs, n.snaps)
	if err != nil {
		return nil, fmt.Errorf("node: read raft state: %w", err)
	}
	if !has && cfg.Join {
		n.log.Info("waiting to be added to the cluster", "id", cfg.ID, "address", cfg.Advertise)
	}
	if !has && !cfg.Join {
		boot := raft.Configuration{Servers: []raft.Server{{
			Suffrage: raft.Voter, ID: rc.LocalID, Address: raft.ServerAddress(cfg.Advertise),
		}}}
		for _, p := range cfg.InitialPeers {
			boot.Servers = append(boot.Servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(p.ID), Address: raft.ServerAddress(p.Address)})
		}
		if err := raft.BootstrapCluster(rc, logs, logs, n.snaps, n.trans, boot); err != nil {
			return nil, fmt.Errorf("node: bootstrap: %w", err)
		}
		n.log.Info("bootstrapped a new cluster", "id", cfg.ID, "address", cfg.Advertise, "voters", len(boot.Servers))
	}
	if n.startIndex, err = n.logs.LastIndex(); err != nil {
		return nil, err
	}
	n.log.Info("raft timing", "heartbeat_timeout", rc.HeartbeatTimeout, "election_timeout", rc.ElectionTimeout,
		"leader_lease", rc.LeaderLeaseTimeout)
	n.raft, err = raft.NewRaft(rc, &raftFSM{store: n.store, applied: n.noteApplied}, logs, logs, n.snaps, n.trans)
	if err != nil {
		return nil, fmt.Errorf("node: start raft: %w", err)
	}
	// Counted in the filter, which Raft calls on its own goroutine as
	// the leader changes: no channel to drain, nothing dropped. A leader
	// learned between NewRaft and this line (a heartbeat that raced it)
	// goes uncounted; alerts read the increase over a window, which
	// that does not change.
	n.raft.RegisterObserver(raft.NewObserver(nil, false, func(o *raft.Observation) bool {
		n.observe(o) // handover.go
		return false
	}))
	if n.cluster != nil {
		n.cluster.handle(protoForward, n.serveForward)
		n.cluster.handle(protoJoin, n.serveJoin)         // join.go
		n.cluster.handle(protoMember, n.serveMember)     // membership.go
		n.cluster.setCheck(n.checkPeer, n.checkServerAt) // memberkey.go
		go n.trackCatchUp()
		go n.warmForwarding() // handover.go
		go n.recordOwnKey()
		go n.publishCRL() // crl.go
	}
	go n.raiseLevel() // level.go
	n.erasing.Add(1)
	go n.watchErasures() // erase.go
	go n.space.watch(n.done)
	n.checking.Add(1)
	go n.checkState()
	ok = true
	return n, nil
}

// checkState reads every page of state.db once, in the background after
// start-up (fsm.Store.CheckPages), rather than before the node serves:
// that read grew with the state (a minute at a million sessions). A damaged
// page makes the node unready and closes Damaged, for the daemon to stop;
// state.db is then marked damaged at close, and the next start moves it
// aside and rebuilds it from snapshot and log, as it does for damage found
// at open.
func (n *Node) checkState() {
	defer n.checking.Done()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-n.done:
			cancel()
		case <-ctx.Done():
		}
	}()
	t0 := time.Now()
	err := n.store.CheckPages(ctx)
	switch {
	case err == nil:
		n.log.Debug("state.db pages checked", "took", time.Since(t0))
	case errors.Is(err, fsm.ErrCorrupt):
		n.log.Error("state.db is damaged; stopping: the next start moves it aside and rebuilds it from snapshot and log", "error", err)
		close(n.damaged)
	case ctx.Err() == nil && !errors.Is(err, fsm.ErrClosed):
		n.log.Warn("state.db page check stopped", "error", err)
	}
}

// Damaged is closed when the background check of state.db's pages finds
// one damaged: the node must stop (a restart rebuilds the file).
func (n *Node) Damaged() <-chan struct{} { return n.damaged }

// openState opens the state.db at path and makes it trustworthy before
// anything replays the log onto it. state.db is written without fsync, so
// one that was not closed cleanly (a crash, a power loss) is not trusted:
// it is removed and rebuilt from the newest snapshot, then from the log,
// which Raft replays from the snapshot's index onward. A damaged file is
// kept aside (state.db.corrupt-*) for inspection and rebuilt the same
// way. A state.db behind the newest snapshot in snaps (restored from an
// old copy) is brought up to it too, because Raft replays only entries
// after the snapshot. snaps may be nil: a data directory without
// snapshots. The daemon's start (Open) and the offline reader of a
// stopped node's state (ViewStopped) both open state.db here.
func openState(path string, snaps raft.SnapshotStore, log *slog.Logger) (*fsm.Store, error) {
	store, err := fsm.Open(path)
	switch {
	case errors.Is(err, fsm.ErrUnclean):
		log.Warn("state.db was not closed cleanly; rebuilding it from snapshot and log")
		if err := os.Remove(path); err != nil {
			return nil, err
		}
		store, err = fsm.Open(path)
	case errors.Is(err, fsm.ErrCorrupt):
		aside := fmt.Sprintf("%s.corrupt-%d", path, time.Now().Unix())
		log.Error("state.db is damaged; rebuilding it from snapshot and log", "error", err, "moved_to", aside)
		if err := os.Rename(path, aside); err != nil {
			return nil, err
		}
		store, err = fsm.Open(path)
	}
	if err != nil || snaps == nil {
		return store, err
	}
	metas, err := snaps.List()
	if err != nil || len(metas) == 0 {
		if err != nil {
			store.Close()
			return nil, err
		}
		return store, nil
	}
	applied, _, err := store.Applied()
	if err != nil {
		store.Close()
		return nil, err
	}
	newest := metas[0]
	if applied >= newest.Index {
		return store, nil
	}
	log.Warn("state.db is behind the newest snapshot; restoring it", "applied", applied, "snapshot", newest.Index)
	_, rc, err := snaps.Open(newest.ID)
	if err != nil {
		store.Close()
		return nil, err
	}
	defer rc.Close()
	if err := store.Restore(rc); err != nil {
		store.Close()
		return nil, fmt.Errorf("node: restore state.db from snapshot %s: %w", newest.ID, err)
	}
	return store, nil
}

// Apply proposes a command and waits until it is committed and applied,
// returning the state machine's result. A command above the cluster's
// feature level is refused with fsm.ErrAboveLevel before it reaches the
// log (checkLevel).
func (n *Node) Apply(ctx context.Context, cmd fsm.Command) (any, error) {
	if err := n.space.check(); err != nil {
		return nil, err
	}
	data, err := cmd.Encode()
	if err != nil {
		return nil, err
	}
	timeout := n.cfg.ApplyTimeout
	if d, ok := ctx.Deadline(); ok {
		timeout = time.Until(d)
	}
	if timeout <= 0 {
		return nil, context.DeadlineExceeded
	}
	deadline := time.Now().Add(timeout)
	for {
		v, err, retry := n.applyOnce(ctx, cmd, data, time.Until(deadline))
		if !retry {
			return v, err
		}
		// The write certainly reached no log (the leader was changing or
		// stopping): wait, briefly, for the next leader and send it again,
		// unless the disk filled meanwhile. A leader whose append failed
		// for want of space steps down, and the writes queued behind that
		// append are refused as not leader, possibly before the one that
		// met the full disk has told the guard: the guard is asked again
		// after the wait, so they too answer disk full, not no leader.
		if serr := n.space.check(); serr != nil {
			return nil, serr
		}
		found := n.awaitNewLeader(ctx, deadline)
		if serr := n.space.check(); serr != nil {
			return nil, serr
		}
		if !found {
			return nil, err
		}
	}
}

// applyOnce proposes data here, or forwards it to the leader this node
// knows. retry is true only when the write certainly reached no log.
func (n *Node) applyOnce(ctx context.Context, cmd fsm.Command, data []byte, timeout time.Duration) (v any, err error, retry bool) {
	if timeout <= 0 {
		return nil, context.DeadlineExceeded, false
	}
	if raw := n.checkLevel(cmd, timeout); raw != nil {
		if errors.Is(raw, fsm.ErrAboveLevel) {
			return nil, raw, false
		}
		// No leader here to judge it: the one this node knows does
		// (applyForwarded). Nothing reached the log.
		if v, err, ok := n.forwardIfFollower(ctx, raw, cmd, data); ok {
			return v, err, errors.Is(err, errNotApplied)
		}
		return nil, n.raftErr(raw), !errors.Is(raw, raft.ErrRaftShutdown)
	}
	f, raw := n.propose(data, timeout)
	if raw != nil {
		// A follower forwards the write to the leader it knows; the
		// handlers above never learn the difference. Only a write raft
		// refused as not leader is forwarded: one that lost leadership
		// after its append may still commit, and must not go twice.
		if v, err, ok := n.forwardIfFollower(ctx, raw, cmd, data); ok {
			return v, err, errors.Is(err, errNotApplied)
		}
		return nil, n.raftErr(raw), notAppended(f, raw)
	}
	res, ok := f.Response().(fsm.Result)
	if !ok {
		return nil, fmt.Errorf("node: unexpected apply response %T", f.Response()), false
	}
	return res.Value, res.Err, false
}

// forwardIfFollower forwards cmd to the leader that raw, raft's refusal
// of this node as not leader, names; ok is false when raw is another
// error or no other leader is known.
func (n *Node) forwardIfFollower(ctx context.Context, raw error, cmd fsm.Command, data []byte) (v any, err error, ok bool) {
	var nl *NotLeaderError
	if !errors.Is(raw, raft.ErrNotLeader) || !errors.As(n.raftErr(raw), &nl) || n.fwd.tls == nil || nl.LeaderAddr == "" || nl.LeaderID == n.cfg.ID {
		return nil, nil, false
	}
	v, err = n.forward(ctx, nl.LeaderID, nl.LeaderAddr, cmd, data)
	return v, err, true
}

// applyHere proposes cmd on this node and never forwards it, for what only
// the leader proposes; elsewhere it fails with ErrNotLeader or ErrNoLeader.
// Like Apply, it refuses a command above the cluster's level.
func (n *Node) applyHere(ctx context.Context, cmd fsm.Command) error {
	return n.proposeHere(ctx, cmd, true)
}

// proposeHere is applyHere, with the level check or (raising the level
// itself, node/level.go) without.
func (n *Node) proposeHere(ctx context.Context, cmd fsm.Command, checkLevel bool) error {
	if err := n.space.check(); err != nil {
		return err
	}
	data, err := cmd.Encode()
	if err != nil {
		return err
	}
	timeout := n.cfg.ApplyTimeout
	if d, ok := ctx.Deadline(); ok {
		timeout = time.Until(d)
	}
	if timeout <= 0 {
		return context.DeadlineExceeded
	}
	if checkLevel {
		if err := n.checkLevel(cmd, timeout); err != nil {
			return n.raftErr(err)
		}
	}
	f, err := n.propose(data, timeout)
	if err != nil {
		return n.raftErr(err)
	}
	res, ok := f.Response().(fsm.Result)
	if !ok {
		return fmt.Errorf("node: unexpected apply response %T", f.Response())
	}
	return res.Err
}

// awaitNewLeader waits for the next leader change or a moment (10 ms),
// whichever comes first, then until a leader is known: another node, or
// the same one again (a leader that stepped down under load is often
// re-elected), at most two election timeouts and never past deadline.
// The write it precedes reached no log, so sending it again to a node
// that still does not lead costs one more refusal, not a duplicate. Woken
// by the change itself, a write refused by a leader handing over goes to
// the next one as soon as this node learns of it.
func (n *Node) awaitNewLeader(ctx context.Context, deadline time.Time) bool {
	limit := time.Now().Add(2 * n.cfg.ElectionTimeout)
	if limit.After(deadline) {
		limit = deadline
	}
	for time.Now().Before(limit) {
		changed := n.leaderEvents.next()
		t := time.NewTimer(10 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return false
		case <-changed:
		case <-t.C:
		}
		t.Stop()
		if _, id := n.leader(); id != "" {
			return true
		}
	}
	return false
}

// leader is the leader this node knows of; a candidate knows none. Raft
// (v1.8.0) can leave the old leader recorded on a candidate that a
// leadership transfer made: a heartbeat from the old leader that lands
// between its TimeoutNow and the candidate's new term records it, and the
// candidate keeps it through every election it then loses. A write sent
// there after the old leader stopped was refused, sent again at once, and
// so on until its deadline, instead of failing as ErrNoLeader.
func (n *Node) leader() (raft.ServerAddress, raft.ServerID) {
	addr, id := n.raft.LeaderWithID()
	if n.raft.State() == raft.Candidate {
		return "", ""
	}
	return addr, id
}

func (n *Node) raftErr(err error) error {
	switch {
	case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrLeadershipLost),
		errors.Is(err, raft.ErrLeadershipTransferInProgress):
		addr, id := n.leader()
		if id == "" {
			return fmt.Errorf("%w: %v", ErrNoLeader, err)
		}
		return &NotLeaderError{LeaderID: string(id), LeaderAddr: string(addr)}
	case errors.Is(err, raft.ErrEnqueueTimeout):
		return fmt.Errorf("%w: %v", ErrNoLeader, err)
	case errors.Is(err, raft.ErrRaftShutdown):
		return ErrShutdown
	case isNoSpace(err): // raft.db refused the append even after the reserve went
		n.space.noSpace(err)
		return fmt.Errorf("%w: data directory %s: %v", ErrDiskFull, n.cfg.DataDir, err)
	}
	return err
}

// View runs fn against the local state. It may trail the leader by the
// entries not yet applied here.
func (n *Node) View(fn func(fsm.Reader) error) error { return n.store.View(fn) }

// BlocksGeneration is the local state's fsm.Store.BlocksGeneration: what
// authcore checks before each request's blocked-address lookup.
func (n *Node) BlocksGeneration() uint64 { return n.store.BlocksGeneration() }

// Fresh bounds how stale the local state may be when read: it returns nil
// on the leader and on a follower that heard from the leader within
// maxStale, else an error wrapping ErrNoLeader. A follower cut off from
// the leader (a partition, a removed node, a lost quorum) stops passing
// maxStale after the cut; a leader cut off from its quorum steps down
// within the leader lease (half the heartbeat timeout).
func (n *Node) Fresh(maxStale time.Duration) error {
	switch n.raft.State() {
	case raft.Leader:
		return nil
	case raft.Shutdown:
		return ErrShutdown
	}
	last := n.raft.LastContact()
	if last.IsZero() {
		return fmt.Errorf("%w: this node has not heard from a leader since it started; its state may be stale", ErrNoLeader)
	}
	if d := time.Since(last); d > maxStale {
		return fmt.Errorf("%w: this node last heard from the leader %v ago; its state may be stale", ErrNoLeader, d.Round(time.Millisecond))
	}
	applied, _, _ := n.store.Applied()
	if why := n.behindLeader(applied); why != "" {
		return fmt.Errorf("%w: %s", ErrNoLeader, why)
	}
	// Heartbeats keep LastContact fresh even while this node's own state
	// machine lags: state behind what it knows committed must at least be
	// moving. (Behind by a few entries is every follower under load.)
	if !n.appliedThrough(applied, n.raft.CommitIndex()) {
		if since := time.Since(time.Unix(0, n.lastApply.Load())); since > maxStale {
			return fmt.Errorf("%w: this node's state is at %d of %d committed and has not moved for %v", ErrNoLeader,
				applied, n.raft.CommitIndex(), since.Round(time.Millisecond))
		}
	}
	return nil
}

// Status is a point-in-time picture of the node for readiness and metrics.
type Status struct {
	ID           string
	State        string // Leader, Follower, Candidate, Shutdown
	LeaderID     string
	LeaderAddr   string
	AppliedIndex uint64
	CommitIndex  uint64
	LastIndex    uint64
	// ClusterLevel is the feature level this node's state records
	// (fsm/level.go): below this binary's, some commands wait for the
	// leader to raise it (every member upgraded).
	ClusterLevel int
}

// Status reports the node's Raft state and indexes. AppliedIndex is what
// state.db holds, not Raft's own counter, which moves when an entry is
// handed to the state machine rather than when it is applied.
func (n *Node) Status() Status {
	addr, id := n.leader()
	applied, _, _ := n.store.Applied()
	level := 0
	_ = n.View(func(r fsm.Reader) error { level = r.ClusterLevel(); return nil })
	return Status{
		ClusterLevel: level,
		ID:           n.cfg.ID,
		State:        n.raft.State().String(),
		LeaderID:     string(id),
		LeaderAddr:   string(addr),
		AppliedIndex: applied,
		CommitIndex:  n.raft.CommitIndex(),
		LastIndex:    n.raft.LastIndex(),
	}
}

// LeaderChanges counts the times this node has seen a leader take over
// since it started (the first leader it learns of included; a term
// without a leader, an election in progress, is not counted).
func (n *Node) LeaderChanges() uint64 { return n.leaderChanges.Load() }

// LeaderChangesWithin counts the leaders this node has seen take over in
// the last d, by its clock, as LeaderChanges counts them; at most
// maxLeaderTimes.
func (n *Node) LeaderChangesWithin(d time.Duration) int {
	return n.leaderTimes.since(n.cfg.Clock.Now().Add(-d))
}

// maxLeaderTimes is how many leader changes leaderTimes remembers: more
// than any judgement of stability needs (the scorecard fails at 6 an hour).
const maxLeaderTimes = 64

// leaderTimes remembers when the latest leaders took over.
type leaderTimes struct {
	mu    sync.Mutex
	times []time.Time // oldest first, at most maxLeaderTimes
}

func (l *leaderTimes) add(t time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.times) == maxLeaderTimes {
		l.times = append(l.times[:0], l.times[1:]...)
	}
	l.times = append(l.times, t)
}

func (l *leaderTimes) since(t time.Time) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	c := 0
	for _, at := range l.times {
		if !at.Before(t) {
			c++
		}
	}
	return c
}

// Ready reports whether the node can serve: a leader is known and the
// state has applied every entry the node started with and every entry
// known committed. The reason says what is missing.
func (n *Node) Ready() (bool, string) {
	s := n.Status()
	handed := n.raft.AppliedIndex() // handed to the state machine, not yet applied
	switch {
	case n.store.Damaged() != "":
		return false, "state.db is damaged: a restart rebuilds it from snapshot and log"
	case s.State == raft.Shutdown.String():
		return false, "shutting down"
	case s.LeaderID == "":
		return false, "no leader known"
	case s.State != raft.Leader.String() && n.raft.LastContact().IsZero():
		// Raft records the leader as an AppendEntries arrives, refused
		// or not, and the contact once one (a heartbeat included) or a
		// snapshot install succeeds. A restarted follower can pass every
		// other check in between, while Fresh still refuses every read.
		return false, "no successful contact with the leader yet"
	case handed < n.startIndex:
		return false, fmt.Sprintf("replaying log: at %d of %d", handed, n.startIndex)
	case handed < s.CommitIndex:
		return false, fmt.Sprintf("catching up: at %d of %d", handed, s.CommitIndex)
	case !n.appliedThrough(s.AppliedIndex, handed):
		return false, fmt.Sprintf("applying: state at %d of %d", s.AppliedIndex, handed)
	}
	if why := n.behindLeader(s.AppliedIndex); why != "" {
		return false, why
	}
	return true, ""
}

// appliedThrough reports whether state.db, at index applied, holds every
// entry up to index handed. Raft's no-op and barrier entries never reach
// the state machine, so a gap made only of them is no gap; an entry this
// node has not received (past the end of its log and snapshots) is.
func (n *Node) appliedThrough(applied, handed uint64) bool {
	if applied >= handed {
		return true
	}
	if handed-applied > 64 || handed > n.raft.LastIndex() {
		return false // far behind, or not even received yet
	}
	for i := applied + 1; i <= handed; i++ {
		var l raft.Log
		if err := n.logs.GetLog(i, &l); err != nil {
			if first, ferr := n.logs.FirstIndex(); ferr == nil && (first == 0 || i < first) {
				continue // compacted (or the log is empty): in a snapshot state.db holds
			}
			return false
		}
		if l.Type == raft.LogCommand || l.Type == raft.LogConfiguration {
			return false
		}
	}
	return true
}

// WaitReady blocks until Ready or ctx ends.
func (n *Node) WaitReady(ctx context.Context) error {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		ok, why := n.Ready()
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("node not ready: %s: %w", why, ctx.Err())
		case <-t.C:
		}
	}
}

// Snapshot takes a Raft snapshot now and compacts the log behind it.
func (n *Node) Snapshot() error { return n.raft.Snapshot().Error() }

// Close stops the node. A leader of a multi-node cluster hands leadership
// to another voter first, so the cluster does not wait out an election
// timeout: it refuses new writes (the followers send them to the next
// leader) and lets those in flight commit before it asks Raft for the
// transfer (handover.go).
func (n *Node) Close() error {
	n.closeOnce.Do(func() {
		close(n.done)
		if n.raft.State() == raft.Leader && n.voters() > 1 {
			if !n.stopProposing(n.cfg.ApplyTimeout) {
				n.log.Warn("writes still in flight when leadership was handed over", "waited", n.cfg.ApplyTimeout)
			}
			if err := n.raft.LeadershipTransfer().Error(); err != nil {
				n.log.Warn("leadership transfer before shutdown failed", "error", err)
			}
		}
		shut := make(chan error, 1)
		go func() { shut <- n.raft.Shutdown().Error() }()
		select {
		case err := <-shut:
			n.closeErr = err
		case <-n.space.parked:
			// Raft waits to save a term on a full disk (spaceStore): its
			// stores stay open under it; the process is ending.
			n.closeErr = fmt.Errorf("%w: Raft's term was not saved before shutdown (data directory %s)", ErrDiskFull, n.cfg.DataDir)
			return
		}
		n.erasing.Wait()
		n.checking.Wait()
		if err := n.closeStores(); err != nil && n.closeErr == nil {
			n.closeErr = err
		}
	})
	return n.closeErr
}

// Voters is how many voters the latest configuration this node knows has.
func (n *Node) Voters() int { return n.voters() }

func (n *Node) voters() int {
	f := n.raft.GetConfiguration()
	if f.Error() != nil {
		return 0
	}
	c := 0
	for _, s := range f.Configuration().Servers {
		if s.Suffrage == raft.Voter {
			c++
		}
	}
	return c
}

func (n *Node) closeStores() error {
	n.endServing() // handover.go
	n.fwd.close()
	var errs []error
	if n.closer != nil {
		errs = append(errs, n.closer())
	}
	if n.store != nil {
		errs = append(errs, n.store.Close())
	}
	if n.logs != nil {
		errs = append(errs, n.logs.Close())
	}
	return errors.Join(errs...)
}
