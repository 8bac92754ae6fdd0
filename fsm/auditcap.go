package fsm

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strconv"
	"time"
)

// The audit cost of failed logins for unknown names (feature level 5,
// issue 19; DESIGN.md, "Retention"). Unauthenticated traffic must not fill
// every node's disk: login.failure v4 carries its audit entry in the
// payload rather than the envelope, and, for a name no user has (the
// proposer's read), a cap. Per client address (IPv4, or the /64 of IPv6)
// and window, the first Cap.Entries such entries (failures, and lockouts
// of those names) are appended; the rest are counted, and one
// "login.failure.summary" entry with the counts is appended when the
// window is over: by the address's next capped failure, or by the sweep,
// which finds the record in the expiry index (kind 'u') at the window's
// end. So an address costs at most Cap.Entries + 1 entries per window,
// and the trail still tells how many failures there were. The metrics
// count every failure whatever the trail holds (authcore reports each).

// MaxAuditCapEntries bounds the entries per address and window a cap may
// allow.
const MaxAuditCapEntries = 1000

// AuditCap limits the audit entries of unknown-name failures per address
// and window. Zero Entries: no cap.
type AuditCap struct {
	Entries int   `json:"entries"`
	Window  int64 `json:"window"` // nanoseconds
}

func (a AuditCap) valid() bool {
	if a == (AuditCap{}) {
		return true
	}
	return a.Entries >= 1 && a.Entries <= MaxAuditCapEntries && a.Window > 0 && a.Window <= maxLockoutWindow
}

// LoginFailureV4 is the payload of login.failure v4: v3's, with the
// failure's own audit entry (v3 carried it in the envelope) and the cap
// for an unknown name.
type LoginFailureV4 struct {
	LoginFailureV3
	Event AuditAppend `json:"event"`
	// Cap is set by the proposer when no user has the name; zero: every
	// entry is appended, as v3 does.
	Cap AuditCap `json:"cap"`
}

// AuditSummaryType is the type of the entry that counts a window's
// capped failures.
const AuditSummaryType = "login.failure.summary"

const expiryAuditCap byte = 'u' // bucketAuditCaps, at the end of its window (level 5)

// bucketAuditCaps: client address or /64 → auditCapRecord (level 5),
// created at Open like the level-4 buckets.
var bucketAuditCaps = []byte("audit_caps")

var auditCapCommands = []CommandSpec{
	{Type: TypeLoginFailure, Version: 4, Level: 5, Apply: applyLoginFailureV4, Result: reflect.TypeFor[FailureResult]()},
}

// auditCapRecord is one address's window: the entries appended, and the
// failures and lockouts only counted.
type auditCapRecord struct {
	WindowStart int64 `json:"window_start"`
	Window      int64 `json:"window"`
	Entries     int   `json:"entries"`
	Failures    int   `json:"failures,omitempty"`
	Lockouts    int   `json:"lockouts,omitempty"`
}

func (r *auditCapRecord) end() int64 { return r.WindowStart + r.Window }

func applyLoginFailureV4(t txn, c Command) (any, error) {
	var p LoginFailureV4
	if err := decodePayload(c, &p); err != nil {
		return nil, err
	}
	if !p.Detect.valid() || !p.Cap.valid() {
		return nil, fmt.Errorf("%w: login.failure v4 needs detection limits and a cap in range, or none", ErrInvalidCommand)
	}
	if err := p.Event.Validate(); err != nil {
		return nil, err
	}
	var capper *auditCapper
	var admit func(AuditAppend) (bool, error)
	if p.Cap.Entries > 0 {
		capper = &auditCapper{t: t, now: c.Time, key: capKey(p.IP), cap: p.Cap}
		admit = capper.admit
	}
	res, err := loginFailureAdmit(t, c, p.LoginFailureV2, 4, p.Detect, admit)
	if err != nil {
		return nil, err
	}
	keep := true
	if capper != nil {
		if keep, err = capper.admit(p.Event); err == nil {
			err = capper.write()
		}
		if err != nil {
			return nil, err
		}
	}
	if keep {
		if _, err := appendAudit(t, c.Time, p.Event); err != nil {
			return nil, err
		}
	}
	return res, nil
}

// capKey is the address a capped entry counts against: addressKey, or
// "unknown" for a client without a parsable address.
func capKey(ip string) string {
	if k := addressKey(ip); k != "" {
		return k
	}
	return "unknown"
}

// auditCapper applies one command's entries to one address's record.
type auditCapper struct {
	t   txn
	now int64
	key string
	cap AuditCap
	rec *auditCapRecord
	new bool // rec starts a window: index it
}

// admit counts ev against the address's window and reports whether it
// gets an entry of its own. Only failures and lockouts are capped: any
// other entry (a block) is admitted as it is.
func (a *auditCapper) admit(ev AuditAppend) (bool, error) {
	if ev.Type != "lockout" && ev.Type != "login.failure" {
		return true, nil
	}
	if a.rec == nil {
		if err := a.load(); err != nil {
			return false, err
		}
	}
	r := a.rec
	switch {
	case r.Entries < a.cap.Entries:
		r.Entries++
		return true, nil
	case ev.Type == "lockout":
		r.Lockouts++
	default:
		r.Failures++
	}
	return false, nil
}

// load reads the address's record; a window that is over is closed (its
// summary appended) and a new one begins.
func (a *auditCapper) load() error {
	var r auditCapRecord
	if v := a.t.tx.Bucket(bucketAuditCaps).Get([]byte(a.key)); v != nil {
		if err := json.Unmarshal(v, &r); err != nil {
			return err
		}
		if r.end() > a.now {
			a.rec = &r
			return nil
		}
		if err := a.t.closeAuditCap(a.key, &r, a.now); err != nil {
			return err
		}
	}
	a.rec, a.new = &auditCapRecord{WindowStart: a.now, Window: a.cap.Window}, true
	return nil
}

func (a *auditCapper) write() error {
	if a.rec == nil {
		return nil
	}
	if err := a.t.putJSON(bucketAuditCaps, a.key, a.rec); err != nil {
		return err
	}
	if !a.new {
		return nil
	}
	return a.t.index(a.rec.end(), expiryAuditCap, a.key)
}

// closeAuditCap appends the summary of r, key's window, if it counted
// anything beyond its entries, at now.
func (t txn) closeAuditCap(key string, r *auditCapRecord, now int64) error {
	if r.Failures+r.Lockouts == 0 {
		return nil
	}
	ip := ""
	if key != "unknown" {
		ip = key
	}
	_, err := appendAudit(t, now, AuditAppend{Type: AuditSummaryType, Severity: AuditWarning, IP: ip,
		Details: map[string]string{
			"reason":       "unknown_user",
			"failures":     strconv.Itoa(r.Failures),
			"lockouts":     strconv.Itoa(r.Lockouts),
			"logged":       strconv.Itoa(r.Entries),
			"window_start": time.Unix(0, r.WindowStart).UTC().Format(time.RFC3339Nano),
			"window_end":   time.Unix(0, r.end()).UTC().Format(time.RFC3339Nano),
		}})
	return err
}

// sweepAuditCap closes key's window once it is over: summary, then the
// record goes. Otherwise (a dangling index entry) it is indexed again.
func (t txn) sweepAuditCap(key string, now int64) error {
	b := t.tx.Bucket(bucketAuditCaps)
	v := b.Get([]byte(key))
	if v == nil {
		return nil
	}
	var r auditCapRecord
	if err := json.Unmarshal(v, &r); err != nil {
		return err
	}
	if r.end() > now {
		return t.index(r.end(), expiryAuditCap, key)
	}
	if err := t.closeAuditCap(key, &r, now); err != nil {
		return err
	}
	return b.Delete([]byte(key))
}
