package main

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/anishathalye/porcupine"
)

// The chaos test's model of one user's credentials and sessions, for
// porcupine. Writes (login, refresh, logout, session delete, password
// change, disable) go through the replicated log and are linearizable;
// a session check (GET /v1/me) is a local read and may be up to the
// documented window stale on any node, so the history gives each check
// a call time moved back by that window (chaosHistory.ops). The node that
// acknowledged a revocation must refuse at once: strictRevocations checks
// that outside porcupine.

// chaosOpKind is what a client did.
type chaosOpKind string

const (
	opLogin   chaosOpKind = "login"   // POST /v1/auth/login with password generation Gen
	opMe      chaosOpKind = "me"      // GET /v1/me with session Sid's access token
	opRefresh chaosOpKind = "refresh" // POST /v1/auth/refresh with Sid's refresh token Refresh
	opLogout  chaosOpKind = "logout"  // POST /v1/auth/logout with Sid's access token
	opDelete  chaosOpKind = "delete"  // DELETE /v1/me/sessions/{Target} with Sid's access token
	opChpw    chaosOpKind = "chpw"    // POST /v1/me/password from Gen to Gen+1 with Sid's access token
	opDisable chaosOpKind = "disable" // bulwark user disable through a node's admin socket
)

// chaosInput is one operation's input.
type chaosInput struct {
	Kind    chaosOpKind
	User    string
	Node    string
	Gen     int    // password generation presented (login, chpw)
	Sid     string // session used (me, refresh, logout, delete, chpw)
	Refresh string // refresh token presented (refresh)
	Target  string // session deleted (delete)
}

// chaosOutcome is how an operation ended.
type chaosOutcome int

const (
	outUnknown chaosOutcome = iota // timeout, transport error, 5xx: it may or may not have happened
	outOK                          // acknowledged
	outDenied                      // refused for the credential or session (401, 400 invalid_grant, 404)
)

func (o chaosOutcome) String() string {
	return [...]string{"unknown", "ok", "denied"}[o]
}

// chaosOutput is one operation's output.
type chaosOutput struct {
	Outcome chaosOutcome
	Sid     string // the session started (login, chpw)
	Refresh string // the refresh token answered (login, refresh, chpw)
}

// userState is one user as the model holds it: comparable with ==.
// sessions is "sid=refresh;" sorted by sid.
type userState struct {
	gen      int
	disabled bool
	sessions string
}

func (s userState) sessionMap() map[string]string {
	m := map[string]string{}
	for _, kv := range strings.Split(s.sessions, ";") {
		if sid, rt, ok := strings.Cut(kv, "="); ok {
			m[sid] = rt
		}
	}
	return m
}

func withSessions(s userState, m map[string]string) userState {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "%s=%s;", k, m[k])
	}
	s.sessions = b.String()
	return s
}

// chaosStep is the model's step: every state the user may be in after
// in answered out, or none if that answer is impossible from st.
func chaosStep(st userState, in chaosInput, out chaosOutput) []userState {
	if out.Outcome == outUnknown {
		// It may not have happened at all; or it did, and answered what
		// a success does (whose tokens nobody saw, so they are not
		// tracked: a session nobody holds is never presented).
		next := []userState{st}
		switch in.Kind {
		case opLogout, opDelete, opDisable, opRefresh, opChpw:
			next = append(next, chaosStep(st, in, chaosOutput{Outcome: outOK})...)
		}
		return next
	}
	m := st.sessionMap()
	live := func(sid string) bool { _, ok := m[sid]; return ok && !st.disabled }
	switch in.Kind {
	case opLogin:
		right := in.Gen == st.gen && !st.disabled
		if out.Outcome == outDenied {
			if right {
				return nil // the current password of an enabled user refused
			}
			return []userState{st}
		}
		if !right {
			return nil // an old password, or a disabled user, let in
		}
		m[out.Sid] = out.Refresh
		return []userState{withSessions(st, m)}
	case opMe:
		if out.Outcome == outOK && !live(in.Sid) {
			return nil // a revoked session accepted
		}
		// A live session refused is no security fact: a node that has
		// not applied the login yet, or is cut off and stops vouching
		// (503 is unknown, but a node behind answers 401). A lost session
		// shows in its refresh, a write, which must not be refused.
		return []userState{st}
	case opRefresh:
		cur, ok := m[in.Sid]
		if out.Outcome == outOK {
			if !live(in.Sid) || in.Refresh != cur {
				return nil // a dead refresh token, or one of a dead session, accepted
			}
			m[in.Sid] = out.Refresh
			if out.Refresh == "" {
				m[in.Sid] = "unseen" // an answer nobody saw: its token is never presented
			}
			return []userState{withSessions(st, m)}
		}
		if live(in.Sid) && in.Refresh == cur {
			return nil // the live refresh token refused
		}
		if ok && in.Refresh != cur {
			delete(m, in.Sid) // reuse of a dead token revokes the session
		}
		return []userState{withSessions(st, m)}
	case opLogout, opDelete:
		target := in.Sid
		if in.Kind == opDelete {
			target = in.Target
		}
		if out.Outcome == outDenied {
			// Refused: the bearer session was unknown to that node yet
			// (a local check) or dead, or the target was gone.
			return []userState{st}
		}
		delete(m, target)
		return []userState{withSessions(st, m)}
	case opChpw:
		if out.Outcome == outDenied {
			return []userState{st}
		}
		if in.Gen != st.gen || st.disabled {
			return nil // changed from an old password, or for a disabled user
		}
		// Every other session dies; the one that changed it goes on with
		// the answer's fresh refresh token (unseen if nobody saw it).
		st.gen = in.Gen + 1
		_, keep := m[in.Sid]
		m = map[string]string{}
		rt := out.Refresh
		if rt == "" {
			rt = "unseen"
		}
		if keep {
			m[in.Sid] = rt
		}
		if out.Sid != "" {
			m[out.Sid] = rt
		}
		return []userState{withSessions(st, m)}
	case opDisable:
		if out.Outcome == outOK {
			st.disabled = true
		}
		return []userState{st}
	}
	return nil
}

// chaosModel partitions the history by user.
var chaosModel = porcupine.NondeterministicModel{
	Partition: func(h []porcupine.Operation) [][]porcupine.Operation {
		by := map[string][]porcupine.Operation{}
		var order []string
		for _, op := range h {
			u := op.Input.(chaosInput).User
			if _, ok := by[u]; !ok {
				order = append(order, u)
			}
			by[u] = append(by[u], op)
		}
		out := make([][]porcupine.Operation, 0, len(order))
		for _, u := range order {
			out = append(out, by[u])
		}
		return out
	},
	Init: func() []any { return []any{userState{}} },
	Step: func(state, input, output any) []any {
		var out []any
		for _, s := range chaosStep(state.(userState), input.(chaosInput), output.(chaosOutput)) {
			out = append(out, s)
		}
		return out
	},
	DescribeOperation: func(input, output any) string {
		in, out := input.(chaosInput), output.(chaosOutput)
		return fmt.Sprintf("%s %s@%s gen=%d sid=%s rt=%s target=%s → %s sid=%s rt=%s", in.Kind, in.User, in.Node, in.Gen,
			short(in.Sid), short(in.Refresh), short(in.Target), out.Outcome, short(out.Sid), short(out.Refresh))
	},
	DescribeState: func(state any) string {
		s := state.(userState)
		return fmt.Sprintf("gen=%d disabled=%v sessions=%d", s.gen, s.disabled, len(s.sessionMap()))
	},
}

func short(s string) string {
	if len(s) > 8 {
		return s[len(s)-8:]
	}
	return s
}

// chaosRecord is one operation as a client saw it.
type chaosRecord struct {
	Client         int
	In             chaosInput
	Out            chaosOutput
	Called, Return time.Time
}

// chaosOps turns records into porcupine operations: an operation of
// unknown outcome may take effect any time after its call (it returns at
// the end of time), and a session check may see state up to window old.
func chaosOps(recs []chaosRecord, start time.Time, window time.Duration) []porcupine.Operation {
	const never = int64(1) << 62
	ops := make([]porcupine.Operation, 0, len(recs))
	for _, r := range recs {
		call, ret := r.Called.Sub(start).Nanoseconds(), r.Return.Sub(start).Nanoseconds()
		if r.Out.Outcome == outUnknown {
			if r.In.Kind == opMe || r.In.Kind == opLogin {
				continue // a read, or a session nobody will present: nothing to learn
			}
			ret = never
		}
		if r.In.Kind == opMe {
			call -= window.Nanoseconds()
		}
		ops = append(ops, porcupine.Operation{ClientId: r.Client, Input: r.In, Output: r.Out, Call: call, Return: ret})
	}
	return ops
}

// strictRevocations: the node that acknowledged a revocation refuses the
// revoked session from then on, without the window other nodes have. It
// returns one line per check that broke this.
func strictRevocations(recs []chaosRecord) []string {
	type revoked struct {
		node string
		at   time.Time
		what string
	}
	// session → the acknowledged revocations of it; a user's disable or
	// password change revokes every session of theirs started before it.
	bySid := map[string][]revoked{}
	type userRevoked struct {
		user, except string // except: the session the change itself started
		r            revoked
	}
	var userWide []userRevoked
	started := map[string]time.Time{} // session → when its login or chpw was called
	for _, r := range recs {
		if r.Out.Outcome != outOK {
			continue
		}
		rv := revoked{node: r.In.Node, at: r.Return, what: string(r.In.Kind)}
		switch r.In.Kind {
		case opLogin, opChpw:
			if r.Out.Sid != "" {
				started[r.Out.Sid] = r.Called
			}
		}
		switch r.In.Kind {
		case opLogout:
			bySid[r.In.Sid] = append(bySid[r.In.Sid], rv)
		case opDelete:
			bySid[r.In.Target] = append(bySid[r.In.Target], rv)
		case opChpw, opDisable:
			userWide = append(userWide, userRevoked{r.In.User, r.Out.Sid, rv})
		}
	}
	var bad []string
	for _, r := range recs {
		if r.In.Kind != opMe || r.Out.Outcome != outOK {
			continue
		}
		check := func(rv revoked) {
			if rv.node == r.In.Node && r.Called.After(rv.at) {
				bad = append(bad, fmt.Sprintf("%s: session %s of %s accepted at %s, %v after %s acknowledged its %s",
					r.In.Node, short(r.In.Sid), r.In.User, r.Called.Format("15:04:05.000"), r.Called.Sub(rv.at).Round(time.Millisecond), rv.node, rv.what))
			}
		}
		for _, rv := range bySid[r.In.Sid] {
			check(rv)
		}
		for _, uw := range userWide {
			if uw.user == r.In.User && r.In.Sid != uw.except && started[r.In.Sid].Before(uw.r.at) {
				check(uw.r)
			}
		}
	}
	return bad
}
