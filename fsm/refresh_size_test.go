package fsm

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"testing"
	"time"
)

// benchSessionID is a session id as authcore.NewSessionID makes them
// (ordered: creation time first) or as it made them before (random).
func benchSessionID(ordered bool, at time.Time) string {
	var b [24]byte
	rand.Read(b[:])
	if !ordered {
		var c [32]byte
		rand.Read(c[:])
		return base64.RawURLEncoding.EncodeToString(c[:])
	}
	var t [8]byte
	binary.BigEndian.PutUint64(t[:], uint64(at.UnixMilli()))
	return hex.EncodeToString(t[2:]) + base64.RawURLEncoding.EncodeToString(b[:])
}

// BenchmarkRefreshAtSize rotates the refresh tokens of 64 sessions,
// logged in one after the other, in batches of 64 (as a busy leader
// applies them), in a store that already holds 50,000 sessions of 5,000
// users, with session ids in creation order (authcore.NewSessionID) and
// random (before): state.db pages written per refresh and Apply time.
func BenchmarkRefreshAtSize(b *testing.B) {
	const users, per, active = 5000, 10, 64
	for _, ordered := range []bool{false, true} {
		name := map[bool]string{false: "ids=random", true: "ids=ordered"}[ordered]
		b.Run(name, func(b *testing.B) {
			a := &applier{t: b, s: openTestStore(b)}
			create := func(id, uid string, at time.Time, h string) Entry {
				return a.entry(TypeSessionCreate, 4, at, SessionCreateV4{SessionCreateV3: SessionCreateV3{SessionCreateV2: SessionCreateV2{SessionCreate: SessionCreate{
					ID: id, UserID: uid, RefreshHash: h, Lifetime: int64(7 * 24 * time.Hour), IdleTimeout: int64(24 * time.Hour),
					MaxPerUser: 10, OnLimit: "evict_oldest", AMR: []string{"pwd"}}}}, RefreshMAC: true})
			}
			var batch []Entry
			flush := func() {
				for _, r := range a.s.ApplyBatch(batch) {
					if r.Err != nil {
						b.Fatal(r.Err)
					}
				}
				batch = batch[:0]
			}
			at := t0
			for u := range users {
				batch = append(batch, a.entry(TypeUserCreate, 1, at, UserCreate{ID: fmt.Sprint("u", u), Username: fmt.Sprint("user", u), PasswordHash: "h"}))
				if len(batch) == 512 {
					flush()
				}
			}
			flush()
			for s := range users * per {
				at = at.Add(time.Millisecond)
				batch = append(batch, create(benchSessionID(ordered, at), fmt.Sprint("u", s%users), at, hashOf(fmt.Sprint(s))))
				if len(batch) == 512 {
					flush()
				}
			}
			flush()
			usedMiB := float64(usedBytes(b, a.s)) / (1 << 20)
			ids := make([]string, active)
			for i := range ids {
				at = at.Add(time.Millisecond)
				ids[i] = benchSessionID(ordered, at)
				batch = append(batch, create(ids[i], fmt.Sprint("u", i), at, hashOf(fmt.Sprint("a", i, 0))))
			}
			flush()
			gen := make([]uint64, active)
			st0 := a.s.db.Stats()
			b.ResetTimer()
			for i := range b.N {
				at = at.Add(time.Microsecond)
				k := i % active
				batch = append(batch, a.entry(TypeSessionRefresh, 3, at, SessionRefreshV3{SessionID: ids[k], Generation: gen[k],
					SessionRefresh: SessionRefresh{OldHash: hashOf(fmt.Sprint("a", k, gen[k])), NewHash: hashOf(fmt.Sprint("a", k, gen[k]+1)), IP: "192.0.2.1", UserAgent: "bench"}}))
				gen[k]++
				if len(batch) == active {
					flush()
				}
			}
			flush()
			b.StopTimer()
			st1 := a.s.db.Stats()
			st := st1.Sub(&st0)
			b.ReportMetric(float64(st.TxStats.GetWrite())/float64(b.N), "pagewrites/refresh")
			b.ReportMetric(usedMiB, "MiB-used-at-size")
		})
	}
}
