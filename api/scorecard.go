package api

import (
	"context"
	"net/http"
	"time"

	"github.com/bulwark-auth/bulwark/internal/scorecard"
)

// ScorecardFunc gathers and judges the hardening scorecard of this node and
// its cluster (`bulwark doctor`).
type ScorecardFunc func(ctx context.Context) (scorecard.Report, error)

// AdminScorecard serves GET /admin/v1/scorecard on the admin socket, the
// report `bulwark doctor` prints.
func AdminScorecard(fn ScorecardFunc) AdminOption {
	return func(o *Options) { o.Scorecard = fn }
}

// scorecardTimeout bounds a report: the members that do not answer within
// it are reported unreachable, not waited for.
const scorecardTimeout = 20 * time.Second

// serveScorecard answers the report, 200 whatever its verdicts: a failed
// control is the report's content, not an error of the request.
func serveScorecard(fn ScorecardFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), scorecardTimeout)
		defer cancel()
		rep, err := fn(ctx)
		if err != nil {
			writeError(w, r, err)
			return
		}
		writeJSON(w, r, http.StatusOK, rep)
	}
}
